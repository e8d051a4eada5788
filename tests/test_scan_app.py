"""SCAN end to end: the paper's settings, the Table 2 sweep (2 jobs), the staged SCAN* run with its
Fig. 5 maps, the iteration scheduler inside a fit, and the P x K batch and reduction checks. Every scan_*
experiment's own tiny run is tests/test_experiments.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIGURES, TINY, compose, run_cli

def test_paper_settings_compose(tmp_path: Path):
    cfg = compose(["+experiment=scan_veri"], tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.001, 0.9, 0.0004)
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma) == (2000, 0.8)
    assert cfg.data.batch_size == 64 and cfg.data.sampler == "pk" and cfg.data.batch_size % cfg.data.num_instances == 0
    assert (cfg.model.loss.ce_weight, cfg.model.loss.triplet_weight, cfg.model.loss.margin) == (1.0, 1.0, 0.3)
    assert cfg.model.evaluation.metric == "euclidean"
    assert cfg.trainer.max_steps == 30000 and cfg.trainer.max_epochs == -1  # counted in iterations
    vid = compose(["+experiment=scan_vehicleid"], tmp_path)
    assert list(vid.data.test_sizes) == [800, 1600, 2400] and vid.data.protocol_options.repeats == 10


def test_table2_sweep_two_jobs(tmp_path: Path, veri_world: Path):
    p = run_cli(["-m", "+experiment=scan_synthetic", "+sweep=scan_table2", *TINY, "trainer.fast_dev_run=true",
                 "hydra.sweeper.params.backbone=vgg_cnn_m_1024"], tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted((tmp_path / "outputs" / "scan_synthetic" / "multiruns").rglob("results.json"))
    assert len(results) == 2
    mains = sorted(json.loads(r.read_text())["main_feature"] for r in results)
    assert mains == ["plain", "scan"]  # light_vgg_m and light_vgg_m+SCAN


def test_iteration_scheduler_is_stepped_per_batch(tmp_path: Path, veri_world: Path):
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(["+experiment=scan_synthetic", *TINY, "scheduler.step_size=1", "scheduler.gamma=0.5"], tmp_path)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    model = instantiate(cfg.model, num_classes=dm.num_classes, backbone=OmegaConf.to_container(cfg.backbone),
                        optimizer=OmegaConf.to_container(cfg.optimizer), scheduler=OmegaConf.to_container(cfg.scheduler),
                        _recursive_=False, _convert_="all")
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=dm)
    steps = trainer.global_step
    assert steps >= 3 and steps > trainer.current_epoch  # more iterations than epochs
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr * 0.5 ** steps)


def test_pk_batch_that_does_not_divide_names_the_keys(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    cfg = compose(["+experiment=scan_synthetic", *TINY, "data.batch_size=6", "data.num_instances=4"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.batch_size=6 must be a multiple of data.num_instances=4"):
        run(cfg)


def test_reduction_larger_than_channels_names_the_key(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import USER_ERRORS, format_user_error
    from vreid_lightning.run import run

    cfg = compose(["+experiment=scan_synthetic", *TINY, "model.net.reduction=256"], tmp_path)
    with pytest.raises(Exception) as info:  # Hydra wraps the constructor's ConfigError
        run(cfg)
    assert isinstance(info.value, USER_ERRORS)  # the CLI prints it as one line, exit code 2
    line = format_user_error(info.value)
    assert "model.net.reduction" in line and "128 channels, fewer than r=256" in line


def test_staged_scan_star_run(tmp_path: Path, veri_world: Path):
    """The Table 3 job: light network, then light + SCAN with the first as its SCAN* partner."""
    from vreid_lightning.run import run

    short = [f"++stages.{s}.trainer={{max_epochs:1,check_val_every_n_epoch:1}}" for s in ("plain", "scan")]
    cfg = compose(["+experiment=scan_synthetic", "+sweep=scan_table3", *TINY, *short, FIGURES], tmp_path)
    assert list(cfg.stages) == ["plain", "scan"]
    saved = run(cfg)
    assert list(saved["stages"]) == ["plain", "scan"]
    assert set(saved["stage_features"]["plain"]) == {"plain"}
    assert set(saved["features"]) == {"scan", "plain", "scan+plain"}  # SCAN* = features["scan+plain"]
    # the partner is the plain stage's tested model: its feature evaluates to the plain stage's numbers
    assert saved["features"]["plain"] == pytest.approx(saved["stages"]["plain"])
    assert saved["test"] == saved["features"]["scan"]
    # Fig. 5's spatial attention maps are drawn for the model with attention only
    assert [p.parent.name for p in tmp_path.rglob("spatial_attention_fig5.png")] == ["scan"]
