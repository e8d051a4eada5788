"""A clean tiny ``baseline_synthetic`` run with stdout and stderr redirected to files (as under nohup or
SLURM): plain progress lines appear (stage, epoch, step, loss, images/s, ETA), every log line is printed
once, and no warning caused by the suite's own defaults or by a dependency reaches the user."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY

PROGRESS = re.compile(r"\[progress\] fit \| epoch (\d+)/2 \| step (\d+)/(\d+) \| loss \d+\.\d{4} \| "
                      r"\d+\.\d images/s \| ETA \d+:\d\d:\d\d")
HYDRA_LINE = re.compile(r"^\[[\d\- :,]+\]\[[\w.]+\]\[(INFO|WARNING|ERROR)\] - (.*)$")


@pytest.fixture(scope="module")
def redirected_run(tmp_path_factory: pytest.TempPathFactory, veri_world: Path) -> tuple[str, str, Path]:
    tmp = tmp_path_factory.mktemp("quiet")
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    with out.open("w") as fo, err.open("w") as fe:  # files, not a terminal
        p = subprocess.run([sys.executable, "-m", "vreid_lightning", "+experiment=baseline_synthetic", *TINY,
                            "trainer.max_epochs=2", "trainer.max_steps=-1", "callbacks.progress.interval_s=0"],
                           cwd=tmp, env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}, stdout=fo, stderr=fe, timeout=600)
    assert p.returncode == 0, err.read_text()[-3000:]
    (run,) = (tmp / "outputs" / "baseline_synthetic" / "runs").iterdir()
    return out.read_text(), err.read_text(), run


def test_progress_lines_in_a_log_file(redirected_run):
    stdout, _, run = redirected_run
    found = [PROGRESS.search(ln) for ln in stdout.splitlines()]
    steps = [(int(m[1]), int(m[2]), int(m[3])) for m in found if m]
    assert steps and steps[-1][0] == 2 and steps[-1][1] == steps[-1][2]  # up to the last step of epoch 2
    assert [s for _, s, _ in steps] == sorted(s for _, s, _ in steps)
    assert re.search(r"\[progress\] test \| batch \d+/\d+ \| [\d.]+ images/s \| ETA", stdout)
    assert PROGRESS.search((run / "__main__.log").read_text())  # the run's own log has them too


def test_each_line_once_and_no_warnings(redirected_run):
    stdout, stderr, _ = redirected_run
    # nothing on stderr at all: no second copy of the INFO lines (Lightning's own handler), no warnings,
    # no progress bar of the world generator
    assert stderr.strip() == "", stderr[:3000]
    messages = [m[2] for ln in stdout.splitlines() if (m := HYDRA_LINE.match(ln))]
    dup = {m for m in messages if messages.count(m) > 1 and not m.startswith("[progress]")}
    assert not dup, dup
    assert "Seed set to 0" in messages
    for noise in ("Warning", "warn(", "Total FLOPs", "💡", "FLOPs", "deprecated", "log_every_n_steps"):
        assert noise not in stdout, noise
