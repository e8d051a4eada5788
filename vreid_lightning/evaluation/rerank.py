"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact to the authors' released code, in O(N k1) memory.

The released ``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)`` builds the (N, N)
original distance over queries + gallery (N = Q + G), squares it (float32), divides each column by its
maximum and transposes (for a symmetric distance: row i divided by the largest distance of row i),
ranks every row, and then:

1. R(i, k1): the k-reciprocal neighbours of i among its k1 + 1 nearest (i is among the k1 + 1 nearest
   of each of them);
2. expansion: for every c in R(i, k1), R(c, round(k1 / 2)) is added when more than 2/3 of it lies in
   R(i, k1);
3. V[i, x] = exp(-d(i, x)) / sum over the expanded set (Gaussian kernel of the normalised distance);
4. local query expansion: V[i] <- mean of V over the k2 nearest of i (when k2 != 1);
5. Jaccard distance 1 - s / (2 - s), s(i, j) = sum_x min(V[i, x], V[j, x]), through the inverted index;
6. final = (1 - lambda) Jaccard + lambda original, the (Q, G) block.

Here every step works from the features and never holds an (N, N) array: a chunked pass over the upper
triangle of the distance (each pair computed once, serving both its rows) computes each row's maximum and
its k1 + 1 nearest (stable order: equal distances keep index order, as a stable sort), the reciprocal tests and the 2/3 rule are vectorised over the neighbour lists, V
and its expansion are sparse (rows sorted, ~N x 50 non-zeros), and the Jaccard term of a query chunk
is a scatter-add over the inverted index (the gallery columns of V). The final distances come out
(chunk, G) block by block (:func:`k_reciprocal_chunks`), straight into the streaming evaluator
(:func:`rerank_evaluate`). Memory O(N k1 + chunk x N); the same code runs on CUDA tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from .distance import METRICS, gallery_distance_fn
from .rank import RankAccumulator, as_label_tensor

__all__ = ["k_reciprocal_distances", "k_reciprocal_chunks", "rerank_evaluate", "KReciprocalIndex"]

ArrayLike = Union[torch.Tensor, np.ndarray]
# (rows x N) elements per chunk of the passes (32 MB of float32; larger chunks: faster products, more memory)
CHUNK_ELEMENTS = 1 << 23
POOL_MARGIN = 8  # candidates kept per row beyond the k1 + 1 nearest (the symmetric pass merges partial lists)


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (N, D) feature matrix, got shape {tuple(t.shape)}")
    return t if t.is_floating_point() else t.to(torch.float32)


