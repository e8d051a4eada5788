"""Linear warm-up followed by step decays, counted in epochs (BoT, Luo et al. CVPRW 2019, 'Warmup Learning Rate')."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupMultiStepLR"]


class WarmupMultiStepLR(LambdaLR):
    """``lr = base_lr * w(e) * gamma ** (number of milestones <= e)`` at epoch ``e`` (0-based), where
    ``w(e) = warmup_factor + (1 - warmup_factor) * e / warmup_epochs`` for ``e < warmup_epochs``, else 1.

    Args:
        optimizer: the wrapped optimizer.
        milestones: epochs at which the rate is multiplied by ``gamma``.
        gamma: decay factor.
        warmup_epochs: length of the linear warm-up (0: none).
        warmup_factor: the first epoch's fraction of the base rate.
    """

    interval = "epoch"

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1, warmup_epochs: int = 10,
                 warmup_factor: float = 0.1, last_epoch: int = -1) -> None:
        steps = sorted(int(m) for m in milestones)
        if not 0.0 < float(gamma) <= 1.0 or not 0.0 < float(warmup_factor) <= 1.0 or int(warmup_epochs) < 0:
            raise ValueError(f"WarmupMultiStepLR: expected gamma and warmup_factor in (0, 1] and warmup_epochs >= 0, "
                             f"got {gamma}, {warmup_factor}, {warmup_epochs}")
        self.milestones, self.gamma = steps, float(gamma)
        self.warmup_epochs, self.warmup_factor = int(warmup_epochs), float(warmup_factor)
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base rate at ``epoch``."""
        warm = 1.0
        if epoch < self.warmup_epochs:
            warm = self.warmup_factor + (1.0 - self.warmup_factor) * epoch / self.warmup_epochs
        return warm * self.gamma ** sum(1 for m in self.milestones if m <= epoch)
