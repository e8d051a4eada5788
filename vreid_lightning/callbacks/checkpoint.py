"""Checkpoints that do not depend on validation, and honest model selection.

- :class:`LastCheckpoint` writes ``last.ckpt`` at every epoch boundary (and at the end of fit),
  atomically (written beside, fsynced, then renamed: a kill never leaves a half-written file), with
  the global RNG states, so a resumed run continues with the same data order, augmentation and dropout
  randomness as an uninterrupted one.
- :class:`BestCheckpoint` keeps the best ``val/mAP`` checkpoint, but only when the DataModule has a
  held-out validation split (``data.val_ids > 0``): without one nothing is selected and the tested
  model is the last epoch's.
- :class:`FinalEpochValidation` validates at the final epoch when ``max_epochs`` is not a multiple of
  ``check_val_every_n_epoch`` (Lightning would skip it).
- :func:`read_checkpoint`: one clear error naming the file for anything that is not a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import ModelCheckpoint

from vreid_lightning.errors import ConfigError
from vreid_lightning.torch_files import load_or_error

__all__ = ["LastCheckpoint", "BestCheckpoint", "FinalEpochValidation", "read_checkpoint", "has_held_out_split",
           "atomic_torch_save"]


def has_held_out_split(datamodule: Any) -> bool:
    """Whether validation runs on held-out training identities (not on the test protocol's images)."""
    val, test = getattr(datamodule, "val_set", None), getattr(datamodule, "eval_set", None)
    return val is not None and val is not test


def read_checkpoint(path: str | os.PathLike[str], key: str = "ckpt_path") -> dict[str, Any]:
    """Load a Lightning checkpoint on CPU; anything else raises one :class:`ConfigError` naming the file.

    Args:
        path: the file.
        key: the config key the path came from (named in the message).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{key}: {p} is a directory, not a checkpoint file (give the file, e.g. "
                          f"{p / 'checkpoints' / 'last.ckpt'}; resume=RUN_DIR continues a run directory)")
    if not p.is_file():
        raise ConfigError(f"{key}: checkpoint {p} does not exist")
    ckpt = load_or_error(p, weights_only=False, width=160, error=lambda why: ConfigError(
        f"{key}: {p} is not a readable checkpoint (corrupt, half-written or another file type: {why})"))
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{key}: {p} is not a Lightning checkpoint (no 'state_dict' in it)")
    return ckpt


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_trainer_save(trainer: L.Trainer, path: Path, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint`` (collective under DDP) made atomic: rank 0 renames a finished file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        trainer.save_checkpoint(tmp, weights_only=weights_only)
        if trainer.is_global_zero:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except OSError as e:  # disk full / read-only: no .tmp left, one error naming the directory
        from vreid_lightning.errors import OutputError

        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path} (directory {path.parent}): {e.strerror or e}") from None
    trainer.strategy.barrier("atomic_checkpoint")


class LastCheckpoint(L.Callback):
    """``<dirpath>/last.ckpt`` at every epoch boundary and at the end of fit, independent of validation.

    The file is written when the next epoch starts (after the previous epoch's validation and
    learning-rate step) and again when fit ends, so it always holds the last completed epoch. It carries
    the global RNG states (torch, numpy, python, CUDA); resuming from it restores them at the same point,
    which makes the resumed run's metrics equal an uninterrupted run's on CPU.

    Args:
        dirpath: the checkpoint folder; default ``<trainer.default_root_dir>/checkpoints``.
        filename: the file name.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "last.ckpt") -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._pending_rng: dict[str, Any] | None = None
        self._at_epoch_start = False
        self.last_path: str | None = None

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")  # the run's (or stage's) directory

    @property
    def path(self) -> Path:
        assert self.dirpath is not None, "LastCheckpoint.setup has not run"
        return Path(self.dirpath) / self.filename

    def save(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_trainer_save(trainer, self.path)
        self.last_path = str(self.path)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending_rng is not None:  # resumed: continue the random streams where they stopped
            _set_rng_states(self._pending_rng)
            self._pending_rng = None
            fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
            if fetcher is not None:
                # An uninterrupted run creates this epoch's data iterator after this hook, drawing its
                # base seed (and, with workers, every worker's seed) from the RNG just restored; a resumed
                # run created it before the restore. Create it again, so both draw the same.
                iter(fetcher)
            if trainer.fit_loop.restarted_on_epoch_start:
                # This file was written when the epoch started, after the previous epoch's learning-rate
                # step: the epoch runs in full, so its end must step the schedulers as an uninterrupted
                # run does (Lightning skips that step while the loop counts as "restarting").
                trainer.fit_loop._restarting = False
            return
        if trainer.current_epoch > 0:
            self._at_epoch_start = True
            try:
                self.save(trainer)
            finally:
                self._at_epoch_start = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from vreid_lightning.faults import fault_point

        fault_point("last.ckpt(train_end)")
        self.save(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = _collect_rng_states(include_cuda=torch.cuda.is_available())
        from vreid_lightning.runner.ckpt_match import METHOD_KEY, method_record

        checkpoint[METHOD_KEY] = method_record(pl_module)  # who wrote it (a mismatch is one error on load)
        if self._at_epoch_start:
            _fresh_epoch_counters(checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending_rng = checkpoint.get("rng_states")


def _fresh_epoch_counters(checkpoint: dict[str, Any]) -> None:
    """Write the epoch loop's per-epoch counters as the new epoch will start them (zero).

    At ``on_train_epoch_start`` they still count the previous epoch's batches; an uninterrupted run
    resets them right after, but a run resumed from this file would take them as batches already done
    in the new epoch and cut it short.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {})

    def zero(d: Any) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                if isinstance(v, dict):
                    zero(v)
                elif isinstance(v, int) and not isinstance(v, bool):
                    d[k] = 0

    for key in ("epoch_loop.batch_progress", "epoch_loop.scheduler_progress",
                "epoch_loop.automatic_optimization.optim_progress", "epoch_loop.manual_optimization.optim_step_progress"):
        prog = loop.get(key)
        if not isinstance(prog, dict):
            continue
        for sub in ([prog] if "current" in prog else [v for v in prog.values() if isinstance(v, dict)]):
            for part in ([sub] if "current" in sub else [v for v in sub.values() if isinstance(v, dict)]):
                if isinstance(part.get("current"), dict):
                    zero(part["current"])
        if "is_last_batch" in prog:
            prog["is_last_batch"] = False



class BestCheckpoint(ModelCheckpoint):
    """The best ``val/mAP`` checkpoint on a held-out validation split; inactive without one.

    Without held-out identities validation runs on the test protocol's images: choosing a checkpoint
    there would select on test data, so this callback then saves nothing and the last epoch is tested.
    Writes are atomic like :class:`LastCheckpoint`'s.
    """

    def __init__(self, monitor: str = "val/mAP", mode: str = "max",
                 filename: str = "best-epoch{epoch:03d}-mAP{val/mAP:.4f}", **kwargs: Any) -> None:
        kwargs.setdefault("auto_insert_metric_name", False)
        kwargs.setdefault("save_top_k", 1)
        kwargs.setdefault("save_last", False)
        super().__init__(monitor=monitor, mode=mode, filename=filename, **kwargs)
        self.active = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.active = has_held_out_split(trainer.datamodule)
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")  # the run's (or stage's) directory
        super().setup(trainer, pl_module, stage)

    def _should_skip_saving_checkpoint(self, trainer: L.Trainer) -> bool:
        return not self.active or super()._should_skip_saving_checkpoint(trainer)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        _atomic_trainer_save(trainer, Path(filepath), self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


class FinalEpochValidation(L.Callback):
    """Validate at the final epoch even when ``max_epochs`` is not a multiple of the validation interval."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        if trainer.max_epochs is None or trainer.max_epochs < 0 or not every:
            return
        if trainer.current_epoch == trainer.max_epochs - 1 and trainer.max_epochs % every != 0:
            trainer.check_val_every_n_epoch = 1
