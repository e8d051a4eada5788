"""Post-processing pipeline: a list of steps applied to saved or freshly extracted test features.

Steps, in the order they act (whatever order they are listed in):

==================== ==================================================================================
``crop``             average each model's features with those of the cropped images (view ``crop``)
``ensemble``         concatenate the L2-normalised features of every model (``concat_features``)
``qe``               DBSCAN query expansion (VehicleNet sec. IV-C)
``aqe``              average / alpha query expansion over the top-k gallery items
``dba``              database-side augmentation over the top-k gallery items
``rerank``           k-reciprocal re-ranking (Zhong et al., CVPR 2017) instead of the plain distance
``camera_verification``  remove / penalise gallery items of the query's camera (cluster)
``time_window``      remove gallery items further than tau from the query in time
==================== ==================================================================================

A step spec is a name (paper defaults) or ``{name: {param: value}}``; unknown names and parameters are a
ConfigError. The distances are produced block by block (plain metric or re-ranked), filtered, and fed to
the exact streaming evaluator: nothing (Q, G) is held beyond one block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from vreid_lightning.errors import ConfigError

from .camera_verification import camera_clusters, camera_filter
from .distance import gallery_distance_fn
from .ensemble import concat_features
from .protocols import summarize_ranking
from .query_expansion import average_query_expansion, database_augmentation, dbscan_query_expansion
from .rank import RankAccumulator, auto_chunk_size
from .rerank import KReciprocalIndex
from .saved_features import FeatureSet, check_aligned
from .time_window import time_window_filter

__all__ = ["STEP_DEFAULTS", "STEP_ORDER", "parse_steps", "postprocess_evaluate", "ranking_blocks", "cumulative_table",
           "postprocess_test_features"]

# Each step's parameters with their defaults (the conf/postprocess/ files carry the same values, cited).
STEP_DEFAULTS: dict[str, dict[str, Any]] = {
    "crop": {},                                             # VehicleNet sec. IV-C: mean of original and crop
    "ensemble": {"normalize": "l2"},                        # VehicleNet sec. IV-C: L2-normalise, concatenate
    "qe": {"eps": 0.5, "min_samples": 2},                   # VehicleNet authors' code: DBSCAN on 2 - 2 cos
    "aqe": {"k": 5, "alpha": 0.0},                          # alpha = 0: average QE; alpha = 3: alpha-QE
    "dba": {"k": 5, "alpha": 0.0},
    "rerank": {"k1": 20, "k2": 6, "lambda_value": 0.3, "metric": "euclidean"},  # CVPR 2017 sec. 4.2
    "camera_verification": {"source": "labels", "mode": "remove", "penalty": 1.0, "n_clusters": None, "seed": 0},
    "time_window": {"tau": 30000},                          # frames (20 min at 25 fps); sec. IV-C names no value
}
STEP_ORDER = ("crop", "ensemble", "qe", "aqe", "dba", "rerank", "camera_verification", "time_window")


def parse_steps(spec: Any) -> dict[str, dict[str, Any]]:
    """Normalise a steps spec (list of names / dicts, or a mapping name -> params) to ``{name: params}``
    in :data:`STEP_ORDER`, with defaults filled in."""
    if spec is None:
        return {}
    if hasattr(spec, "items") and not isinstance(spec, Mapping):
        spec = dict(spec.items())
    items: list[tuple[str, Any]] = []
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, str):
        items = [(s.strip(), None) for s in spec.split(",") if s.strip()]
    elif isinstance(spec, Iterable):
        for s in spec:
            if isinstance(s, str):
                items.append((s, None))
            elif isinstance(s, Mapping) or hasattr(s, "items"):
                items.extend((str(k), v) for k, v in dict(s.items()).items())
            else:
                raise ConfigError(f"postprocess: expected step names or {{name: params}}, got {s!r}")
    else:
        raise ConfigError(f"postprocess: expected a list of steps, got {spec!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, params in items:
        if name not in STEP_DEFAULTS:
            raise ConfigError(f"postprocess: unknown step {name!r}; expected one of {list(STEP_ORDER)}")
        params = dict(params.items()) if params is not None and hasattr(params, "items") else (params or {})
        unknown = set(params) - set(STEP_DEFAULTS[name])
        if unknown:
            raise ConfigError(f"postprocess.{name}: unknown parameter(s) {sorted(unknown)}; "
                              f"expected {sorted(STEP_DEFAULTS[name])}")
        out[name] = {**STEP_DEFAULTS[name], **params}
    return {k: out[k] for k in STEP_ORDER if k in out}


def _features(sets: list[FeatureSet], steps: dict[str, dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The (Q, D), (G, D) features after crop averaging and the ensemble."""
    per_model = []
    for fs in sets:
        q, g = (torch.as_tensor(a) for a in fs.views[""])
        if "crop" in steps:
            if "crop" not in fs.views:
                raise ConfigError(f"postprocess.crop: {fs.source or 'the features'} has no cropped-image "
                                  "features (view 'crop'); extract them with a boxes file or a detector")
            cq, cg = (torch.as_tensor(a) for a in fs.views["crop"])
            q, g = (q + cq) / 2, (g + cg) / 2
        per_model.append((q, g))
    if "ensemble" in steps:
        if len(sets) < 2:
            raise ConfigError("postprocess.ensemble: needs the features of at least two models, got one")
        nq = per_model[0][0].shape[0]
        both = concat_features([torch.cat([q, g]) for q, g in per_model], steps["ensemble"]["normalize"])
        return both[:nq], both[nq:]
    return per_model[0]


