"""Training you can trust: what is tested, checkpoints every epoch, kill-and-resume, clear errors.

The kill-and-resume test runs the real CLI three times (uninterrupted, killed in the middle of its
second stage, resumed), on the tiny world with a few batches per epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY, compose, run_cli

QUIET = ["logger=csv", "model.figures=null", "callbacks.results_writer.rank_list=0", "callbacks.lr_monitor=null"]


def _csv_rows(run: Path) -> list[dict[str, str]]:
    (metrics_csv,) = run.rglob("metrics.csv")
    header, *lines = metrics_csv.read_text().splitlines()
    return [dict(zip(header.split(","), ln.split(","))) for ln in lines]


def _epochs_with(rows: list[dict[str, str]], key: str) -> set[int]:
    return {int(r["epoch"]) for r in rows if r.get(key)}


def test_final_epoch_is_validated_and_tested_without_selection_on_test_images(tmp_path: Path, veri_world: Path):
    """max_epochs=3 with validation every 2 epochs: the default (no held-out ids) tests epoch 3's weights."""
    from vreid_lightning.run import run

    res = run(compose(["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.max_epochs=3",
                       "trainer.max_steps=-1", "trainer.check_val_every_n_epoch=2", "trainer.limit_train_batches=2"], tmp_path))
    tested = res["tested_checkpoint"]
    # what was tested: the file holding the final epoch (3 epochs x 2 batches), not epoch 2's
    assert tested["global_step"] == 6 and tested["epoch"] == 3  # saved after the 3rd epoch completed
    assert torch.load(tested["path"], map_location="cpu", weights_only=False)["global_step"] == 6
    assert "no held-out validation split" in res["model_selection"]
    rows = _csv_rows(tmp_path)
    assert _epochs_with(rows, "val_on_test/mAP") == {1, 2}  # the final epoch validated too (monitoring only)
    assert not _epochs_with(rows, "val/mAP")  # nothing named as a selection metric on test images
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]  # one file kept


