"""What a run costs: parameters, feature dimension, training time and images/s, inference images/s.

``EfficiencyMeter`` is a Lightning callback (listed in ``conf/callbacks/default.yaml``). Every fit and
test it sees appends one entry to ``<run dir>/efficiency.json`` (the trainer's ``default_root_dir``;
a staged run appends one per stage); the reports read that file beside results.json and the
leaderboard sums the stages' training. Times are wall-clock on rank 0:

- ``train_time_s``: the fit without its validation loops (data loading and optimizer steps included);
  ``train_images``: the training images it processed (all ranks: batch size x world size).
- ``infer_time_s`` / ``infer_images``: the test loop's feature extraction (from the first test batch's
  start to the last one's end on rank 0; the ranking metrics after it are not counted) and the images
  all ranks extracted (flip averaging, when on, doubles the forward passes, not the images).
- ``params``: the module's parameters (identity classifiers included); ``params_trainable``;
  ``feature_dim``: the width of the method's main retrieval feature (the concatenation it reports).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["EfficiencyMeter", "summarize_efficiency"]


class EfficiencyMeter(L.Callback):
    """Measure training/inference throughput and model size; append them to ``efficiency.json``."""

    def __init__(self, filename: str = "efficiency.json") -> None:
        self.filename = filename
        self._reset()

    def _reset(self) -> None:
        self._t0 = self._val_t0 = self._test_t0 = self._test_last = None
        self._val_s = 0.0
        self._train_images = 0
        self._test_images = 0

    # ---------------------------------------------------------------- fit
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self._t0 = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None and self._t0 is not None:
            self._val_s += time.perf_counter() - self._val_t0
        self._val_t0 = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._train_images += _batch_size(batch) * trainer.world_size

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t0 is None:
            return
        seconds = time.perf_counter() - self._t0 - self._val_s
        self._write(trainer, pl_module, {"kind": "fit", "train_time_s": seconds, "train_images": self._train_images,
                                         "train_images_per_s": self._train_images / seconds if seconds > 0 else None})

    # ---------------------------------------------------------------- test
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._test_t0 = self._test_last = None
        self._test_images = 0

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self._test_t0 is None:
            self._test_t0 = time.perf_counter()

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._test_images += _batch_size(batch) * trainer.world_size
        self._test_last = time.perf_counter()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._test_t0 is None or self._test_last is None:
            return
        seconds = self._test_last - self._test_t0
        # the images every rank extracted together: the evaluated set when the module kept it (shards are
        # unpadded and may differ by one), else rank 0's count times the world size
        last = getattr(pl_module, "last_test_eval", None)
        images = len(last["eval_set"].split) if isinstance(last, dict) and "eval_set" in last else self._test_images
        self._write(trainer, pl_module, {"kind": "test", "infer_time_s": seconds, "infer_images": images,
                                         "infer_images_per_s": images / seconds if seconds > 0 else None})

    # ---------------------------------------------------------------- output
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, entry: dict[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        entry.update(model_size(pl_module))
        stage = getattr(pl_module, "stage", None) or (getattr(pl_module, "hparams", {}) or {}).get("stage")
        if stage:
            entry["stage"] = str(stage)
        path = Path(trainer.default_root_dir) / self.filename
        data = json.loads(path.read_text()) if path.is_file() else {"entries": []}
        data["entries"].append(entry)
        data.update(summarize_efficiency(data["entries"]))
        path.write_text(json.dumps(data, indent=2))


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict) and "image" in batch:
        return int(batch["image"].shape[0])
    if isinstance(batch, (list, tuple)) and batch and hasattr(batch[0], "shape"):
        return int(batch[0].shape[0])
    return 0


def model_size(pl_module: L.LightningModule) -> dict[str, Any]:
    """Parameter counts and the main feature's width (when the module has extracted features)."""
    out: dict[str, Any] = {
        "params": int(sum(p.numel() for p in pl_module.parameters())),
        "params_trainable": int(sum(p.numel() for p in pl_module.parameters() if p.requires_grad)),
    }
    dims = getattr(pl_module, "feature_dims", None)  # ReIDModule: name -> width of the extracted features
    if dims:
        main = str(getattr(pl_module, "main_feature", ""))
        parts = main.split("+") if main else []
        out["feature_dim"] = sum(dims[p] for p in parts) if parts and all(p in dims for p in parts) else sum(dims.values())
    return out


def summarize_efficiency(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Run-level figures: training summed over every fit (stages), the last test's inference, the last
    model's size."""
    fits = [e for e in entries if e.get("kind") == "fit"]
    tests = [e for e in entries if e.get("kind") == "test"]
    out: dict[str, Any] = {}
    if fits:
        t = sum(e["train_time_s"] for e in fits)
        n = sum(e["train_images"] for e in fits)
        out.update(train_time_s=t, train_images=n, train_images_per_s=n / t if t > 0 else None)
    if tests:
        out.update(infer_images_per_s=tests[-1].get("infer_images_per_s"), infer_images=tests[-1].get("infer_images"))
    last = (tests or fits)[-1] if (tests or fits) else {}
    for k in ("params", "params_trainable", "feature_dim"):
        if k in last:
            out[k] = last[k]
    return out
