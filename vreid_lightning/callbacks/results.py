"""The results writer: the files a test leaves in its run (or stage) directory.

On ``on_test_end`` (rank 0) it takes the module's test evaluation (``eval_results["test"]`` and the main
feature's ``last_test_eval``), applies the configured test-time post-processing
(:func:`vreid_lightning.evaluation.postprocess.postprocess_test_features`), and writes
``test_results.json`` (every feature combination), ``features.npz``, the rank-list picture, the CMC curve
(``cmc.png``) and the method's own pictures (``model.figures``: a :class:`~vreid_lightning.viz.figures.Figures`
config kept in the module's hyper-parameters, built when the trainer sets up) into the trainer's
``default_root_dir`` (the run, or the stage, directory). The LightningModule computes, this callback
post-processes and writes; the final results stay in memory as :attr:`ResultsWriter.results` for the runner.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import lightning as L

from vreid_lightning.evaluation.protocols import as_float_dict
from vreid_lightning.viz.figures import Figures, build_figures

__all__ = ["ResultsWriter", "TEST_RESULTS"]

log = logging.getLogger(__name__)

TEST_RESULTS = "test_results.json"


class ResultsWriter(L.Callback):
    """Post-process the test features, write ``test_results.json``, ``features.npz`` and the pictures.

    Args:
        rank_list: the one rank-list switch of the suite. An int: queries (of distinct identities) in
            ``rank_list.png``, the top-10 of each (0: none). A mapping ``{successes, failures, top}``: the first
            ``successes`` queries whose rank-1 is right, then ``failures`` whose rank-1 is wrong, the top-``top``
            of each (RNN-HA Fig. 4: 8, 4, 5).
        figures: draw the pictures the module's ``figures`` hyper-parameter names (``model.figures``; false: none).
        postprocess: test-time post-processing steps (the ``postprocess`` config group: a list of steps or
            ``{steps: ...}``; None or empty: none).
    """

    def __init__(self, rank_list: int | Mapping[str, int] = 8, figures: bool = True, postprocess: Any = None) -> None:
        self.rank_list = _rank_list_option(rank_list)
        self.figures = figures
        self._drawn: Figures | None = None  # model.figures, built in setup
        self.postprocess = postprocess
        self.written: list[Path] = []
        self.results: dict[str, Any] | None = None  # the last test's results, as written to test_results.json

    @staticmethod
    def results_file(trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / TEST_RESULTS

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Build ``model.figures`` before any step: a bad one is one error at the start, not after training."""
        hparams = getattr(pl_module, "hparams", {})
        self._drawn = build_figures(hparams.get("figures")) if self.figures else None

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
            from vreid_lightning.viz.ranklist import save_outcome_rank_list, save_test_rank_list

            r = self.rank_list
            if isinstance(r, dict):  # any protocol: VehicleID's lists from its first gallery draw (viz.ranklist)
                if r["successes"] + r["failures"] > 0:
                    made.append(save_outcome_rank_list(last["features"], last["eval_set"], last["metric"],
                                                       r["successes"], r["failures"], out / "rank_list.png", k=r["top"]))
            elif r > 0 and get_protocol(last["eval_set"]).fixed_query_gallery:
                made.append(save_test_rank_list(last["features"], last["eval_set"], last["metric"], r,
                                                out / "rank_list.png"))
            from vreid_lightning.viz.cmc import save_test_cmc  # the CMC curve of every test (reports / wandb media)

            made.append(save_test_cmc(last["features"], last["eval_set"], last["metric"], out / "cmc.png"))
        if self._drawn is not None:
            made += self._drawn.after_test(pl_module, trainer.datamodule, out)
        return made


_OUTCOME_KEYS = ("successes", "failures", "top")


def _rank_list_option(value: Any) -> int | dict[str, int]:
    """``rank_list`` checked: an int >= 0, or ``{successes, failures, top}`` (ints >= 0, top >= 1)."""
    from vreid_lightning.errors import ConfigError

    key = "callbacks.results_writer.rank_list"
    if isinstance(value, Mapping):
        keys = set(value)
        ok = keys == set(_OUTCOME_KEYS) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in value.values()) and value["top"] >= 1
        if not ok:
            raise ConfigError(f"{key}={dict(value)!r}: expected {{successes: N, failures: N, top: K}} (ints >= 0, "
                              f"top >= 1)")
        return {k: int(value[k]) for k in _OUTCOME_KEYS}
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}={value!r}: expected the number of queries drawn (an int >= 0; 0: no rank list) "
                          f"or {{successes: N, failures: N, top: K}}")
    return int(value)
