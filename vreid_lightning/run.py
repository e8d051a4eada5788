"""Train -> test orchestration: ``run(cfg)`` is what ``python -m vreid_lightning`` calls.

A config without ``stages`` trains one model and tests it; a config with ``stages`` (RAM's steps,
VehicleNet's two stages) runs :func:`vreid_lightning.runner.stages.run_stages`. The parts live in
:mod:`vreid_lightning.runner`: config checks and batch semantics (``checks``), callbacks and loggers from
``_target_`` lists (``instantiate``), one fit -> select -> test (``fit``), the staged loop (``stages``),
``resume=RUN_DIR`` (``resume``) and ``results.json`` (``results``). The files a test leaves
(``test_results.json``, pictures) come from the :class:`~vreid_lightning.callbacks.ResultsWriter` callback.

Model selection: without a held-out validation split (``data.val_ids=0``) the tested model is the last
epoch's; with ``data.val_ids=N`` it is the best ``val/mAP`` checkpoint on the held-out identities.
``results.json`` says which under ``model_selection`` and ``tested_checkpoint``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vreid_lightning.atomic import atomic_write_text, write_probe
from vreid_lightning.callbacks.checkpoint import has_held_out_split
from vreid_lightning.runner.checks import apply_batch_semantics, check_config
from vreid_lightning.runner.debug import apply_debug
from vreid_lightning.runner.fit import SELECT_BEST, SELECT_LAST, build_model, fit_and_test
from vreid_lightning.runner.finish import keep_only_tested
from vreid_lightning.runner.lock import run_dir_lock
from vreid_lightning.runner.results import format_results_table, test_record, write_results
from vreid_lightning.runner.resume import finished_run, last_checkpoint, prepare_resume
from vreid_lightning.runner.validate import validate_config
from vreid_lightning.runner.stages import data_summary, run_stages, selected_stages, setup_datamodule, stage_config

__all__ = ["run", "run_dir", "format_results_table", "stage_config", "check_config"]

log = logging.getLogger(__name__)

def run_dir(cfg: DictConfig) -> Path:
    """The run directory: ``resume``'s directory, else Hydra's output dir for this job (also under multirun)."""
    if cfg.get("resume"):
        return Path(str(cfg.resume))
    if cfg.paths.get("output_dir"):
        return Path(cfg.paths.output_dir)
    return Path(HydraConfig.get().runtime.output_dir)


def _selection(dm: Any) -> str:
    if has_held_out_split(dm):
        return f"{SELECT_BEST}: {dm.model_selection}"
    return f"{SELECT_LAST}; validation on the test protocol is logged as monitoring only (val_on_test/...)"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train then test as the composed config says; returns the results written to results.json.

    The run directory is probed for writing and locked (:mod:`vreid_lightning.runner.lock`) before any
    work; ``config_resolved.yaml`` is the first file written in it.
    """
    apply_debug(cfg)  # +debug=tiny: the experiment's own tiny: section (runner.debug)
    check_config(cfg)
    validate_config(cfg)  # typed values, named keys (runner.validate)
    resuming = bool(cfg.get("resume"))
    if resuming:
        prepare_resume(cfg)
    out = run_dir(cfg)
    rank0 = rank_zero_only.rank == 0
    if rank0:
        write_probe(out, "run directory (hydra.run.dir, or resume=)")
    else:
        out.mkdir(parents=True, exist_ok=True)
    stages = cfg.get("stages")
    if stages:  # a bad stage key fails before any data is generated
        for name in stages:
            stage_config(cfg, name)
        selected_stages(cfg)
    with run_dir_lock(out, bool(cfg.get("break_lock", False)), enabled=rank0):
        return _run_locked(cfg, out, resuming, stages)


def _run_locked(cfg: DictConfig, out: Path, resuming: bool, stages: Any) -> dict[str, Any]:
    if resuming and not stages:
        done = finished_run(out)
        if done is not None:
            log.info("resume: %s finished already; its results.json is read back", out)
            if rank_zero_only.rank == 0:
                keep_only_tested(cfg, out, (done.get("tested_checkpoint") or {}).get("path"))
            return done
    if rank_zero_only.rank == 0 and not resuming:
        atomic_write_text(out / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    batch = apply_batch_semantics(cfg)

    dm = setup_datamodule(cfg)
    results: dict[str, Any] = {"experiment": cfg.experiment_name, "data": data_summary(dm),
                               "model_selection": _selection(dm), "batch": batch}
    if resuming:
        results["resumed"] = True
    if not stages:
        model = build_model(cfg, dm)
        ckpt = (last_checkpoint(out) if resuming else None) or cfg.get("ckpt_path")  # damaged: one error
        res, record = fit_and_test(cfg, dm, model, out, None, ckpt)
        results.update(test_record(res))
        results["tested_checkpoint"] = record
        results["best_checkpoint"] = record.get("path")
    else:
        results.update(run_stages(cfg, dm, out, resuming))
    write_results(out, results, cfg, dm)
    if rank_zero_only.rank == 0 and not stages:  # after results.json: every state on disk resumes (runner.finish)
        keep_only_tested(cfg, out, results["tested_checkpoint"].get("path"))
    return results
