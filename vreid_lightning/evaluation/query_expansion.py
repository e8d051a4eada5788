"""Query expansion: DBSCAN over the queries (VehicleNet sec. IV-C), average / alpha query expansion and
database-side augmentation over the top k (common in re-ID and image retrieval).

Tensors in, tensors out. Features are L2-normalised first (the similarities are cosines); neighbour
lists come from chunked top-k (memory O(chunk x G)), never from a dense (N, N) matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vreid_lightning.errors import ConfigError

from .distance import gallery_distance_fn
from .rank import auto_chunk_size

__all__ = ["dbscan_query_expansion", "average_query_expansion", "database_augmentation", "top_k_neighbours"]


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ConfigError(f"{name}: expected a positive int, got {k!r}")
    return int(k)


@torch.no_grad()
def top_k_neighbours(x: torch.Tensor, db: torch.Tensor, k: int, chunk_size: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices (N, k) of the k most similar rows of ``db`` for each row of ``x``."""
    k = min(_check_k(k), db.shape[0])
    distance = gallery_distance_fn(db, "cosine")
    sims, idx = [], []
    step = auto_chunk_size(x.shape[0], db.shape[0], chunk_size)
    for s in range(0, x.shape[0], step):
        d = distance(x[s:s + step])
        v, i = torch.topk(d, k, dim=1, largest=False, sorted=True)
        sims.append(1.0 - v)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


def _weighted_mean(x: torch.Tensor, db: torch.Tensor, sims: torch.Tensor, idx: torch.Tensor, alpha: float,
                   include_self: bool) -> torch.Tensor:
    """(x [+] sum_i w_i db[idx_i]) renormalised, w_i = sim_i^alpha (alpha = 0: plain average)."""
    w = sims.clamp(min=0.0) ** float(alpha) if alpha else torch.ones_like(sims)
    out = (w[..., None] * db[idx]).sum(dim=1)
    if include_self:
        out = out + x
    return F.normalize(out, dim=1)


@torch.no_grad()
def average_query_expansion(q_feats: torch.Tensor, g_feats: torch.Tensor, k: int = 5, alpha: float = 0.0,
                            chunk_size: int | None = None) -> torch.Tensor:
    """Average (alpha = 0) or alpha-weighted query expansion: each query becomes the normalised sum of
    itself and its k nearest gallery features (weights cos^alpha; Radenovic et al., TPAMI 2018)."""
    q, g = F.normalize(q_feats.float(), dim=1), F.normalize(g_feats.float(), dim=1)
    sims, idx = top_k_neighbours(q, g, _check_k(k), chunk_size)
    return _weighted_mean(q, g, sims, idx, alpha, include_self=True)


@torch.no_grad()
def database_augmentation(g_feats: torch.Tensor, k: int = 5, alpha: float = 0.0,
                          chunk_size: int | None = None) -> torch.Tensor:
    """Database-side augmentation: each gallery feature becomes the normalised (weighted) sum of its k
    nearest gallery features, itself included (it is its own first neighbour)."""
    g = F.normalize(g_feats.float(), dim=1)
    sims, idx = top_k_neighbours(g, g, _check_k(k), chunk_size)
    return _weighted_mean(g, g, sims, idx, alpha, include_self=False)


@torch.no_grad()
def dbscan_query_expansion(q_feats: torch.Tensor, eps: float = 0.5, min_samples: int = 2) -> torch.Tensor:
    """VehicleNet sec. IV-C: DBSCAN over the query features; each clustered query is replaced by the mean
    (renormalised) of its cluster, noise points are kept.

    The DBSCAN distance is 2 - 2 cos on L2-normalised features (the authors' released code), i.e. the
    squared Euclidean distance; sklearn's neighbour search runs on the Euclidean distance with radius
    sqrt(eps), so no (Q, Q) matrix is built.
    """
    from sklearn.cluster import DBSCAN

    if not float(eps) > 0:
        raise ConfigError(f"eps: expected a positive float, got {eps!r}")
    min_samples = _check_k(min_samples, "min_samples")
    q = F.normalize(q_feats.float(), dim=1)
    labels = DBSCAN(eps=math.sqrt(float(eps)), min_samples=min_samples, metric="euclidean").fit_predict(
        q.cpu().numpy())
    lab = torch.as_tensor(labels, device=q.device)
    keep = lab >= 0
    if not bool(keep.any()):
        return q
    n_clusters = int(lab.max()) + 1
    sums = torch.zeros((n_clusters, q.shape[1]), dtype=q.dtype, device=q.device).index_add_(0, lab[keep], q[keep])
    out = q.clone()
    out[keep] = F.normalize(sums[lab[keep]], dim=1)
    return out

