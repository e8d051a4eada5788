"""Normalise-and-concatenate: the one place features of several parts or models are joined.

Used for a method's feature combinations (RAM Table 1), for SCAN Table 3's ``SCAN*`` row (features of
light_vgg16 and light_vgg16+SCAN concatenated) and for VehicleNet's model ensemble (sec. IV-C): each
part is L2-normalised per row, then the parts are concatenated along the feature dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from vreid_lightning.errors import ConfigError

__all__ = ["NORMALIZE_CHOICES", "concat_features"]

NORMALIZE_CHOICES = ("l2", "none")
ArrayLike = Union[torch.Tensor, np.ndarray]


def concat_features(parts: Sequence[ArrayLike], normalize: str = "l2") -> ArrayLike:
    """Concatenate ``(N, D_i)`` feature blocks along dim 1, each L2-normalised first by default.

    Args:
        parts: one or more ``(N, D_i)`` arrays (all torch tensors or all numpy arrays), one row per
            image, in the same row order.
        normalize: ``"l2"`` (each part to unit length per row, as for an ensemble of models) or
            ``"none"``.

    Returns:
        ``(N, sum D_i)``, a torch tensor (on the first part's device) when the inputs are tensors,
        a numpy array when they are numpy arrays.

    Raises:
        ConfigError: ``normalize`` is not one of :data:`NORMALIZE_CHOICES`.
        ValueError: no parts, a part that is not 2-D, or parts with different row counts (the
            message gives every shape).
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(f"normalize={normalize!r}; expected one of {list(NORMALIZE_CHOICES)}")
    if len(parts) == 0:
        raise ValueError("concat_features: no feature blocks given")
    as_numpy = all(isinstance(p, np.ndarray) for p in parts)
    tensors = [torch.as_tensor(p) for p in parts]
    shapes = [tuple(int(d) for d in t.shape) for t in tensors]  # ints also while traced for export
    if any(t.dim() != 2 for t in tensors):
        raise ValueError(f"concat_features: every block must be (N, D); got shapes {shapes}")
    if len({s[0] for s in shapes}) != 1:
        raise ValueError(f"concat_features: blocks have different row counts, shapes {shapes}; "
                         "the features of every model must cover the same images in the same order")
    device = tensors[0].device
    tensors = [t.to(device=device, dtype=torch.float32) for t in tensors]
    if normalize == "l2":
        tensors = [F.normalize(t, dim=1) for t in tensors]
    out = torch.cat(tensors, dim=1)
    return out.numpy() if as_numpy else out