def _camera_groups(sets: list[FeatureSet], p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    fs = sets[0]
    if p["source"] == "labels":
        return fs.query["cams"], fs.gallery["cams"]
    if p["source"] != "features":
        raise ConfigError(f"camera_verification.source={p['source']!r}; expected 'labels' or 'features'")
    if "cam" not in fs.views:
        raise ConfigError(f"camera_verification: {fs.source or 'the features'} has no camera-aware features "
                          "(view 'cam'); pass a camera model's features or use source: labels")
    if p["n_clusters"] is None:
        raise ConfigError("camera_verification.n_clusters: required with source: features "
                          "(e.g. the number of test cameras)")
    cq, cg = fs.views["cam"]
    labels = camera_clusters(np.concatenate([cq, cg]), int(p["n_clusters"]), int(p["seed"]))
    return labels[: cq.shape[0]], labels[cq.shape[0]:]


@torch.no_grad()
def ranking_blocks(sets: FeatureSet | list[FeatureSet], steps: Any = None, metric: str | None = None,
                   chunk_size: int | None = None, device: str | torch.device = "cpu"
                   ) -> Iterator[tuple[int, torch.Tensor]]:
    """The post-processed query-to-gallery distances, block by block: ``(first query row, (C, G) block)``.

    What :func:`postprocess_evaluate` ranks, and what ``search`` takes its top-k from; nothing (Q, G) is held
    beyond one block. ``steps`` and ``metric`` as in :func:`postprocess_evaluate`.
    """
    sets = [sets] if isinstance(sets, FeatureSet) else list(sets)
    check_aligned(sets)
    steps = parse_steps(steps)
    metric = metric or sets[0].metric
    q, g = (t.to(device) for t in _features(sets, steps))
    if "qe" in steps:
        q = dbscan_query_expansion(q, steps["qe"]["eps"], steps["qe"]["min_samples"])
    if "aqe" in steps:
        q = average_query_expansion(q, g, steps["aqe"]["k"], steps["aqe"]["alpha"], chunk_size)
    if "dba" in steps:
        g = database_augmentation(g, steps["dba"]["k"], steps["dba"]["alpha"], chunk_size)
    filters = []
    if "camera_verification" in steps:
        p = steps["camera_verification"]
        qg, gg = _camera_groups(sets, p)
        filters.append(camera_filter(qg, gg, p["mode"], p["penalty"]))
    if "time_window" in steps:
        fs = sets[0]
        qt, gt = fs.query["times"], fs.gallery["times"]
        filters.append(time_window_filter(qt, gt, steps["time_window"]["tau"]))
    if "rerank" in steps:
        r = steps["rerank"]
        index = KReciprocalIndex(q, g, r["k1"], r["k2"], r["lambda_value"], r["metric"], chunk_size)
        blocks = index.blocks(chunk_size)
    else:
        distance = gallery_distance_fn(g, metric)
        step = auto_chunk_size(q.shape[0], g.shape[0], chunk_size)
        blocks = ((s, distance(q[s:s + step])) for s in range(0, q.shape[0], step))
    for s, block in blocks:
        for f in filters:
            block = f(s, block)
        yield s, block


@torch.no_grad()
def postprocess_evaluate(sets: FeatureSet | list[FeatureSet], steps: Any = None, metric: str | None = None,
                         use_cams: bool = True, chunk_size: int | None = None,
                         device: str | torch.device = "cpu") -> dict[str, float]:
    """Apply ``steps`` to one model's (or several models') features and evaluate (image protocol).

    Args:
        sets: FeatureSet(s) of the same images (several models for ``ensemble``).
        steps: the steps spec (see :func:`parse_steps`); None or empty: the plain evaluation.
        metric: distance of the plain ranking (default: the first set's); ``rerank`` has its own.
        use_cams: apply the junk rule (same id and camera) when the cameras are known.

    Returns:
        ``{"mAP", "rank1", "rank5", "rank10", "mINP"}`` (fractions).
    """
    sets = [sets] if isinstance(sets, FeatureSet) else list(sets)
    fq, fg = sets[0].query, sets[0].gallery
    has_cams = use_cams and bool((fq["cams"] >= 0).all() and (fg["cams"] >= 0).all())
    acc = RankAccumulator(fg["ids"], fg["cams"] if has_cams else None, max_rank=10, device=device)
    q_ids = torch.as_tensor(fq["ids"], device=device)
    q_cams = torch.as_tensor(fq["cams"], device=device) if has_cams else None
    for s, block in ranking_blocks(sets, steps, metric, chunk_size, device):
        e = s + block.shape[0]
        acc.update(block, q_ids[s:e], None if q_cams is None else q_cams[s:e])
    return summarize_ranking(acc.compute())


def cumulative_table(sets: list[FeatureSet], steps: Any, metric: str | None = None,
                     device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Table VI layout: the plain evaluation, then the steps added one at a time (in the order listed).

    Returns one column per entry: ``{"steps": [names so far], "added": name or "none", **metrics}``.
    """
    ordered = list(parse_steps(steps).items())
    listed = _listed_order(steps)
    ordered.sort(key=lambda kv: listed.index(kv[0]))
    cols = [{"steps": [], "added": "none", **postprocess_evaluate(sets, None, metric, device=device)}]
    for i in range(len(ordered)):
        chosen = dict(ordered[: i + 1])
        cols.append({"steps": list(chosen), "added": ordered[i][0],
                     **postprocess_evaluate(sets, chosen, metric, device=device)})
    return cols


def _listed_order(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [s.strip() for s in spec.split(",") if s.strip()]
    if isinstance(spec, Mapping) or (hasattr(spec, "items") and not isinstance(spec, (list, tuple))):
        return [str(k) for k in dict(spec.items())]
    names = []
    for s in spec:
        names.extend([s] if isinstance(s, str) else [str(k) for k in dict(s.items())])
    return names



def postprocess_test_features(feats: torch.Tensor, eval_set: Any, metrics: dict[str, Any], metric: str,
                              steps: Any, features_path: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A test's post-processing (the results writer calls it): save the query/gallery features to
    ``features_path`` (when given) and, when ``steps`` are configured (``postprocess=...``), evaluate the
    post-processed ranking.

    Returns ``(main metrics, plain metrics before post-processing or None)``: with steps, the main
    metrics are the post-processed ones (``postprocess`` lists the steps applied).
    """
    from .protocol_registry import get_protocol
    from .saved_features import from_eval_set, save_features

    parsed = parse_steps(steps)
    if not get_protocol(eval_set).fixed_query_gallery:
        if parsed:
            raise ConfigError(f"postprocess: steps {list(parsed)} need a fixed query/gallery test set; "
                              f"this one uses the {eval_set.protocol!r} protocol")
        return metrics, None
    fs = from_eval_set(feats, eval_set, metric)
    if features_path is not None:
        save_features(fs, features_path)
    if not parsed:
        return metrics, None
    post = postprocess_evaluate(fs, parsed, metric, device=feats.device)
    return {**metrics, **post, "postprocess": ",".join(parsed)}, metrics
