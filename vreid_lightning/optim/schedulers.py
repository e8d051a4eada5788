"""Learning-rate schedules counted in iterations (optimizer steps), not epochs.

SCAN sec. 4.1: "The learning rate decay factor is 0.8 for every 2,000 iterations". A scheduler class
says how often Lightning must step it through its ``interval`` attribute (``"step"`` here); the base
module reads it with :func:`scheduler_interval` (``"epoch"`` for torch's own schedulers).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import StepLR

__all__ = ["IterationStepLR", "scheduler_interval"]


class IterationStepLR(StepLR):
    """``lr = base_lr * gamma ** (iteration // step_size)``, stepped after every optimizer step.

    Args:
        optimizer: the wrapped optimizer.
        step_size: iterations between decays (SCAN sec. 4.1: 2,000).
        gamma: decay factor (SCAN sec. 4.1: 0.8).
    """

    interval = "step"

    def __init__(self, optimizer: Optimizer, step_size: int = 2000, gamma: float = 0.8, last_epoch: int = -1) -> None:
        if int(step_size) < 1:
            raise ValueError(f"IterationStepLR: step_size must be >= 1 iteration, got {step_size}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"IterationStepLR: gamma must be in (0, 1], got {gamma}")
        super().__init__(optimizer, step_size=int(step_size), gamma=float(gamma), last_epoch=last_epoch)


def scheduler_interval(scheduler: Any) -> str:
    """``"step"`` for schedulers counted in iterations, ``"epoch"`` otherwise (torch's schedulers)."""
    interval = getattr(scheduler, "interval", "epoch")
    if interval not in ("step", "epoch"):
        raise ValueError(f"{type(scheduler).__name__}.interval must be 'step' or 'epoch', got {interval!r}")
    return interval
