"""Streaming top-k of query-to-gallery distance blocks, in the evaluator's ranking order.

The evaluator (:mod:`vreid_lightning.evaluation.rank`) ranks a query's gallery by the stable ascending sort
of its distance row (equal distances keep gallery order); junk (same id and camera) is removed. This takes
the first ``k`` of that ranking from each (C, G) block without sorting a row: one ``topk`` finds the k-th
distance, the items at or below it (ties included) are sorted by (row, distance, gallery index), and the
first ``k`` per row are kept. Memory is one block; a 100k gallery costs a chunk of queries at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["block_topk", "streaming_topk"]


def block_topk(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, distances) ``(C, k)`` of the ``k`` first items of each row's stable ascending order;
    non-finite distances (removed items, NaN) give index -1 and distance inf."""
    c, g = block.shape
    kk = min(k, g)
    d = torch.where(torch.isnan(block), torch.full_like(block, float("inf")), block)
    kth = torch.topk(d, kk, dim=1, largest=False, sorted=True).values[:, -1:]
    rows, cols = (d <= kth).nonzero(as_tuple=True)  # row-major: gallery order within a row
    vals = d[rows, cols]
    order = torch.sort(vals, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]  # by row, then distance, then gallery index
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = torch.searchsorted(rows, torch.arange(c, device=rows.device))
    pos = torch.arange(rows.shape[0], device=rows.device) - first[rows]
    take = pos < kk
    idx = torch.full((c, k), -1, dtype=torch.long, device=block.device)
    dist = torch.full((c, k), float("inf"), dtype=block.dtype, device=block.device)
    idx[rows[take], pos[take]] = cols[take]
    dist[rows[take], pos[take]] = vals[take]
    gone = ~torch.isfinite(dist)
    idx[gone] = -1
    return idx, dist


def streaming_topk(blocks: Iterable[tuple[int, torch.Tensor]], num_queries: int, k: int,
                   junk: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of every query over ``(first row, (C, G) block)`` blocks (``ranking_blocks``).

    Args:
        junk: ``(q_ids, q_cams, g_ids, g_cams)``: items of the query's id and camera are removed first, as
            the evaluator does; None keeps everything (unlabelled images).

    Returns:
        ``(indices (Q, k) int64, -1 where fewer, distances (Q, k) float64)``.
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"topk: expected a positive int, got {k!r}")
    out_i = np.full((num_queries, k), -1, np.int64)
    out_d = np.full((num_queries, k), np.inf, np.float64)
    for s, block in blocks:
        e = s + block.shape[0]
        if junk is not None:
            qi, qc, gi, gc = (torch.as_tensor(np.asarray(a), device=block.device) for a in junk)
            bad = (qi[s:e, None] == gi[None, :]) & (qc[s:e, None] == gc[None, :])
            block = block.masked_fill(bad, float("inf"))
        idx, dist = block_topk(block, k)
        out_i[s:e], out_d[s:e] = idx.cpu().numpy(), dist.double().cpu().numpy()
    return out_i, out_d
