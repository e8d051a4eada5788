"""Staged runs: per-stage overrides of data / model / optimizer / scheduler / trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from tests.conftest import TINY, compose


def _staged(tmp_path: Path, stages: dict) -> object:
    cfg = compose(["+experiment=baseline_synthetic", *TINY, "trainer.limit_train_batches=2",
                   "model.figures=null", "callbacks.results_writer.rank_list=0", "logger=none"], tmp_path)
    with open_dict(cfg):
        cfg.stages = OmegaConf.create(stages)
    return cfg


def test_a_stage_overrides_data_model_optimizer_and_trainer(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    cfg = _staged(tmp_path, {
        "first": {"model": {"stage": "baseline"}, "trainer": {"max_epochs": 1, "check_val_every_n_epoch": 1}},
        "second": {"model": {"stage": "bn", "net": {"dropout": 0.25}},
                   "data": {"max_train_images": 60},
                   "optimizer": {"lr": 0.0123},
                   "trainer": {"max_epochs": 1, "check_val_every_n_epoch": 1}},
    })
    results = run(cfg)
    assert list(results["stages"]) == ["first", "second"]
    # the DataModule was rebuilt for the second stage only
    assert results["stage_data"]["second"]["train_images"] == 60
    assert results["stage_data"]["first"]["train_images"] > 60
    ckpts = {s: sorted((tmp_path / "stages" / s / "checkpoints").glob("*.ckpt")) for s in ("first", "second")}
    hp = {s: torch.load(c[0], map_location="cpu", weights_only=False)["hyper_parameters"] for s, c in ckpts.items()}
    assert hp["first"]["optimizer"]["lr"] != 0.0123 and hp["second"]["optimizer"]["lr"] == 0.0123
    assert hp["first"]["net"]["dropout"] == 0.5 and hp["second"]["net"]["dropout"] == 0.25
    assert (hp["first"]["stage"], hp["second"]["stage"]) == ("baseline", "bn")  # the override wins over the name
    # the BN stage's Conv branch started from the first stage's weights (load_previous_stage)
    assert "f_c+f_b" in results["features"]


@pytest.mark.parametrize("stages,message", [
    ({"a": {"foo": {}}}, r"stages\.a: unknown key\(s\) \['foo'\]"),
    ({"a": {"model": {"no_such_key": 1}}}, r"stages\.a\.model: .*no_such_key"),
    ({"a": {"data": 3}}, r"stages\.a\.data: expected a mapping"),
])
def test_bad_stage_overrides_are_refused_before_any_work(tmp_path: Path, stages: dict, message: str):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=message):
        run(_staged(tmp_path, stages))


def test_a_stage_with_its_own_target_replaces_the_group(tmp_path: Path):
    from vreid_lightning.run import stage_config

    cfg = _staged(tmp_path, {"a": {"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5,
                                                  "nesterov": True, "momentum": 0.9}}})
    s = stage_config(cfg, "a")
    assert s.optimizer._target_ == "torch.optim.SGD" and s.optimizer.nesterov is True
    assert "betas" not in s.optimizer  # not merged into Adam's keys
    assert cfg.optimizer._target_ != "torch.optim.SGD"  # the top-level config is untouched
