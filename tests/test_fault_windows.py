"""Fault windows: kills at exact writes, SIGTERM, two runs in one directory, failed writes, leftovers.

The kill tests run the real CLI with ``VREID_FAULT=<write>`` (:mod:`vreid_lightning.faults`), which
ends the process at that write as SIGKILL would; ``tests/fault_injection.py`` sweeps every write.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY, compose

QUIET = ["logger=csv", "model.figures=null", "callbacks.results_writer.rank_list=0", "callbacks.lr_monitor=null"]
PLAIN = ["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def _run(over: list[str], out: Path) -> dict:
    from vreid_lightning.run import run

    return run(compose(over, out))


# ---------------------------------------------------------------- item 1: the stripped-checkpoint window
def test_a_stripped_checkpoint_without_its_record_is_trained_again_not_crashed_on(tmp_path: Path, veri_world: Path):
    """The state a kill between stripping and the record left (main: KeyError on every resume)."""
    over = [*PLAIN, "checkpoint.save_optimizer=false"]
    a = _run(over, tmp_path / "a")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert "optimizer_states" not in torch.load(last, map_location="cpu", weights_only=False)
    (tmp_path / "a" / "results.json").unlink()
    b = _run([*over, f"resume={tmp_path / 'a'}"], tmp_path / "b")
    assert b["resumed"] is True and b["test"] == a["test"]


def test_killed_before_a_stage_record_with_stripped_checkpoints_resumes_to_the_same_metrics(tmp_path: Path,
                                                                                             veri_world: Path):
    """Kill the staged CLI just before ``stage_results.json`` (RAM's save_optimizer=false); the stale lock
    is reported, then ``resume= break_lock=true`` finishes with the uninterrupted metrics."""
    from tests.fault_injection import fault_points, kill_and_resume, staged_args

    points, ref = fault_points(staged_args, tmp_path)
    assert points.index("stage_results.json@1") < points.index("strip_optimizer@1")  # record first, then strip
    row = kill_and_resume(staged_args, "stage_results.json@1", tmp_path, ref, check_lock=True)
    assert row["killed"] and row["resumed"] and row["equal"], row
    assert "stale lock reported" in row["note"]


# ---------------------------------------------------------------- item 2: the run-directory lock
def test_a_second_run_into_a_locked_directory_is_refused_and_a_stale_lock_needs_break_lock(tmp_path: Path,
                                                                                           veri_world: Path):
    import socket

    from vreid_lightning.errors import RunDirLocked
    from vreid_lightning.runner.lock import LOCK_NAME

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00", "command": "x"}
        (run_dir / LOCK_NAME).write_text(json.dumps(lock))
        for extra in ([], ["break_lock=true"]):  # a live holder is never broken
            with pytest.raises(RunDirLocked, match=rf"{run_dir} is in use by PID {holder.pid} on host"):
                _run([*PLAIN, "trainer.fast_dev_run=true", *extra], run_dir)
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(RunDirLocked, match=rf"lock left by PID {holder.pid} .*stale.*break_lock=true"):
        _run([*PLAIN, "trainer.fast_dev_run=true"], run_dir)
    assert not (run_dir / "config_resolved.yaml").exists()  # refused before writing anything
    _run([*PLAIN, "trainer.fast_dev_run=true", "break_lock=true"], run_dir)
    assert not (run_dir / LOCK_NAME).exists()  # released at the end
    (run_dir / "results.json").unlink()
    (run_dir / LOCK_NAME).write_text(json.dumps(lock))  # resume takes the same lock
    with pytest.raises(RunDirLocked, match="stale"):
        _run([*PLAIN, "trainer.fast_dev_run=true", f"resume={run_dir}"], tmp_path / "h")


def test_two_concurrent_cli_runs_into_one_directory_one_is_refused(tmp_path: Path, veri_world: Path):
    """The first run is frozen (SIGSTOP at the end of its training) while it holds the lock; the second
    CLI run into the same directory is refused with one line naming it."""
    args = [sys.executable, "-m", "vreid_lightning", *PLAIN, f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = subprocess.Popen(args, cwd=REPO, env={**env, "VREID_FAULT": "last.ckpt(train_end):stop"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = time.monotonic()
        while first.poll() is None and time.monotonic() - start < 600:
            if Path(f"/proc/{first.pid}/stat").read_text().split(") ")[1][0] == "T":
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before it was frozen"
        second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"run directory {tmp_path} is in use by PID {first.pid} on host" in second.stderr
        assert "Traceback" not in second.stderr
        assert not (tmp_path / "results.json").exists()
    finally:
        first.kill()
        first.wait()


# ---------------------------------------------------------------- item 3: SIGTERM
def test_sigterm_exits_143_says_how_to_resume_and_the_resume_finishes(tmp_path: Path, veri_world: Path):
    run_dir = tmp_path / "run"
    args = [*PLAIN, "trainer.max_epochs=4", "trainer.max_steps=-1", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "vreid_lightning", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watch = run_dir / "checkpoints" / "last.ckpt"
    start = time.monotonic()
    while not watch.exists() and proc.poll() is None and time.monotonic() - start < 300:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert f"resume={run_dir}" in err and "terminated (SIGTERM)" in err
    assert not (run_dir / "results.json").exists()
    p = subprocess.run([sys.executable, "-m", "vreid_lightning", *args, f"resume={run_dir}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["resumed"] is True and res["tested_checkpoint"]["global_step"] == 8  # 4 epochs x 2 batches


# ---------------------------------------------------------------- item 5: atomic writes, leftovers
def test_a_zero_byte_results_json_is_rebuilt_on_resume(tmp_path: Path, veri_world: Path):
    a = _run(PLAIN, tmp_path / "a")
    (tmp_path / "a" / "results.json").write_bytes(b"")
    b = _run([*PLAIN, f"resume={tmp_path / 'a'}"], tmp_path / "b")
    assert b["test"] == a["test"]
    assert json.loads((tmp_path / "a" / "results.json").read_text())["test"] == a["test"]


def test_an_invalid_stage_record_is_rebuilt_not_crashed_on(tmp_path: Path):
    from vreid_lightning.runner.resume import finished_stage

    (tmp_path / "stage_results.json").write_text('{"results": {"metr')
    assert finished_stage(tmp_path) is None


@pytest.mark.parametrize("writer", ["results.json", "features.npz", "test_results.json"])
def test_a_failed_write_names_the_directory_and_leaves_no_tmp(tmp_path: Path, monkeypatch, writer: str):
    """A full disk at fsync: one OutputError naming the file and its directory; no ``.tmp`` left."""
    import numpy as np

    from vreid_lightning.errors import OutputError

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=rf"cannot write {tmp_path / writer} \(directory {tmp_path}\): No space"):
        if writer == "results.json":
            from vreid_lightning.runner.results import write_results

            write_results(tmp_path, {"test": {"mAP": 0.5}})
        elif writer == "features.npz":
            from vreid_lightning.evaluation.saved_features import FeatureSet, save_features

            labels = {"ids": np.zeros(2, np.int64)}
            save_features(FeatureSet({"": (np.zeros((2, 3)), np.zeros((2, 3)))}, labels, labels), tmp_path / writer)
        else:
            from types import SimpleNamespace

            from vreid_lightning.callbacks.results import ResultsWriter

            cb = ResultsWriter(rank_list=0, figures=False)
            cb.output_dir = str(tmp_path)
            trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path))
            cb.on_test_end(trainer, SimpleNamespace(eval_results={"test": {"metrics": {"mAP": 0.5}}}))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failed_checkpoint_write_names_the_directory_and_leaves_no_tmp(tmp_path: Path, monkeypatch):
    from types import SimpleNamespace

    from vreid_lightning.callbacks.checkpoint import _atomic_trainer_save
    from vreid_lightning.errors import OutputError

    def save_checkpoint(path, weights_only=False):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    trainer = SimpleNamespace(save_checkpoint=save_checkpoint, is_global_zero=True,
                              strategy=SimpleNamespace(barrier=lambda name: None))
    with pytest.raises(OutputError, match=rf"cannot write {tmp_path / 'last.ckpt'} \(directory {tmp_path}\): No space"):
        _atomic_trainer_save(trainer, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- item 13: unwritable output / cache dir
def test_an_unwritable_output_directory_is_one_error_naming_it(tmp_path: Path, veri_world: Path, monkeypatch):
    from vreid_lightning.errors import OutputError

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the run directory's parent should be")
    with pytest.raises(OutputError, match=rf"run directory .*cannot write in {blocker / 'run'}"):
        _run(PLAIN, blocker / "run")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    from vreid_lightning.data.synthetic import ensure_synthetic_world

    cache = tmp_path / "cache"
    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(OutputError, match=rf"paths.cache_dir .*cannot write in {cache / 'synthetic'}: Read-only"):
        ensure_synthetic_world(cache, {"layout": "veri", "ids": 3, "seed": 7})


# ---------------------------------------------------------------- item 14: killed before config_resolved.yaml
def test_resume_of_a_directory_where_nothing_trained_says_to_start_afresh(tmp_path: Path):
    from vreid_lightning.errors import ConfigError

    (tmp_path / "run" / ".hydra").mkdir(parents=True)  # what Hydra leaves before the run writes anything
    with pytest.raises(ConfigError, match=r"nothing to resume\. Start afresh: the same command without resume="):
        _run([*PLAIN, f"resume={tmp_path / 'run'}"], tmp_path / "h")


def test_config_resolved_yaml_is_written_before_any_training(tmp_path: Path, veri_world: Path):
    """Killed at the first write that follows it (the end of training), the config is already there."""
    from tests.fault_injection import cli, plain_args

    p = cli(plain_args(tmp_path / "run"), {"VREID_FAULT": "last.ckpt(train_end)"})
    assert p.returncode == 137, p.stderr[-2000:]
    assert (tmp_path / "run" / "config_resolved.yaml").is_file()