def test_held_out_ids_select_the_best_val_checkpoint_including_the_final_epoch(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    res = run(compose(["+experiment=baseline_synthetic", *TINY, *QUIET, "data.val_ids=4", "trainer.max_epochs=3",
                       "trainer.max_steps=-1", "trainer.check_val_every_n_epoch=2", "trainer.limit_train_batches=2",
                       "checkpoint.save_optimizer=false"], tmp_path))
    rows = _csv_rows(tmp_path)
    val = {int(r["epoch"]): float(r["val/mAP"]) for r in rows if r.get("val/mAP")}
    assert set(val) == {1, 2}
    best_epoch = max(val, key=lambda e: (val[e], -e))  # ModelCheckpoint keeps the first of equal scores
    tested = res["tested_checkpoint"]
    assert tested["epoch"] == best_epoch and "held-out" in tested["rule"]  # saved during that epoch's validation
    assert "held-out" in res["model_selection"]
    kept = list((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in kept] == [Path(tested["path"]).name]  # last.ckpt dropped: one checkpoint per run
    assert "optimizer_states" not in torch.load(kept[0], map_location="cpu", weights_only=False)


def _staged_args(run_dir: Path) -> list[str]:
    return ["+experiment=ram_synthetic", *TINY, *QUIET, "run_stages=[baseline,bn]", "trainer.limit_train_batches=3", "trainer.max_steps=-1",
            "scheduler.step_size=1", "stages.baseline.trainer.max_epochs=2", "stages.baseline.trainer.check_val_every_n_epoch=2",
            "stages.bn.trainer.max_epochs=3", "stages.bn.trainer.check_val_every_n_epoch=3", f"hydra.run.dir={run_dir}"]


def _kill_during_second_stage(args: list[str], cwd: Path, watch: Path, timeout: float = 300) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "vreid_lightning", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        while not watch.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}")
            if time.monotonic() - start > timeout:
                raise AssertionError("the second stage never wrote last.ckpt")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()


def test_kill_and_resume_a_staged_run_gives_the_uninterrupted_metrics(tmp_path: Path, veri_world: Path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = run_cli(_staged_args(full), REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]

    t0 = time.monotonic()
    _kill_during_second_stage(_staged_args(killed), REPO, killed / "stages" / "bn" / "checkpoints" / "last.ckpt")
    assert (killed / "stages" / "baseline" / "stage_results.json").is_file()  # the first stage had finished
    assert not (killed / "stages" / "bn" / "stage_results.json").exists()  # killed in the middle of the second
    assert not (killed / "results.json").exists()
    killed_epoch = torch.load(killed / "stages" / "bn" / "checkpoints" / "last.ckpt", map_location="cpu",
                              weights_only=False)["epoch"]
    assert 1 <= killed_epoch <= 2

    # SIGKILL left the run-directory lock behind: a resume breaks it explicitly (runner.lock)
    p = run_cli([*_staged_args(tmp_path / "resume_hydra"), f"resume={killed}", "break_lock=true"], REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "finished before, results read back" in p.stdout + p.stderr
    a = json.loads((full / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert b["resumed"] is True
    steps = [{s: r["stage_checkpoints"][s]["global_step"] for s in r["stages"]} for r in (a, b)]
    assert steps[0] == steps[1]  # every batch of the interrupted stage trained exactly once
    assert a["stages"]["baseline"] == b["stages"]["baseline"]  # the finished stage, read back
    assert a["stages"]["baseline"] != a["stages"]["bn"]
    print(f"kill-and-resume wall time {time.monotonic() - t0:.1f}s")
    assert a["stages"]["bn"] == b["stages"]["bn"]  # the interrupted stage, continued mid-way: bit-exact
    assert a["test"] == b["test"] and a["features"] == b["features"]


def test_resume_refuses_a_different_config(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    over = ["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.fast_dev_run=true"]
    run(compose(over, tmp_path / "a"))
    with pytest.raises(ConfigError, match=r"resume: the config differs .* data.batch_size: 8 -> 4"):
        run(compose([*over, "data.batch_size=4", f"resume={tmp_path / 'a'}"], tmp_path / "b"))
    with pytest.raises(ConfigError, match="has no config_resolved.yaml"):
        run(compose([*over, f"resume={tmp_path}"], tmp_path / "c"))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_a_non_checkpoint_file_is_one_clear_error_naming_it(tmp_path: Path, content: bytes):
    from vreid_lightning.callbacks.checkpoint import read_checkpoint
    from vreid_lightning.errors import ConfigError

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=f"ckpt_path: {bad} is not a readable checkpoint"):
        read_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="plain.pt is not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")


def test_a_half_written_last_ckpt_under_resume_names_the_file(tmp_path: Path, veri_world: Path):
    """From the CLI: one line naming the file, exit code 2, no traceback (resume and ckpt_path)."""
    from vreid_lightning.run import run

    over = ["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "test=false"]
    run(compose(over, tmp_path / "run"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # as a non-atomic writer killed mid-write
    (tmp_path / "run" / "results.json").unlink()  # the run is "interrupted"
    p = run_cli([*over, f"resume={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'h'}"], REPO, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"{last} is not a readable checkpoint" in p.stderr and "Traceback" not in p.stderr


def test_trainer_max_epochs_on_a_staged_experiment_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=r"trainer.max_epochs=3: .*stages.<step>.trainer.max_epochs"):
        run(compose(["+experiment=ram_synthetic", *TINY, "trainer.max_epochs=3"], tmp_path))


def test_a_backbone_option_with_no_effect_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.models.backbones import build_backbone

    with pytest.raises(ConfigError, match="backbone.norm: the resnet50 backbone takes no option 'norm'"):
        build_backbone("resnet50", norm="bn")


@pytest.mark.parametrize("semantics,devices,per_rank,lr_factor", [
    ("per_rank", 4, 32, 1), ("global", 4, 8, 1), ("scale_lr", 4, 32, 4), ("global", 1, 32, 1)])
def test_batch_semantics_and_the_printed_global_batch(tmp_path: Path, capsys, semantics: str, devices: int,
                                                      per_rank: int, lr_factor: int):
    from vreid_lightning.runner.checks import apply_batch_semantics

    cfg = compose(["+experiment=baseline_synthetic", f"batch_semantics={semantics}", f"trainer.devices={devices}",
                   "data.batch_size=32"], tmp_path)
    lr = float(cfg.optimizer.lr)
    info = apply_batch_semantics(cfg)
    assert cfg.data.batch_size == per_rank and info["global_batch"] == per_rank * devices
    assert cfg.optimizer.lr == pytest.approx(lr * lr_factor)
    assert f"Effective global batch: {per_rank * devices} = {per_rank} per rank x {devices} rank(s)" in capsys.readouterr().out


def test_a_global_batch_that_does_not_split_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.runner.checks import apply_batch_semantics

    cfg = compose(["+experiment=baseline_synthetic", "batch_semantics=global", "trainer.devices=3",
                   "data.batch_size=32"], tmp_path)
    with pytest.raises(ConfigError, match="divisible by the world size 3"):
        apply_batch_semantics(cfg)
