"""Pairwise distances between query and gallery features (torch, any device).

Each helper takes ``(Q, D)`` and ``(G, D)`` features and returns a ``(Q, G)`` matrix; it is cheap
to call per query chunk. :func:`gallery_distance_fn` prepares the gallery once (its norms, or a centred
copy and squared norms) and returns a function of a query chunk, for chunked evaluation. The cosine
metric holds no copy of the gallery: each (chunk, G) product of the normalised queries with the raw
gallery is divided by the gallery norms (``F.normalize``'s norms, clamped at its eps), which equals the
product with a normalised gallery up to the rounding of the last bits (a few float32 ulps of the
distance; the order of two items differs only where their distances tie within that rounding).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["METRICS", "cosine_distance", "euclidean_distance", "compute_distance", "gallery_distance_fn"]

METRICS = ("cosine", "euclidean")
_EPS = 1e-12  # F.normalize's default eps


def _as_features(x: torch.Tensor, name: str) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (N, D) feature matrix, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
        x = x.to(torch.float32)
    return x


def cosine_distance(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``1 - cos(q_i, g_j)`` on L2-normalised features, clamped to [0, 2]. Shape (Q, G)."""
    return gallery_distance_fn(g, "cosine")(q)


def euclidean_distance(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Plain (non-squared) Euclidean distance ``||q_i - g_j||``, shape (Q, G).

    Computed as ``|q|^2 + |g|^2 - 2 q.g`` (one matmul) on features centred by the gallery mean
    (distances are translation invariant; centring limits cancellation for features with a large
    common offset, e.g. post-ReLU pooling); the squared value is clamped at 0 before the root.
    """
    return gallery_distance_fn(g, "euclidean")(q)


def gallery_distance_fn(g: torch.Tensor, metric: str = "cosine") -> Callable[[torch.Tensor], torch.Tensor]:
    """Prepare the gallery once; return ``fn(q_chunk) -> (C, G)`` distances on the gallery's device.

    Query chunks are moved to the gallery's device and dtype (the wider of the two is used).
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    g = _as_features(g, "g")
    if metric == "cosine":
        norms = torch.linalg.vector_norm(g, dim=1).clamp_min_(_EPS)  # F.normalize's denominators
    else:
        centre = g.mean(dim=0, keepdim=True)
        g = g - centre
        g_sq = (g * g).sum(dim=1)
    prepared = {g.dtype: g}

    def distance(q: torch.Tensor) -> torch.Tensor:
        q = _as_features(q, "q").to(g.device)
        if q.shape[1] != g.shape[1]:
            raise ValueError(
                f"features: expected the same dimension for query and gallery, got {q.shape[1]} and {g.shape[1]}"
            )
        dtype = torch.promote_types(q.dtype, g.dtype)
        if dtype not in prepared:
            prepared[dtype] = g.to(dtype)
        gd, q = prepared[dtype], q.to(dtype)
        if metric == "cosine":
            # 1 - (q / |q|) . (g / |g|), the division by |g| on the (C, G) product: no (G, D) copy
            prod = torch.mm(F.normalize(q, dim=1, eps=_EPS), gd.T).div_(norms.to(dtype)[None, :])
            return prod.neg_().add_(1.0).clamp_(0.0, 2.0)
        q = q - centre.to(dtype)
        d2 = torch.addmm((q * q).sum(dim=1, keepdim=True) + g_sq.to(dtype)[None, :], q, gd.T, alpha=-2.0)
        return d2.clamp_(min=0.0).sqrt_()

    return distance


def compute_distance(q: torch.Tensor, g: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Distance matrix (Q, G) for ``metric`` in ``("cosine", "euclidean")``."""
    return gallery_distance_fn(g, metric)(q)
