"""Camera verification (VehicleNet sec. IV-C): the query and its true matches are taken by different
cameras, so gallery items of the query's camera (cluster) are removed from its ranking, or pushed back by
a fixed distance.

The camera of an image comes from a camera classifier's features clustered over query + gallery (the
paper: a DenseNet-121 trained to recognise the training cameras; test cameras may be unseen, hence the
clustering), or from the dataset's camera labels when they are trusted (``source: labels``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vreid_lightning.errors import ConfigError

__all__ = ["MODES", "camera_clusters", "camera_filter"]

MODES = ("remove", "penalty")


def camera_clusters(cam_feats: Any, n_clusters: int, seed: int = 0) -> np.ndarray:
    """k-means labels (N,) of L2-normalised camera-aware features (query + gallery together)."""
    from sklearn.cluster import KMeans

    x = torch.as_tensor(np.asarray(cam_feats.cpu() if isinstance(cam_feats, torch.Tensor) else cam_feats))
    if x.dim() != 2:
        raise ConfigError(f"camera_verification: camera features must be (N, D), got shape {tuple(x.shape)}")
    if isinstance(n_clusters, bool) or int(n_clusters) < 2:
        raise ConfigError(f"camera_verification.n_clusters: expected an int >= 2, got {n_clusters!r}")
    x = F.normalize(x.float(), dim=1).numpy()
    return KMeans(n_clusters=int(n_clusters), n_init=4, random_state=seed).fit_predict(x).astype(np.int64)


def camera_filter(q_groups: Any, g_groups: Any, mode: str = "remove", penalty: float = 1.0
                  ) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """Return ``fn(start, block)``: the (C, G) block with same-camera(-cluster) items removed (+inf,
    ranked last) or with ``penalty`` added to their distance."""
    if mode not in MODES:
        raise ConfigError(f"camera_verification.mode={mode!r}; expected one of {list(MODES)}")
    qg, gg = (torch.as_tensor(np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)).to(torch.int64)
              for x in (q_groups, g_groups))
    if bool((qg < 0).any()) or bool((gg < 0).any()):
        raise ConfigError("camera_verification: some images have no camera (-1); this dataset/split has no "
                          "camera labels: use camera features from a camera model (source: features)")

    def apply(start: int, block: torch.Tensor) -> torch.Tensor:
        same = qg[start:start + block.shape[0]].to(block.device)[:, None] == gg.to(block.device)[None, :]
        if mode == "remove":
            return block.masked_fill(same, float("inf"))
        return block + same.to(block.dtype) * float(penalty)

    return apply
