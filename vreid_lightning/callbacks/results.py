"""The results writer: the files a test leaves in its run (or stage) directory.

On ``on_test_end`` (rank 0) it writes ``test_results.json`` (the module's test metrics, every feature
combination), the rank-list picture, the CMC curve (``cmc.png``) and the method's own figures
(``ReIDModule.make_figures``) into the run (or stage) directory: the LightningModule computes, this
callback writes. The run-level ``results.json`` and the printed table come from
:mod:`vreid_lightning.runner.results`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["ResultsWriter", "TEST_RESULTS"]

log = logging.getLogger(__name__)

TEST_RESULTS = "test_results.json"


class ResultsWriter(L.Callback):
    """Write ``test_results.json``, ``rank_list.png`` and the method's figures after each test.

    Args:
        rank_list: draw the rank list (the number of queries is ``model.evaluation.rank_list``).
        figures: call the module's ``make_figures(dm, out_dir, tested_ckpt)``.
    """

    def __init__(self, rank_list: bool = True, figures: bool = True) -> None:
        self.rank_list = rank_list
        self.figures = figures
        self.written: list[Path] = []
        self.output_dir: str | None = None  # the stage directory of a staged run (set by the runner)

    def results_file(self, trainer: L.Trainer) -> Path:
        from vreid_lightning.callbacks.checkpoint import output_dir

        return output_dir(self, trainer) / TEST_RESULTS

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.results_file(trainer)
        if trainer.is_global_zero:
            path.unlink(missing_ok=True)
        # where test-time files beside the results go (features.npz of the post-processing)
        pl_module.results_path = str(path)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from vreid_lightning.methods.base import as_float_dict

        res = getattr(pl_module, "eval_results", {}).get("test")
        if res is None:
            return
        path = self.results_file(trainer)
        out = path.parent
        out.mkdir(parents=True, exist_ok=True)
        from vreid_lightning.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(as_float_dict(res), indent=2))
        self.written = [path]
        try:  # a picture never costs the results
            self.written += self._pictures(trainer, pl_module, out)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("figures in %s were not drawn: %s", out, e)

    def _pictures(self, trainer: L.Trainer, pl_module: Any, out: Path) -> list[Path]:
        made: list[Path] = []
        last = getattr(pl_module, "last_test_eval", None)
        n = int(getattr(pl_module, "eval_cfg", {}).get("rank_list", 0))
        if self.rank_list and last is not None and n > 0 and last["eval_set"].protocol == "image":
            from vreid_lightning.methods.base import save_test_rank_list

            made.append(save_test_rank_list(last["features"], last["eval_set"], pl_module.eval_cfg["metric"], n,
                                            out / "rank_list.png"))
        if last is not None:  # the CMC curve of every test (reports / wandb media)
            from vreid_lightning.viz.cmc import save_test_cmc

            made.append(save_test_cmc(last["features"], last["eval_set"], pl_module.eval_cfg["metric"], out / "cmc.png"))
        if self.figures and hasattr(pl_module, "make_figures"):
            made += list(pl_module.make_figures(trainer.datamodule, out, trainer.ckpt_path) or [])
        return made
