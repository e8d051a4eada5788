"""The results writer: the files a test leaves in its run (or stage) directory.

On ``on_test_end`` (rank 0) it takes the module's test evaluation (``eval_results["test"]`` and the main
feature's ``last_test_eval``), applies the configured test-time post-processing
(:func:`vreid_lightning.evaluation.postprocess.postprocess_test_features`), and writes
``test_results.json`` (every feature combination), ``features.npz``, the rank-list picture, the CMC curve
(``cmc.png``) and the method's own figures (``ReIDModule.make_figures``) into the trainer's
``default_root_dir`` (the run, or the stage, directory). The LightningModule computes, this callback
post-processes and writes; the final results stay in memory as :attr:`ResultsWriter.results` for the runner.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L

from vreid_lightning.evaluation.protocols import as_float_dict

__all__ = ["ResultsWriter", "TEST_RESULTS"]

log = logging.getLogger(__name__)

TEST_RESULTS = "test_results.json"


class ResultsWriter(L.Callback):
    """Post-process the test features, write ``test_results.json``, ``features.npz`` and the pictures.

    Args:
        rank_list: queries (of distinct identities) in ``rank_list.png``, the top-10 of each (0: none). The one
            rank-list switch of the suite.
        figures: call the module's ``make_figures(dm, out_dir, tested_ckpt)``.
        postprocess: test-time post-processing steps (the ``postprocess`` config group: a list of steps or
            ``{steps: ...}``; None or empty: none).
    """

    def __init__(self, rank_list: int = 8, figures: bool = True, postprocess: Any = None) -> None:
        if isinstance(rank_list, bool) or int(rank_list) < 0:
            from vreid_lightning.errors import ConfigError

            raise ConfigError(f"callbacks.results_writer.rank_list={rank_list!r}: expected the number of queries "
                              f"drawn (an int >= 0; 0: no rank list)")
        self.rank_list = int(rank_list)
        self.figures = figures
        self.postprocess = postprocess
        self.written: list[Path] = []
        self.results: dict[str, Any] | None = None  # the last test's results, as written to test_results.json

    @staticmethod
    def results_file(trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / TEST_RESULTS

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.results = None
        if trainer.is_global_zero:
            self.results_file(trainer).unlink(missing_ok=True)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        res = getattr(pl_module, "eval_results", {}).get("test")
        if res is None:
            return
        path = self.results_file(trainer)
        out = path.parent
        out.mkdir(parents=True, exist_ok=True)
        last = getattr(pl_module, "last_test_eval", None)
        if last is not None:
            res = self._postprocess(res, last, out)
        self.results = as_float_dict(res)
        from vreid_lightning.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.results, indent=2))  # a kill leaves the old file or the new
        self.written = [path]
        try:  # a picture never costs the results
            self.written += self._pictures(trainer, pl_module, last, out)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("figures in %s were not drawn: %s", out, e)

    def _postprocess(self, res: dict[str, Any], last: dict[str, Any], out: Path) -> dict[str, Any]:
        """``features.npz`` beside the results, and the post-processed main metrics when steps are configured."""
        from vreid_lightning.evaluation.postprocess import postprocess_test_features

        main, plain = postprocess_test_features(last["features"], last["eval_set"], res["metrics"], last["metric"],
                                                self.postprocess, out / "features.npz")
        if plain is None:
            return res
        features = {**res["features"], res["main"]: main, f"{res['main']} (before postprocess)": plain}
        return {**res, "metrics": main, "features": features}

    def _pictures(self, trainer: L.Trainer, pl_module: Any, last: dict[str, Any] | None, out: Path) -> list[Path]:
        made: list[Path] = []
        if last is not None:
            from vreid_lightning.evaluation.protocol_registry import get_protocol

            if self.rank_list > 0 and get_protocol(last["eval_set"]).fixed_query_gallery:
                from vreid_lightning.viz.ranklist import save_test_rank_list

                made.append(save_test_rank_list(last["features"], last["eval_set"], last["metric"], self.rank_list,
                                                out / "rank_list.png"))
            from vreid_lightning.viz.cmc import save_test_cmc  # the CMC curve of every test (reports / wandb media)

            made.append(save_test_cmc(last["features"], last["eval_set"], last["metric"], out / "cmc.png"))
        if self.figures:
            made += list(pl_module.make_figures(trainer.datamodule, out, trainer.ckpt_path) or [])
        return made
