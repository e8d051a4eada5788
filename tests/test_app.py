"""The Hydra app end to end: user errors, multirun, wandb offline, seeded repeatability, resuming, and DDP
evaluation equality. Every experiment's own run is tests/test_experiments.py (parametrised over the config tree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, compose, run_cli


def test_unknown_experiment_is_one_clear_line(tmp_path: Path):
    p = run_cli(["+experiment=no_such_exp"], tmp_path, timeout=120)
    assert p.returncode != 0
    assert "no_such_exp" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_override_key_names_it(tmp_path: Path):
    p = run_cli(["+experiment=baseline_synthetic", "trainer.max_epohcs=3"], tmp_path, timeout=120)
    assert p.returncode != 0
    assert "max_epohcs" in p.stderr
    assert "Traceback" not in p.stderr


def test_wrong_dataset_root_names_the_path(tmp_path: Path):
    missing = tmp_path / "no" / "VeRi"
    p = run_cli(["+experiment=ram_veri", f"data.root={missing}", "trainer=cpu"], tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert str(missing) in p.stderr
    assert "Traceback" not in p.stderr


def _short_train(seed: int, extra: list[str] = ()) -> list[str]:
    return ["+experiment=baseline_synthetic", *TINY, f"seed={seed}", "trainer.max_epochs=1", "trainer.max_steps=-1",
            "trainer.limit_train_batches=3", "trainer.check_val_every_n_epoch=1", "logger=csv", *extra]


def test_same_seed_same_metrics(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    a = run(compose(_short_train(3), tmp_path / "a"))
    b = run(compose(_short_train(3), tmp_path / "b"))
    c = run(compose(_short_train(4), tmp_path / "c"))
    assert a["test"] == b["test"]
    assert a["test"] != c["test"]


def test_resume_from_last_checkpoint(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    run(compose(_short_train(0), tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    res = run(compose(_short_train(0, ["trainer.max_epochs=2", f"ckpt_path={last}"]), tmp_path / "resumed"))
    (metrics_csv,) = (tmp_path / "resumed" / "csv").rglob("metrics.csv")
    header, *lines = metrics_csv.read_text().splitlines()
    rows = [dict(zip(header.split(","), ln.split(","))) for ln in lines]
    val_epochs = {r["epoch"] for r in rows if r.get("val_on_test/mAP")}  # monitoring: no held-out split
    assert val_epochs == {"1"}  # epoch 0 came from the checkpoint; only epoch 1 ran
    assert res["tested_checkpoint"]["epoch"] == 2


def test_multirun_two_jobs(tmp_path: Path, veri_world: Path):
    p = run_cli(["-m", "+experiment=baseline_synthetic", *TINY, "trainer.fast_dev_run=true", "seed=1,2"],
                tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted((tmp_path / "outputs" / "baseline_synthetic" / "multiruns").rglob("results.json"))
    assert len(results) == 2
    assert {r.parent.name for r in results} == {"0", "1"}
    assert "Run directory:" in p.stdout


def test_wandb_offline_writes_one_run_per_stage(tmp_path: Path, veri_world: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(home / ".netrc"),
           "WANDB_DISABLE_GIT": "true", "WANDB_SILENT": "true"}
    stages = [f"stages.{s}.trainer.{k}=1" for s in ("baseline", "bn", "bn_r", "ram")
              for k in ("max_epochs", "check_val_every_n_epoch")]
    p = run_cli(["+experiment=ram_synthetic", *TINY, *stages, "trainer.limit_train_batches=2",
                 "trainer.limit_val_batches=1", "logger=wandb"], tmp_path, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "ram_synthetic" / "runs").glob("*/wandb/offline-run-*"))
    assert len(runs) == 4, p.stderr[-2000:]  # one wandb run per RAM step, grouped by experiment
    assert all(any(r.rglob("*.wandb")) for r in runs)
    # RAM's Fig. 3 across the steps is drawn before the last step's upload
    assert len(list((tmp_path / "outputs" / "ram_synthetic" / "runs").glob("*/response_maps_fig3.png"))) == 1


def test_ddp_two_process_evaluation_matches_single_process(tmp_path: Path, veri_world: Path):
    """Two gloo ranks shard the evaluation images without padding; the metrics are exactly the same."""
    import lightning as L
    from hydra.utils import instantiate

    from vreid_lightning.runner.fit import build_model as _build_model

    cfg = compose([*_short_train(0), "trainer.max_epochs=1"], tmp_path)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup("fit")
    model = _build_model(cfg, dm)
    ckpt = tmp_path / "model.ckpt"
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(ckpt)

    from vreid_lightning.callbacks import ResultsWriter

    def evaluate(devices: int, strategy: str) -> dict:
        m = type(model).load_from_checkpoint(ckpt, weights_only=False)
        t = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, use_distributed_sampler=False,
                      callbacks=[ResultsWriter(rank_list=0, figures=False)],
                      default_root_dir=str(tmp_path / f"eval_{devices}"))
        t.test(m, datamodule=dm)
        return json.loads((tmp_path / f"eval_{devices}" / "test_results.json").read_text())

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each CPU DDP worker, so the kernels reduce in the same order
    try:
        single = evaluate(1, "auto")
    finally:
        torch.set_num_threads(threads)
    double = evaluate(2, "ddp_spawn")
    assert single["metrics"]["mAP"] > 0
    assert double == single


def test_ram_ablation_sweep_two_jobs(tmp_path: Path, veri_world: Path):
    """The paper's ablation sweep runs with -m; pinning all but one swept key leaves a 2-job sweep."""
    p = run_cli(["-m", "+experiment=ram_synthetic", "+sweep=ram_ablation", *TINY, "trainer.fast_dev_run=true",
                 "model.loss.lambda_attr=1.0", "model.net.num_regions=3", "model.net.region_overlap=0.5",
                 "model.loss.lambda_region=0.5,1.0"], tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted((tmp_path / "outputs" / "ram_synthetic" / "multiruns").rglob("results.json"))
    assert len(results) == 2
    lambdas = set()
    for r in results:
        cfg = (r.parent / "config_resolved.yaml").read_text()
        lambdas.add(next(ln.split(":")[1].strip() for ln in cfg.splitlines() if "lambda_region" in ln))
        assert list(json.loads(r.read_text())["stages"]) == ["baseline", "bn", "bn_r", "ram"]
    assert lambdas == {"0.5", "1.0"}


@pytest.mark.parametrize("extra,message", [
    (["trainer.use_distributed_sampler=true"], "use_distributed_sampler"),
    (["init_from=/x.ckpt"], "init_from applies to staged"),
])
def test_config_combinations_that_would_silently_misbehave_are_refused(tmp_path: Path, extra, message):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=message):
        run(compose(["+experiment=baseline_synthetic", *TINY, *extra], tmp_path))


def test_run_stages_rejects_unknown_stage_names(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=r"unknown stage\(s\) \['rm'\]"):
        run(compose(["+experiment=ram_synthetic", *TINY, "run_stages=[rm]"], tmp_path))


def test_precision_passes_through_to_the_trainer(tmp_path: Path, veri_world: Path):
    """trainer.precision reaches Lightning (bf16-mixed runs on CPU too; 16-mixed is for GPUs)."""
    from vreid_lightning.run import run
    from vreid_lightning.runner.fit import make_trainer as _make_trainer

    cfg = compose(["+experiment=baseline_synthetic", *TINY, "trainer.fast_dev_run=true",
                   "trainer.precision=bf16-mixed"], tmp_path)
    assert _make_trainer(cfg, tmp_path, None, {}).precision == "bf16-mixed"
    assert run(cfg)["partial_test"]  # a bf16 run completes and is tested (fast_dev_run: marked partial)
