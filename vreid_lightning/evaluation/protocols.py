"""Evaluation protocols: image-to-image query/gallery (VeRi, CityFlow) and VehicleID's random gallery.

Both return flat dicts of fractions in [0, 1] with the stable keys of ``results.json``:
``mAP, rank1, rank5, rank10, mINP`` (and ``<metric>_std`` for repeated protocols).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .features import evaluate_features

__all__ = ["METRIC_KEYS", "summarize_ranking", "as_float_dict", "image_protocol", "vehicleid_draw", "vehicleid_protocol_repeats", "vehicleid_protocol"]

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")


def summarize_ranking(result: dict[str, Any]) -> dict[str, float]:
    """The ``METRIC_KEYS`` of an :func:`~.rank.evaluate_rank` result (rank-k from its CMC)."""
    cmc = result["cmc"]
    return {
        "mAP": float(result["mAP"]),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "rank10": float(cmc[9]),
        "mINP": float(result["mINP"]),
    }


def image_protocol(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    q_ids: Any,
    g_ids: Any,
    q_cams: Any | None = None,
    g_cams: Any | None = None,
    metric: str = "cosine",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Standard image-to-image protocol (VeRi-776 sec. 1 of datasets.md).

    Good = same id, other camera; junk = same id and same camera (removed from the ranking).
    With ``q_cams=g_cams=None`` there is no junk rule.

    Returns:
        ``{"mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries", "num_queries"}`` (queries
        without a valid positive are left out of the averages and counted in ``num_queries`` only).
    """
    result = evaluate_features(q_feats, g_feats, q_ids, g_ids, q_cams, g_cams, metric, 10, chunk_size)
    return {**summarize_ranking(result), "num_valid_queries": result["num_valid_queries"],
            "num_queries": result["num_queries"]}


def vehicleid_draw(ids: Any, seed: int = 0, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One VehicleID gallery draw: one image per vehicle, uniformly at random.

    The generator is ``np.random.default_rng([seed, repeat])``: the same (seed, repeat) always
    gives the same draw. Vectorised: in a random permutation, the first image of each vehicle is
    a uniform choice among its images.

    Returns:
        ``(query_idx, gallery_idx)``: sorted int64 indices into ``ids``; every other image is a query.
    """
    ids = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"ids: expected a non-empty 1-D array of vehicle ids, got shape {ids.shape}")
    rng = np.random.default_rng([int(seed), int(repeat)])
    perm = rng.permutation(ids.shape[0])
    _, first = np.unique(ids[perm], return_index=True)
    gallery = np.sort(perm[first])
    is_query = np.ones(ids.shape[0], dtype=bool)
    is_query[gallery] = False
    return np.flatnonzero(is_query), gallery


def vehicleid_protocol_repeats(
    feats: torch.Tensor | np.ndarray,
    ids: Any,
    repeats: int = 10,
    seed: int = 0,
    metric: str = "cosine",
    chunk_size: int | None = None,
) -> list[dict[str, float]]:
    """Per-repeat results of the VehicleID protocol (see :func:`vehicleid_protocol`)."""
    if isinstance(repeats, bool) or int(repeats) != repeats or int(repeats) < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    feats = feats if isinstance(feats, torch.Tensor) else torch.as_tensor(np.asarray(feats))
    ids_np = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if feats.dim() != 2 or ids_np.ndim != 1 or feats.shape[0] != ids_np.shape[0]:
        raise ValueError(
            f"feats/ids: expected (N, D) features and N ids, got {tuple(feats.shape)} and {ids_np.shape}"
        )
    out = []
    for r in range(int(repeats)):
        q_idx, g_idx = vehicleid_draw(ids_np, seed, r)
        qt, gt = (torch.as_tensor(i, device=feats.device) for i in (q_idx, g_idx))
        res = evaluate_features(
            feats[qt], feats[gt], ids_np[q_idx], ids_np[g_idx], None, None, metric, 10, chunk_size
        )
        out.append({**summarize_ranking(res), "num_valid_queries": res["num_valid_queries"]})
    return out


def vehicleid_protocol(
    feats: torch.Tensor | np.ndarray,
    ids: Any,
    repeats: int = 10,  # "repeated 10 times", the customary VehicleID protocol (datasets.md sec. 2)
    seed: int = 0,
    metric: str = "cosine",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """VehicleID random-gallery protocol (datasets.md sec. 2), features extracted once.

    For each repeat, one image per vehicle is drawn into the gallery (:func:`vehicleid_draw`,
    seeded by ``(seed, repeat)``) and all other images are queries; no junk rule (no cameras).

    Returns:
        Mean ``mAP, rank1, rank5, rank10, mINP`` over repeats and ``<metric>_std`` for each
        (population standard deviation over repeats).
    """
    runs = vehicleid_protocol_repeats(feats, ids, repeats, seed, metric, chunk_size)
    table = {k: np.array([r[k] for r in runs], dtype=np.float64) for k in METRIC_KEYS}
    return {
        **{k: float(v.mean()) for k, v in table.items()},
        **{f"{k}_std": float(v.std()) for k, v in table.items()},
    }


def as_float_dict(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-able copy of a metrics dict (numpy/tensor scalars to float, nested dicts kept)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = as_float_dict(v)
        elif isinstance(v, (str, int)) and not isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (float, np.floating, np.integer)) or (isinstance(v, torch.Tensor) and v.numel() == 1):
            out[k] = float(v)
    return out
