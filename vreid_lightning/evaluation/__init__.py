"""Exact ranking metrics, distances and evaluation protocols.

Evaluation takes tensors (features or distances plus labels), never datasets. Ranking metrics are
exact (equal to a per-query stable sort), work in query chunks (memory O(chunk x G)) and run on the
tensors' device.
"""

from __future__ import annotations

from .distance import METRICS, compute_distance, cosine_distance, euclidean_distance, gallery_distance_fn
from .features import evaluate_features
from .protocols import (
    METRIC_KEYS,
    image_protocol,
    vehicleid_draw,
    vehicleid_protocol,
    vehicleid_protocol_repeats,
)
from .rank import RankAccumulator, evaluate_rank

__all__ = [
    "METRICS",
    "METRIC_KEYS",
    "RankAccumulator",
    "compute_distance",
    "cosine_distance",
    "euclidean_distance",
    "evaluate_features",
    "evaluate_rank",
    "gallery_distance_fn",
    "image_protocol",
    "vehicleid_draw",
    "vehicleid_protocol",
    "vehicleid_protocol_repeats",
]
