"""Step-level metrics are logged even when an epoch has fewer batches than ``trainer.log_every_n_steps``.

The suite's trainer default (``log_every_n_steps: 10``) suits the paper-scale epochs; on a small world
(or with ``trainer.limit_train_batches``) an epoch can hold fewer batches, and then ``train/loss`` was
never logged (Lightning warned about it). :class:`LogCadence` lowers the interval to the epoch's number
of batches at the start of training, so every epoch logs at least once; the warning, whose cause this
removes, is silenced in :mod:`vreid_lightning.logs`.
"""

from __future__ import annotations

import math

import lightning as L

__all__ = ["LogCadence"]


class LogCadence(L.Callback):
    """At the start of a fit: ``trainer.log_every_n_steps = min(itself, batches per epoch)``."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = trainer.num_training_batches
        if isinstance(n, (int, float)) and math.isfinite(n) and 0 < n < trainer.log_every_n_steps:
            trainer.log_every_n_steps = int(n)
