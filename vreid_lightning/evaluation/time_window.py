"""Time window (VehicleNet sec. IV-C, "Temporal Annotation"): gallery items whose timestamp is further
than tau from the query's are removed from its ranking (they rank last, after every kept item)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vreid_lightning.errors import ConfigError

__all__ = ["check_timestamps", "time_window_filter"]

MISSING = -1  # vreid_lightning.data.datasets.base.MISSING


def check_timestamps(times: Any, name: str) -> torch.Tensor:
    """int64 timestamps, or one ConfigError naming the split when they are missing."""
    if times is None:
        raise ConfigError(f"time_window: the {name} has no timestamps; this dataset/split cannot use a time window")
    t = torch.as_tensor(np.asarray(times.cpu() if isinstance(times, torch.Tensor) else times)).to(torch.int64)
    if t.numel() and bool((t == MISSING).any()):
        n = int((t == MISSING).sum())
        raise ConfigError(f"time_window: {n} of {t.numel()} images of the {name} have no timestamp "
                          f"(-1); this dataset/split cannot use a time window")
    return t


def time_window_filter(q_times: Any, g_times: Any, tau: float):
    """Return ``fn(start, block)``: the (C, G) block with +inf where |t_q - t_g| > tau."""
    if not float(tau) > 0:
        raise ConfigError(f"time_window.tau: expected a positive number of frames, got {tau!r}")
    qt, gt = check_timestamps(q_times, "query set"), check_timestamps(g_times, "gallery set")

    def apply(start: int, block: torch.Tensor) -> torch.Tensor:
        q = qt[start:start + block.shape[0]].to(block.device)
        far = (q[:, None] - gt.to(block.device)[None, :]).abs() > float(tau)
        return block.masked_fill(far, float("inf"))

    return apply
