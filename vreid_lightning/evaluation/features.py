"""Evaluate features directly: distances per query chunk, never the full Q x G matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .distance import gallery_distance_fn
from .rank import RankAccumulator, as_label_tensor, auto_chunk_size

__all__ = ["evaluate_features", "row_index"]


def row_index(rows: Any, num_rows: int) -> slice | np.ndarray:
    """``rows`` as an index of a ``num_rows``-row feature matrix: a slice when they are consecutive and in
    range (indexing gives a view: no copy of the features, as for an image set's query and gallery rows),
    else the int64 array (indexing copies)."""
    x = np.asarray(rows, dtype=np.int64)
    if x.ndim == 1 and x.size and 0 <= x[0] and x[-1] < num_rows and x[-1] - x[0] == x.size - 1 \
            and bool((np.diff(x) == 1).all()):
        return slice(int(x[0]), int(x[-1]) + 1)
    return x


@torch.no_grad()
def evaluate_features(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    q_ids: Any,
    g_ids: Any,
    q_cams: Any | None = None,
    g_cams: Any | None = None,
    metric: str = "cosine",
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Exact ranking metrics of query vs gallery features, computed chunk by chunk.

    Equals ``evaluate_rank(compute_distance(q_feats, g_feats, metric), ...)`` while holding only a
    (chunk, G) distance block at a time, so a 1,000,000-image gallery fits in memory. Runs on the
    gallery features' device.

    Args:
        q_feats, g_feats: (Q, D) and (G, D) features.
        q_ids, g_ids, q_cams, g_cams: labels, as in :func:`~.rank.evaluate_rank`.
        metric: ``"cosine"`` or ``"euclidean"``.
        max_rank: CMC length.
        chunk_size: queries per chunk; ``None`` picks ~8M distances per chunk.

    Returns:
        The :func:`~.rank.evaluate_rank` dict.
    """
    g = g_feats if isinstance(g_feats, torch.Tensor) else torch.as_tensor(np.asarray(g_feats))
    q = q_feats if isinstance(q_feats, torch.Tensor) else torch.as_tensor(np.asarray(q_feats))
    if q.dim() != 2 or g.dim() != 2:
        raise ValueError(
            f"features: expected 2-D (N, D) query and gallery features, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if (q_cams is None) != (g_cams is None):
        raise ValueError("q_cams/g_cams: expected both or neither, got only one")
    nq, ng = q.shape[0], g.shape[0]
    distance = gallery_distance_fn(g, metric)
    dev = g.device
    acc = RankAccumulator(as_label_tensor(g_ids, "g_ids", ng, dev), g_cams, max_rank, device=dev)
    qi = as_label_tensor(q_ids, "q_ids", nq, dev)
    qc = None if q_cams is None else as_label_tensor(q_cams, "q_cams", nq, dev)
    step = auto_chunk_size(nq, ng, chunk_size)
    for s in range(0, nq, step):
        acc.update(distance(q[s : s + step]), qi[s : s + step], None if qc is None else qc[s : s + step])
    return acc.compute()