def _check_params(k1: int, k2: int, lambda_value: float, metric: str) -> None:
    for name, v in (("k1", k1), ("k2", k2)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a value in [0, 1], got {lambda_value!r}")
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")


def _stable_smallest(d2: torch.Tensor, row_max: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and values of the k smallest of ``d2 / row_max`` per row, in stable order (ties by index).

    The division is monotone, so one ``topk`` of k + 1 on ``d2`` finds the candidates; the quotients
    are taken for those only. A row whose (k + 1)-th quotient equals its k-th may have a tie across the
    boundary (rare) and is redone exactly from all its quotients.
    """
    m = row_max[:, None]
    if k >= d2.shape[1]:
        vals, idx = torch.sort(d2 / m, dim=1, stable=True)
        return idx, vals
    vals, idx = torch.topk(d2, k + 1, dim=1, largest=False, sorted=True)
    vals = vals / m
    bad = (vals[:, k] == vals[:, k - 1]).nonzero(as_tuple=True)[0]
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    if bad.numel():
        sub = d2[bad] / m[bad]
        kth = vals[bad, k - 1:k]
        rows, cols = (sub <= kth).nonzero(as_tuple=True)  # row-major: cols ascending within a row
        order = torch.sort(sub[rows, cols], stable=True).indices
        order = order[torch.sort(rows[order], stable=True).indices]  # by row, then value, then index
        rows, cols = rows[order], cols[order]
        counts = torch.bincount(rows, minlength=sub.shape[0])
        pos = torch.arange(rows.shape[0], device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
        idx[bad] = cols[pos < k].view(-1, k)
        vals[bad] = torch.gather(sub, 1, idx[bad])
    # within the selection, equal quotients by index: sort by index, then stably by value
    by_index = torch.sort(idx, dim=1).indices
    idx, vals = torch.gather(idx, 1, by_index), torch.gather(vals, 1, by_index)
    vals, order = torch.sort(vals, dim=1, stable=True)
    return torch.gather(idx, 1, order), vals


def _reciprocal_mask(ranks: torch.Tensor, k: int, step: int) -> torch.Tensor:
    """(N, k) bool: ranks[i, a] is a k-reciprocal neighbour of i (i is among its first k)."""
    n = ranks.shape[0]
    out = torch.empty((n, k), dtype=torch.bool, device=ranks.device)
    head = ranks[:, :k]
    for s in range(0, n, step):
        e = min(s + step, n)
        i = torch.arange(s, e, device=ranks.device)
        out[s:e] = (head[head[s:e]] == i[:, None, None]).any(dim=2)
    return out


def _member(x: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Elementwise ``x in sorted_keys`` (a binary search per element)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(x, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, x).clamp_(max=sorted_keys.shape[0] - 1)
    return sorted_keys[pos] == x


def _csr_ptr(rows: torch.Tensor, n: int) -> torch.Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
    ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return ptr


def _expand(ptr: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each entry of ``which`` (row ids), the positions of that row's entries; and the owner index."""
    counts = ptr[which + 1] - ptr[which]
    owner = torch.repeat_interleave(torch.arange(which.shape[0], device=which.device), counts)
    first = torch.cumsum(counts, 0) - counts
    pos = ptr[which][owner] + torch.arange(owner.shape[0], device=which.device) - first[owner]
    return pos, owner


class _SquaredDistances:
    """The original squared distances of the released code, from the features of queries + gallery.

    Euclidean: ``|x_i - x_j|^2`` from centred features (``sq_i + sq_j - 2 x_i.x_j``, the square taken
    before the root: equal to the released code's squared distance within one rounding); cosine:
    ``(1 - cos)^2``. ``rows`` gives blocks, ``pairs`` single pairs; the centred (or normalised) features
    are prepared once.
    """

    def __init__(self, x: torch.Tensor, metric: str) -> None:
        self.metric = metric
        if metric == "cosine":
            self.y = F.normalize(x, dim=1)
        else:
            self.y = x - x.mean(dim=0, keepdim=True)
        self.sq = (self.y * self.y).sum(dim=1)

    def rows(self, r: slice | torch.Tensor, cols: slice = slice(None)) -> torch.Tensor:
        """(rows, |cols|) exact squared distances, float32; ``r`` a slice or an index tensor."""
        y = self.y
        if self.metric == "cosine":
            one = torch.ones((1, 1), dtype=y.dtype, device=y.device)
            d = torch.addmm(one, y[r], y[cols].T, alpha=-1.0).clamp_(0.0, 2.0).square_()
        else:
            d = torch.addmm(self.sq[cols][None, :], y[r], y[cols].T, alpha=-2.0)
            d = d.add_(self.sq[r][:, None]).clamp_(min=0.0)
        return d.to(torch.float32)

    def pairs(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact squared distances of (row, column) pairs, float32."""
        out = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
        step = max(1, (1 << 22) // max(self.y.shape[1], 1))
        for a in range(0, rows.shape[0], step):
            r, c = rows[a:a + step], cols[a:a + step]
            dot = (self.y[r] * self.y[c]).sum(dim=1)
            if self.metric == "cosine":
                d = (1.0 - dot).clamp_(0.0, 2.0).square_()
            else:
                d = (self.sq[r] + self.sq[c] - 2.0 * dot).clamp_(min=0.0)
            out[a:a + step] = d.to(torch.float32)
        return out


class KReciprocalIndex:
    """The sparse state of k-reciprocal re-ranking over queries + gallery; yields re-ranked blocks.

    Args:
        q_feats, g_feats: (Q, D) and (G, D) features (numpy or torch, any device).
        k1, k2, lambda_value: the paper's parameters (defaults 20, 6, 0.3, CVPR 2017 sec. 4.2).
        metric: ``"euclidean"`` (plain Euclidean distances, squared by the algorithm as the released
            code does) or ``"cosine"`` (1 - cos, squared likewise).
        chunk_size: rows per chunk of the (chunk, N) passes; None: ~8M elements per chunk.
        keep_original: keep the (Q, G) original distances from the neighbour pass for ``blocks`` (memory
            Q x G more, one product less: for callers that hold the whole (Q, G) result anyway).
    """

    def __init__(self, q_feats: ArrayLike, g_feats: ArrayLike, k1: int = 20, k2: int = 6,
                 lambda_value: float = 0.3, metric: str = "euclidean", chunk_size: int | None = None,
                 keep_original: bool = False) -> None:
        _check_params(k1, k2, lambda_value, metric)
        q, g = _as_tensor(q_feats, "q_feats"), _as_tensor(g_feats, "g_feats")
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"features: query and gallery dimensions differ, {q.shape[1]} and {g.shape[1]}")
        if q.shape[0] == 0 or g.shape[0] == 0:
            raise ValueError(f"features: expected non-empty query and gallery sets, got {q.shape[0]} and {g.shape[0]}")
        dtype = torch.promote_types(q.dtype, g.dtype)
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        self.feats = torch.cat([q.to(device=g.device, dtype=dtype), g.to(dtype)])
        self.num_query, self.num = q.shape[0], self.feats.shape[0]
        self.lambda_value = float(lambda_value)
        self.metric = metric
        n = self.num
        self.chunk = int(chunk_size) if chunk_size else max(1, CHUNK_ELEMENTS // n)
        self.dist = _SquaredDistances(self.feats, metric)
        self.keep_original = bool(keep_original)
        dev = self.feats.device
        # 1. row maxima and stable k1 + 1 nearest neighbours (the released code's initial_rank[:, :k1 + 1])
        k = min(int(k1) + 1, n)
        ranks, top_vals, self._known = self._neighbour_pass(k)
        # 2. k-reciprocal sets R(i, k1) and R(c, k1 / 2) (np.around: half to even, like Python's round)
        kh = min(int(round(int(k1) / 2.0)) + 1, n)
        step = max(1, (1 << 22) // (k * k * kh))
        recip = _reciprocal_mask(ranks, k, step)
        recip_h = _reciprocal_mask(ranks, kh, step)
        n_h = recip_h.sum(dim=1).to(torch.float64)
        pair_rows, pair_cols = [], []
        for s in range(0, n, step):
            e = min(s + step, n)
            r, m = ranks[s:e], recip[s:e]                           # (C, k)
            cand = ranks[:, :kh][r]                                  # (C, k, kh): R(c, k1/2) of each c
            cand_ok = recip_h[r]
            rows = torch.arange(s, e, device=dev)
            own = torch.sort((rows[:, None] * n + r)[m]).values         # keys row * N + column of R(i, k1)
            inside = _member(rows[:, None, None] * n + cand, own) & cand_ok
            take = m & (inside.sum(dim=2).to(torch.float64) > (2.0 / 3.0) * n_h[r])  # the 2/3 rule
            ri, ai = m.nonzero(as_tuple=True)
            pair_rows.append(rows[ri])
            pair_cols.append(r[ri, ai])
            ti, ta, tb = (take[..., None] & cand_ok).nonzero(as_tuple=True)
            pair_rows.append(rows[ti])
            pair_cols.append(cand[ti, ta, tb])
        keys = torch.unique(torch.cat(pair_rows) * n + torch.cat(pair_cols))  # sorted: by row, then column
        v_rows, v_cols = keys // n, keys % n
        del pair_rows, pair_cols, recip, recip_h
        # 3. Gaussian weights of the normalised distance, per row normalised to sum 1
        w = torch.exp(-self._weights_input(keys))
        w_sum = torch.zeros(n, dtype=torch.float32, device=dev).index_add_(0, v_rows, w)
        v_vals = w / w_sum[v_rows]
        # 4. local query expansion: mean of V over the k2 nearest (released code: if k2 != 1)
        kq = min(int(k2), n)
        if int(k2) != 1:
            v_rows, v_cols, v_vals = self._expand_query(ranks[:, :kq], v_rows, v_cols, v_vals, kq)
        self.ptr = _csr_ptr(v_rows, n)
        self.v_cols, self.v_vals = v_cols, v_vals
        # 5. inverted index: for each column x, the gallery rows j with V[j, x] != 0
        in_g = v_rows >= self.num_query
        order = torch.sort(v_cols[in_g], stable=True).indices
        self.inv_ptr = _csr_ptr(v_cols[in_g][order], n)
        self.inv_rows = (v_rows[in_g] - self.num_query)[order]
        self.inv_vals = v_vals[in_g][order]

    def _neighbour_pass(self, k: int) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Row maxima (``self.row_max``), the stable k nearest of every row with their normalised squared
        distances, and a table (sorted keys row * N + column, values) of them for the V weights.

        The distance is symmetric, so each pair is computed once: the rows of a chunk [s, e) against the
        columns [s, N) (the upper triangle), the block serving its rows (columns >= s) and, transposed, the
        later rows (columns in [s, e)). Every row keeps a pool of its K = k + POOL_MARGIN smallest squared
        distances and its running maximum. The pool is then ordered by (normalised value, index), as a
        stable sort of the whole row would; a row whose k-th value equals the pool's largest (a tie across
        the pool's edge) is redone from its exact row. With ``keep_original`` the queries' gallery columns
        of the blocks are kept for ``blocks`` (the (Q, G) original term, computed once).
        """
        n, dev = self.num, self.feats.device
        kk = min(k + POOL_MARGIN, n)
        pool_v = torch.full((n, kk), float("inf"), dtype=torch.float32, device=dev)
        pool_i = torch.full((n, kk), -1, dtype=torch.int64, device=dev)
        self.row_max = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
        nq = self.num_query
        self._kept = torch.empty((nq, n - nq), dtype=torch.float32, device=dev) if self.keep_original else None

        def merge(rows: slice, vals: torch.Tensor, idx: torch.Tensor) -> None:
            v = torch.cat([pool_v[rows], vals], dim=1)
            i = torch.cat([pool_i[rows], idx], dim=1)
            v, pos = torch.topk(v, kk, dim=1, largest=False, sorted=False)
            pool_v[rows], pool_i[rows] = v, torch.gather(i, 1, pos)

        for s in range(0, n, self.chunk):
            e = min(s + self.chunk, n)
            block = self.dist.rows(slice(s, e), slice(s, n))  # np.power(original_dist, 2).astype(np.float32)
            if self._kept is not None and s < nq:
                self._kept[s:min(e, nq)] = block[:nq - s, nq - s:]
            # its rows: columns s..N-1 (the columns before s came from earlier chunks, transposed)
            torch.maximum(self.row_max[s:e], block.max(dim=1).values, out=self.row_max[s:e])
            v, i = torch.topk(block, min(kk, n - s), dim=1, largest=False, sorted=False)
            merge(slice(s, e), v, i + s)
            if e < n:  # the later rows: columns s..e-1, the block transposed
                later = block[:, e - s:].T.contiguous()  # (later rows, chunk): reductions along rows are faster
                torch.maximum(self.row_max[e:], later.max(dim=1).values, out=self.row_max[e:])
                v, i = torch.topk(later, min(kk, e - s), dim=1, largest=False, sorted=False)
                merge(slice(e, n), v, i + s)
                del later
            del block
        # stable order inside each pool: by index, then stably by normalised value (= the released code's)
        q = pool_v / self.row_max[:, None]
        by_index = torch.sort(pool_i, dim=1).indices
        pool_i, q = torch.gather(pool_i, 1, by_index), torch.gather(q, 1, by_index)
        q, order = torch.sort(q, dim=1, stable=True)
        pool_i = torch.gather(pool_i, 1, order)
        ranks, top_vals = pool_i[:, :k].contiguous(), q[:, :k].contiguous()
        if kk < n:  # a tie across the pool's edge: the k-th value equals the pool's largest
            redo = (q[:, k - 1] >= q[:, kk - 1]).nonzero(as_tuple=True)[0]
            for a in range(0, redo.shape[0], self.chunk):
                r = redo[a:a + self.chunk]
                ranks[r], top_vals[r] = _stable_smallest(self.dist.rows(r), self.row_max[r], k)
        keys = (torch.arange(n, device=dev)[:, None] * n + ranks).reshape(-1)
        order = torch.argsort(keys)
        return ranks, top_vals, (keys[order], top_vals.reshape(-1)[order])

    def _original(self, s: int, e: int, cols: slice) -> torch.Tensor:
        """Rows s:e of the normalised squared distance (float32) against the items ``cols``."""
        if self._kept is not None and cols == slice(self.num_query, self.num):
            return self._kept[s:e] / self.row_max[s:e, None]
        return self.dist.rows(slice(s, e), cols) / self.row_max[s:e, None]

    def _weights_input(self, keys: torch.Tensor) -> torch.Tensor:
        """Normalised distances of the V pairs (keys row * N + column): from the neighbour pass's table
        where it computed them, computed for the others."""
        n = self.num
        known_keys, known_vals = self._known
        pos = torch.searchsorted(known_keys, keys).clamp_(max=known_keys.shape[0] - 1)
        found = known_keys[pos] == keys
        out = torch.where(found, known_vals[pos], torch.zeros((), dtype=torch.float32, device=keys.device))
        miss = (~found).nonzero(as_tuple=True)[0]
        if miss.numel():
            r = keys[miss] // n
            out[miss] = self.dist.pairs(r, keys[miss] % n) / self.row_max[r]
        return out

    def _expand_query(self, near: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                      kq: int) -> tuple[torch.Tensor, ...]:
        """V_qe[i] = mean of V[r] over r in ``near[i]`` (sparse; rows sorted, columns sorted within a row)."""
        n = self.num
        ptr = _csr_ptr(rows, n)
        per_row = max(1, int(ptr[-1]) // n) * kq
        step = max(1, (1 << 23) // per_row)
        out_keys, out_vals = [], []
        for s in range(0, n, step):
            e = min(s + step, n)
            src = near[s:e].reshape(-1)
            owner_row = torch.arange(s, e, device=rows.device).repeat_interleave(kq)
            pos, owner = _expand(ptr, src)
            keys, order = torch.sort(owner_row[owner] * n + cols[pos], stable=True)  # sums in rank order, as np.mean
            new = torch.ones_like(keys, dtype=torch.bool)
            new[1:] = keys[1:] != keys[:-1]
            seg = torch.cumsum(new, 0) - 1
            acc = torch.zeros(int(new.sum()), dtype=torch.float32, device=rows.device).index_add_(0, seg, vals[pos][order])
            out_keys.append(keys[new])
            out_vals.append(acc / kq)
        keys = torch.cat(out_keys)
        return keys // n, keys % n, torch.cat(out_vals)

    def blocks(self, chunk_size: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first query row, (C, G) float32 re-ranked distances)`` for consecutive query chunks."""
        nq, n = self.num_query, self.num
        ng = n - nq
        step = int(chunk_size) if chunk_size else max(1, CHUNK_ELEMENTS // n)
        lam = self.lambda_value
        for s in range(0, nq, step):
            e = min(s + step, nq)
            c = e - s
            pos, owner = _expand(self.ptr, torch.arange(s, e, device=self.ptr.device))  # V[i, x] != 0
            x, v_ix = self.v_cols[pos], self.v_vals[pos]
            ipos, iown = _expand(self.inv_ptr, x)  # gallery rows j with V[j, x] != 0
            mins = torch.minimum(v_ix[iown], self.inv_vals[ipos])
            flat = owner[iown] * ng + self.inv_rows[ipos]
            temp = torch.zeros(c * ng, dtype=torch.float32, device=mins.device).index_add_(0, flat, mins)
            temp = temp.view(c, ng)
            jaccard = 1 - temp / (2.0 - temp)
            original = self._original(s, e, slice(nq, n))
            yield s, jaccard * (1 - lam) + original * lam


def k_reciprocal_chunks(q_feats: ArrayLike, g_feats: ArrayLike, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, metric: str = "euclidean",
                        chunk_size: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Re-ranked (Q, G) distances block by block: yields ``(first query row, (C, G) torch block)``.

    Memory O(N k1 + chunk x N); see the module docstring for the steps. Blocks are float32 torch
    tensors on the features' device.
    """
    index = KReciprocalIndex(q_feats, g_feats, k1, k2, lambda_value, metric, chunk_size)
    yield from index.blocks(chunk_size)


def k_reciprocal_distances(q_feats: ArrayLike, g_feats: ArrayLike, k1: int = 20, k2: int = 6,
                           lambda_value: float = 0.3, metric: str = "euclidean",
                           chunk_size: int | None = None) -> ArrayLike:
    """The (Q, G) k-reciprocal re-ranked distances (float32), numpy in -> numpy out, torch in -> torch out.

    The whole (Q, G) result is held, and the original (Q, G) term is kept from the neighbour pass (twice
    Q x G floats at the peak); for sets whose Q x G does not fit, use :func:`k_reciprocal_chunks` or
    :func:`rerank_evaluate`, which hold one (chunk, G) block at a time.

    Args:
        q_feats, g_feats: (Q, D) and (G, D) features.
        k1, k2, lambda_value: CVPR 2017 sec. 4.2 defaults 20, 6, 0.3.
        metric: ``"euclidean"`` or ``"cosine"``: the original distance, squared as in the released code.
        chunk_size: rows per chunk (memory knob only; the result does not depend on it).
    """
    index = KReciprocalIndex(q_feats, g_feats, k1, k2, lambda_value, metric, chunk_size, keep_original=True)
    out = torch.cat([b for _, b in index.blocks(chunk_size)])
    return out if isinstance(q_feats, torch.Tensor) else out.cpu().numpy()


def rerank_evaluate(q_feats: ArrayLike, g_feats: ArrayLike, q_ids: Any, g_ids: Any, q_cams: Any = None,
                    g_cams: Any = None, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                    metric: str = "euclidean", max_rank: int = 50, chunk_size: int | None = None) -> dict[str, Any]:
    """Exact ranking metrics of the re-ranked distances, streamed block by block into the evaluator."""
    index = KReciprocalIndex(q_feats, g_feats, k1, k2, lambda_value, metric, chunk_size)
    dev = index.feats.device
    acc = RankAccumulator(as_label_tensor(g_ids, "g_ids", index.num - index.num_query, dev), g_cams, max_rank, dev)
    qi = as_label_tensor(q_ids, "q_ids", index.num_query, dev)
    qc = None if q_cams is None else as_label_tensor(q_cams, "q_cams", index.num_query, dev)
    for s, block in index.blocks(chunk_size):
        e = s + block.shape[0]
        acc.update(block, qi[s:e], None if qc is None else qc[s:e])
    return acc.compute()
