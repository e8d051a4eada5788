"""Plain progress lines for logs that are not a terminal (nohup, SLURM logs, ``> log 2>&1``).

Lightning's progress bar needs a terminal (the runner switches it off when stderr is not one), which
left a long run silent for its whole training. :class:`ProgressLog` writes one plain log line every
``interval_s`` seconds of training, validation or test, through the ``vreid_lightning.progress`` logger
(so into the console and ``<run dir>/__main__.log``)::

    [progress] stage bn | fit | epoch 3/40 | step 120/360 | loss 1.2345 | 48.2 images/s | ETA 0:04:58

``stage`` is the staged run's stage (absent for a single run); the ETA is the rest of the run or
stage at the speed so far (the fit's steps; the evaluation's batches). ``when``: ``auto`` (only when
stderr is not a terminal: the progress bar covers that case), ``always``, ``never``.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vreid_lightning.errors import ConfigError

__all__ = ["ProgressLog", "format_eta"]

log = logging.getLogger("vreid_lightning.progress")
WHEN = ("auto", "always", "never")


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


def _batch_size(batch: Any) -> int:
    """The number of images in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for b in batch:
            n = _batch_size(b)
            if n:
                return n
    return 0


def _loss(outputs: Any) -> float | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return float(outputs.detach())
    return None


def _total(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        value = sum(v for v in value if isinstance(v, (int, float)) and math.isfinite(v))
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


class ProgressLog(L.Callback):
    """One plain log line per ``interval_s`` seconds: stage, phase, epoch, step, loss, images/s, ETA.

    Args:
        interval_s: seconds between two lines of one phase (the first line comes after one interval).
        when: ``auto`` (stderr not a terminal), ``always`` or ``never``.
    """

    def __init__(self, interval_s: float = 30.0, when: str = "auto") -> None:
        if when not in WHEN:
            raise ConfigError(f"callbacks.progress.when={when!r}; expected one of {list(WHEN)}")
        if interval_s < 0:
            raise ConfigError(f"callbacks.progress.interval_s={interval_s}; expected >= 0 seconds")
        self.interval_s = float(interval_s)
        self.when = when
        self.output_dir: str | None = None  # the stage directory of a staged run (set by the runner)
        self._phase_start = self._last = 0.0
        self._images = self._images_at_last = 0
        self._steps_at_start = 0
        self._eval_t0 = self._last_eval = 0.0
        self._eval_images = self._eval_images_at_last = self._eval_batches = 0

    @property
    def enabled(self) -> bool:
        return self.when == "always" or (self.when == "auto" and not sys.stderr.isatty())

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from vreid_lightning.logs import quiet_known_warnings

        quiet_known_warnings()  # also in ddp_spawn's worker processes

    def _stage(self) -> str | None:
        if self.output_dir is None:
            return None
        p = Path(self.output_dir)
        return p.name if p.parent.name == "stages" else None

    def _start(self, trainer: L.Trainer) -> None:
        self._phase_start = self._last = time.monotonic()
        self._images = self._images_at_last = 0
        self._steps_at_start = trainer.global_step

    def _due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.interval_s

    def _emit(self, parts: list[str], eta: str) -> None:
        now = time.monotonic()
        rate = (self._images - self._images_at_last) / max(now - self._last, 1e-9)
        self._last, self._images_at_last = now, self._images
        self._line([*parts, f"{rate:.1f} images/s", f"ETA {eta}"])

    def _line(self, parts: list[str]) -> None:
        stage = self._stage()
        log.info("[progress] " + " | ".join([*([f"stage {stage}"] if stage else []), *parts]))

    # fit
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._images += _batch_size(batch) * max(trainer.world_size, 1)
        if not self._due() or not trainer.is_global_zero:
            return
        total = _total(trainer.estimated_stepping_batches)
        done = trainer.global_step
        per_step = (time.monotonic() - self._phase_start) / max(done - self._steps_at_start, 1)
        eta = format_eta(per_step * (total - done)) if total else "?"
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        loss = _loss(outputs)
        self._emit(["fit", f"epoch {trainer.current_epoch + 1}/{epochs}", f"step {done}/{total or '?'}",
                    f"loss {loss:.4f}" if loss is not None else "loss ?"], eta)

    # validation and test (feature extraction over the query and gallery sets)
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_start(trainer)

    def _eval_start(self, trainer: L.Trainer) -> None:
        self._eval_t0 = self._last_eval = time.monotonic()
        self._eval_images = self._eval_images_at_last = 0
        self._eval_batches = 0

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, batch, "validate", trainer.num_val_batches)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, batch, "test", trainer.num_test_batches)

    def _eval_batch(self, trainer: L.Trainer, batch: Any, phase: str, totals: Any) -> None:
        self._eval_images += _batch_size(batch)
        self._eval_batches += 1
        now = time.monotonic()
        if not self.enabled or now - self._last_eval < self.interval_s or not trainer.is_global_zero:
            return
        total = _total(totals)
        per_batch = (now - self._eval_t0) / self._eval_batches
        rate = (self._eval_images - self._eval_images_at_last) / max(now - self._last_eval, 1e-9)
        self._last_eval, self._eval_images_at_last = now, self._eval_images
        eta = format_eta(per_batch * (total - self._eval_batches)) if total else "?"
        self._line([phase, f"batch {self._eval_batches}/{total or '?'}", f"{rate:.1f} images/s", f"ETA {eta}"])
