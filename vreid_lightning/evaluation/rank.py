"""Exact ranking metrics (mAP, CMC, mINP) without a full Q x G argsort.

The ranking of a query is the stable ascending sort of its distance row (equal distances keep
gallery order), i.e. ``np.argsort(row, kind="stable")``. Gallery items with the query's id and
camera are junk: they are removed from the ranking. Only the ranks of the positives matter:

    rank(p) = 1 + #valid items before p,

"before" meaning a strictly smaller distance, or an equal distance and a smaller gallery index.
An item ranked after a query's hardest positive changes no rank, so per query chunk only the
candidates, items with ``distance <= the row's largest positive distance``, are gathered (one
dense compare and one ``nonzero``). Every item gets an exact int64 key ``(row, distance code,
gallery index)`` whose order is the stable ranking order; one ``searchsorted`` of the candidates'
keys among the sorted positive keys, a histogram and a cumulative sum give, for each positive, the
number of items before it; junk is subtracted the same way. Positives and junk are enumerated
from the id-sorted gallery without a dense pass. Memory is O(chunk x G), the cost is two dense
passes plus work proportional to the candidates (all items in the worst case, every distance
tied, where it costs a few times a full sort), the result equals the sort-everything reference
exactly, and the same code runs on CUDA tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["RankAccumulator", "evaluate_rank", "auto_chunk_size", "as_label_tensor"]

# Queries x gallery elements per chunk when ``chunk_size`` is None (about 1 byte of dense
# temporaries per element, plus the sparse candidates: at most ~60 bytes per element when
# every distance ties).
DEFAULT_CHUNK_ELEMENTS = 1 << 23


def auto_chunk_size(num_queries: int, num_gallery: int, chunk_size: int | None = None) -> int:
    """Queries per chunk: ``chunk_size`` if given, else ~``DEFAULT_CHUNK_ELEMENTS`` per chunk."""
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or int(chunk_size) < 1:
            raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
        return int(chunk_size)
    return max(1, min(max(num_queries, 1), DEFAULT_CHUNK_ELEMENTS // max(num_gallery, 1)))


def as_label_tensor(x: Any, name: str, length: int | None, device: torch.device | str) -> torch.Tensor:
    """Convert ids/cameras (numpy, torch, list) to a 1-D int64 tensor on ``device``."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 1 or (length is not None and t.shape[0] != length):
        want = "a 1-D array" + ("" if length is None else f" of length {length}")
        raise ValueError(f"{name}: expected {want}, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer labels, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


def _value_codes(values: torch.Tensor, *subsets: torch.Tensor) -> tuple[int, torch.Tensor, ...]:
    """Order-preserving int64 codes of distances (equal values, equal codes), after their bit width.

    float32-representable values map to their float32 bits, made order-preserving (32 bits);
    other float64 values to their index among the sorted distinct ``values``. Each of ``subsets``
    holds values taken from ``values`` and is coded the same way.
    """
    exact32 = values.dtype != torch.float64 or bool((values.to(torch.float32).to(torch.float64) == values).all())
    if not exact32:
        distinct = torch.unique(values)  # sorted
        nbits = max(1, (distinct.shape[0] - 1).bit_length())
        return (nbits, *(torch.searchsorted(distinct, v) for v in (values, *subsets)))
    bits = values.to(torch.float32).view(torch.int32)
    if bits.numel() == 0 or int(bits.min()) >= 0:  # all >= +0.0: the raw bits sort like the values
        raw = (v.to(torch.float32).view(torch.int32).to(torch.int64) for v in subsets)
        return (32, bits.to(torch.int64), *raw)
    return (32, *(_ordered_bits(v) for v in (values, *subsets)))


def _ordered_bits(values: torch.Tensor) -> torch.Tensor:
    """Map float32-representable values to int64 codes in [0, 2^32) preserving their order exactly."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 maps -0.0 to +0.0
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64) + (1 << 31)


class RankAccumulator:
    """Accumulates exact mAP / CMC / mINP over query chunks against a fixed gallery.

    Args:
        g_ids: (G,) gallery identity labels.
        g_cams: (G,) gallery cameras, or None for no junk rule (VehicleID).
        max_rank: length of the CMC curve.
        device: where the labels live; defaults to ``g_ids``' device (CPU for numpy). Labels are
            moved to each chunk's device on first use.

    Example:
        >>> acc = RankAccumulator(g_ids, g_cams, max_rank=10)  # doctest: +SKIP
        >>> for s in range(0, len(q_ids), 256):  # doctest: +SKIP
        ...     acc.update(dist[s:s + 256], q_ids[s:s + 256], q_cams[s:s + 256])
        >>> acc.compute()["mAP"]  # doctest: +SKIP
    """

    def __init__(self, g_ids: Any, g_cams: Any | None = None, max_rank: int = 50, device: Any = None):
        if isinstance(max_rank, bool) or int(max_rank) != max_rank or int(max_rank) < 1:
            raise ValueError(f"max_rank: expected a positive int, got {max_rank!r}")
        dev = device if device is not None else (g_ids.device if isinstance(g_ids, torch.Tensor) else "cpu")
        self.g_ids = as_label_tensor(g_ids, "g_ids", None, dev)
        self.num_gallery = int(self.g_ids.shape[0])
        if self.num_gallery == 0:
            raise ValueError("g_ids: expected a non-empty gallery, got 0 items")
        if self.num_gallery >= 1 << 31:
            raise ValueError(f"g_ids: expected fewer than 2^31 gallery items, got {self.num_gallery}")
        self.g_cams = None if g_cams is None else as_label_tensor(g_cams, "g_cams", self.num_gallery, dev)
        self.max_rank = int(max_rank)
        self._gbits = max(1, (self.num_gallery - 1).bit_length())
        self._sorted_ids, self._id_order = torch.sort(self.g_ids, stable=True)
        self.ap_sum = 0.0
        self.inp_sum = 0.0
        self.first_hist = np.zeros(self.max_rank + 2, dtype=np.int64)
        self.num_valid = 0
        self.num_queries = 0

    def _to(self, device: torch.device) -> None:
        if self.g_ids.device != device:
            self.g_ids = self.g_ids.to(device)
            self.g_cams = None if self.g_cams is None else self.g_cams.to(device)
            self._sorted_ids, self._id_order = self._sorted_ids.to(device), self._id_order.to(device)

    def _same_id_pairs(self, q_ids: torch.Tensor, q_cams: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """(row, gallery index) of the valid positives and of the junk, from the id-sorted gallery."""
        lo = torch.searchsorted(self._sorted_ids, q_ids, side="left")
        count = torch.searchsorted(self._sorted_ids, q_ids, side="right") - lo
        rows = torch.repeat_interleave(torch.arange(q_ids.shape[0], device=q_ids.device), count)
        first = torch.cumsum(count, 0) - count
        cols = self._id_order[lo[rows] + torch.arange(rows.shape[0], device=q_ids.device) - first[rows]]
        if q_cams is None:
            return rows, cols, rows[:0], cols[:0]
        junk = q_cams[rows] == self.g_cams[cols]
        return rows[~junk], cols[~junk], rows[junk], cols[junk]

    @torch.no_grad()
    def update(self, dist: torch.Tensor, q_ids: Any, q_cams: Any | None = None) -> None:
        """Add a (C, G) distance chunk and its query labels."""
        if not isinstance(dist, torch.Tensor):
            dist = torch.as_tensor(dist)
        if dist.dim() != 2 or dist.shape[1] != self.num_gallery:
            raise ValueError(
                f"distmat: expected a (C, {self.num_gallery}) chunk, got shape {tuple(dist.shape)}"
            )
        if dist.is_complex() or dist.dtype == torch.bool:
            raise ValueError(f"distmat: expected real distances, got dtype {dist.dtype}")
        if (q_cams is None) != (self.g_cams is None):
            raise ValueError("q_cams/g_cams: expected both or neither, got only one")
        if not dist.is_floating_point():
            dist = dist.to(torch.float64)
        self._to(dist.device)
        q_ids = as_label_tensor(q_ids, "q_ids", dist.shape[0], dist.device)
        q_cams = None if q_cams is None else as_label_tensor(q_cams, "q_cams", dist.shape[0], dist.device)
        block = 1 << (31 - self._gbits)  # rows per block so that (row, bits, index) fits 63 bits
        for s in range(0, dist.shape[0], block):
            e = min(s + block, dist.shape[0])
            self._update_block(dist[s:e], q_ids[s:e], None if q_cams is None else q_cams[s:e])

    def _update_block(self, dist: torch.Tensor, q_ids: torch.Tensor, q_cams: torch.Tensor | None) -> None:
        c, dev = dist.shape[0], dist.device
        self.num_queries += c
        pos_rows, pos_cols, junk_rows, junk_cols = self._same_id_pairs(q_ids, q_cams)
        if pos_rows.numel() == 0:
            return
        pos_d = dist[pos_rows, pos_cols]
        if bool(torch.isnan(pos_d).any()):
            raise ValueError("distmat: expected no NaN distance for a query's positives, found NaN")
        # Items ranked before a positive have distance <= the row's largest positive distance:
        # they are the candidates (negatives, positives, junk), gathered sparsely.
        threshold = torch.full((c,), float("-inf"), dtype=dist.dtype, device=dev)
        threshold.scatter_reduce_(0, pos_rows, pos_d, reduce="amax")
        rows, cols = (dist <= threshold[:, None]).nonzero(as_tuple=True)
        junk_d = dist[junk_rows, junk_cols]
        junk_in = junk_d <= threshold[junk_rows]
        junk_rows, junk_cols, junk_d = junk_rows[junk_in], junk_cols[junk_in], junk_d[junk_in]
        vbits, codes, pos_codes, junk_codes = _value_codes(dist[rows, cols], pos_d, junk_d)
        gb = self._gbits

        def key(r: torch.Tensor, code: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
            # Exact int64 key (row, distance code, gallery index): key order = ranking order.
            return (r << (gb + vbits)) | (code << gb) | col

        pos_keys, perm = torch.sort(key(pos_rows, pos_codes, pos_cols))
        pos_rows = pos_rows[perm]  # row by row, each row's positives in ranking order
        n_pos = torch.bincount(pos_rows, minlength=c)
        before = self._count_before(pos_keys, pos_rows, key(rows, codes, cols), rows, c) - 1  # - itself
        before -= self._count_before(pos_keys, pos_rows, key(junk_rows, junk_codes, junk_cols), junk_rows, c)
        j = torch.arange(pos_rows.shape[0], device=dev) - (torch.cumsum(n_pos, 0) - n_pos)[pos_rows]
        self._accumulate((before + 1).to(torch.float64), pos_rows, j, n_pos)

    @staticmethod
    def _count_before(
        pos_keys: torch.Tensor, pos_rows: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor, c: int
    ) -> torch.Tensor:
        """For each positive (sorted keys), the number of ``keys`` of its row that are <= its key."""
        bucket = torch.searchsorted(pos_keys, keys, out_int32=True)  # positives with a smaller key
        upto = torch.bincount(bucket, minlength=pos_keys.shape[0] + 1)
        # ``rows`` is sorted (row-major), so the items in rows before r are found by a search.
        rows_before = torch.searchsorted(rows, torch.arange(c, device=rows.device, dtype=rows.dtype))
        return torch.cumsum(upto, 0)[:-1] - rows_before[pos_rows]

    def _accumulate(self, rank: torch.Tensor, row: torch.Tensor, j: torch.Tensor, n_pos: torch.Tensor) -> None:
        """Add per-positive ranks (float64), their rows, their order j in the row, and n_pos."""
        valid = n_pos > 0
        n_pos_f = n_pos.to(torch.float64)
        precision = torch.zeros(n_pos.shape[0], dtype=torch.float64, device=rank.device)
        precision.index_add_(0, row, (j + 1) / rank)
        self.ap_sum += float((precision[valid] / n_pos_f[valid]).sum())
        hardest = j == n_pos[row] - 1
        self.inp_sum += float((n_pos_f[row[hardest]] / rank[hardest]).sum())
        first = rank[j == 0].clamp(max=self.max_rank + 1).to(torch.int64)
        self.first_hist += torch.bincount(first, minlength=self.max_rank + 2).cpu().numpy()
        self.num_valid += int(valid.sum())

    def compute(self) -> dict[str, Any]:
        """Return ``{"mAP", "mINP", "cmc", "num_valid_queries", "num_queries"}``."""
        if self.num_valid == 0:
            raise ValueError(
                f"evaluation: expected at least one query with a valid positive in the gallery, "
                f"got none among {self.num_queries} queries"
            )
        cmc = np.cumsum(self.first_hist[1 : self.max_rank + 1]).astype(np.float64) / self.num_valid
        return {
            "mAP": self.ap_sum / self.num_valid,
            "mINP": self.inp_sum / self.num_valid,
            "cmc": cmc,
            "num_valid_queries": self.num_valid,
            "num_queries": self.num_queries,
        }


def evaluate_rank(
    distmat: np.ndarray | torch.Tensor,
    q_ids: Any,
    g_ids: Any,
    q_cams: Any | None = None,
    g_cams: Any | None = None,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Exact mAP, mINP and CMC of a (Q, G) distance matrix, in query chunks.

    Args:
        distmat: (Q, G) distances, numpy or torch (computed on the tensor's device).
        q_ids, g_ids: query / gallery identity labels.
        q_cams, g_cams: camera labels; same id and same camera is junk (removed from the
            ranking). ``None`` (both) means no junk rule (VehicleID).
        max_rank: CMC length.
        chunk_size: queries per chunk; ``None`` picks ~8M elements per chunk.

    Returns:
        ``{"mAP": float, "mINP": float, "cmc": float64 array (max_rank,),
        "num_valid_queries": int, "num_queries": int}``. Queries without a valid positive are
        excluded from the averages and counted in ``num_queries`` only.

    Raises:
        ValueError: bad shapes or labels, NaN distance of a positive, or no valid query at all.
        NaN distances of other items rank last, as in ``np.argsort``.
    """
    dist = distmat if isinstance(distmat, torch.Tensor) else torch.as_tensor(np.asarray(distmat))
    if dist.dim() != 2:
        raise ValueError(f"distmat: expected a 2-D (Q, G) matrix, got shape {tuple(dist.shape)}")
    if (q_cams is None) != (g_cams is None):
        raise ValueError("q_cams/g_cams: expected both or neither, got only one")
    nq, ng = dist.shape
    qi = as_label_tensor(q_ids, "q_ids", nq, dist.device)
    qc = None if q_cams is None else as_label_tensor(q_cams, "q_cams", nq, dist.device)
    acc = RankAccumulator(g_ids, g_cams, max_rank, device=dist.device)
    step = auto_chunk_size(nq, ng, chunk_size)
    for s in range(0, nq, step):
        acc.update(dist[s : s + step], qi[s : s + step], None if qc is None else qc[s : s + step])
    return acc.compute()
