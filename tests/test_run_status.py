"""A failed run leaves a trace: its error (message and traceback) in the run's ``__main__.log``, its
``run.json`` marked failed; the reports skip runs so marked."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from vreid_lightning.reports.runs import load_runs
from vreid_lightning.runner.status import read_status, track_run, write_status


def test_a_failed_cli_run_is_marked_and_logged(tmp_path: Path):
    missing = tmp_path / "no_such_veri"
    p = run_cli(["+experiment=baseline_synthetic", "data=veri", f"data.root={missing}"], tmp_path, timeout=300)
    assert p.returncode == 2 and p.stderr.count("error: ") == 1  # the console keeps its one line
    (run,) = (tmp_path / "outputs" / "baseline_synthetic" / "runs").iterdir()
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed" and str(missing) in status["error"]
    assert "Traceback (most recent call last)" in status["traceback"]
    logged = (run / "__main__.log").read_text()
    assert "run failed: " in logged and str(missing) in logged and "Traceback (most recent call last)" in logged
    assert not (run / "results.json").exists()


def test_track_run_marks_finished_failed_and_interrupted(tmp_path: Path):
    with track_run(tmp_path, "x"):
        assert read_status(tmp_path)["status"] == "running"
    assert read_status(tmp_path)["status"] == "finished"
    try:
        with track_run(tmp_path, "x"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    st = read_status(tmp_path)
    assert st["status"] == "failed" and st["error"] == "RuntimeError: boom" and "boom" in st["traceback"]


def test_reports_skip_failed_runs(tmp_path: Path):
    for name, status in (("0", "finished"), ("1", "failed"), ("2", None)):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"experiment": "e", "test": {"mAP": 0.5}}))
        if status:
            write_status(d, status=status)
    skipped: list[str] = []
    runs = load_runs([tmp_path], skipped)
    assert [Path(r.source).parent.name for r in runs] == ["0", "2"]  # no run.json: an older run, kept
    assert skipped == [str(tmp_path / "1" / "results.json")]
