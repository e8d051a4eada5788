"""The finishing sequence of a run or stage, ordered so that a kill at any write leaves a resumable run.

1. ``trainer.fit`` ends: ``checkpoints/last.ckpt`` (with optimizer state) is written atomically.
2. ``trainer.test``: ``test_results.json`` and ``features.npz`` are written atomically.
3. The record that says "finished" is written atomically: ``stages/<stage>/stage_results.json`` (a
   stage) or ``results.json`` (a run without stages).
4. Only then the checkpoint folder is pruned to the tested checkpoint (:func:`keep_only_tested`) and,
   with ``checkpoint.save_optimizer=false``, that checkpoint is stripped of its optimizer state.

Killed before 3, a resume continues from the intact ``last.ckpt`` (training is complete, so it only
tests again); killed after 3, the finished record is read back and 4 is redone (it is idempotent). A
stripped checkpoint is therefore never what a resume continues training from (:func:`resumable`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from vreid_lightning.atomic import atomic_open
from vreid_lightning.callbacks.checkpoint import read_checkpoint
from vreid_lightning.faults import fault_point

__all__ = ["keep_only_tested", "resumable", "FINISHED_KEY"]

log = logging.getLogger(__name__)

# set in a checkpoint stripped of its optimizer state: the stage it belongs to had finished
FINISHED_KEY = "vreid_finished"


def keep_only_tested(cfg: DictConfig, sdir: Path, tested: str | None) -> None:
    """A finished run or stage keeps one checkpoint, the tested one (without optimizer state if asked).

    Call it only after the run's or stage's finished record is on disk. Touches nothing when the run did
    not train (``train=false``) or tested a checkpoint from elsewhere.
    """
    ckpt_dir = sdir / "checkpoints"
    if not cfg.get("train", True) or not ckpt_dir.is_dir() or not tested or not Path(tested).is_file():
        return
    keep = Path(tested).resolve()
    if keep.parent != ckpt_dir.resolve():
        return  # tested a checkpoint from elsewhere (ckpt_path with train=false): touch nothing
    fault_point("prune_checkpoints")
    for f in ckpt_dir.iterdir():
        if f.is_file() and f.resolve() != keep and (f.suffix == ".ckpt" or f.name.endswith(".ckpt.tmp")):
            f.unlink()
    if bool(cfg.get("checkpoint", {}).get("save_optimizer", True)):
        return
    ckpt = read_checkpoint(keep, "checkpoint")
    if ckpt.get(FINISHED_KEY) and "optimizer_states" not in ckpt:
        return  # stripped already (a resume redoing this step)
    ckpt.pop("optimizer_states", None)
    ckpt.pop("lr_schedulers", None)
    ckpt[FINISHED_KEY] = True
    with atomic_open(keep, "wb", point="strip_optimizer") as f:
        torch.save(ckpt, f)


def resumable(ckpt: dict[str, Any], path: str) -> bool:
    """Whether training can continue from this checkpoint: it has optimizer state (a stripped one does not)."""
    if "optimizer_states" in ckpt and ckpt["optimizer_states"]:
        return True
    log.warning("resume: %s has no optimizer state (the checkpoint a finished stage keeps with "
                "checkpoint.save_optimizer=false) but the stage has no valid finished record: it is trained "
                "again from its start", path)
    return False
