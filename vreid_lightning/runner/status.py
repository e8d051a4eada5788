"""A run's status mark: ``<run dir>/run.json`` says running, finished, failed or interrupted.

``python -m vreid_lightning`` wraps the run in :func:`track_run`: ``run.json`` reads ``running`` from
the start, ``finished`` at the end, and on an error ``failed`` with the error's message and traceback,
which also go into the run's log file (``__main__.log``; the console keeps its one line or Hydra's
traceback). The reports (:func:`vreid_lightning.reports.runs.load_runs`) skip runs marked failed or
interrupted. Only rank 0 writes.

    {"status": "failed", "error": "RuntimeError: ...", "traceback": "Traceback ...",
     "started_utc": "...", "ended_utc": "...", "experiment": "ram_synthetic", "pid": 1234}
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["STATUS_FILE", "track_run", "read_status", "write_status", "log_to_files"]

STATUS_FILE = "run.json"
log = logging.getLogger("vreid_lightning")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run.json`` (None when absent or unreadable)."""
    f = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_status(run_dir: str | Path, **fields: Any) -> Path:
    """Merge ``fields`` into ``run.json`` (written beside, then renamed)."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    data = {**(read_status(d) or {}), **fields}
    tmp = d / f".{STATUS_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(d / STATUS_FILE)
    return d / STATUS_FILE


def log_to_files(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to the log files only (Hydra's ``<run dir>/__main__.log``), not the console."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


@contextmanager
def track_run(run_dir: str | Path | None, experiment: str | None = None) -> Iterator[None]:
    """Mark ``run_dir`` running, then finished, failed (error + traceback, also to the log file) or
    interrupted; the exception goes on to the caller."""
    # Hydra made the run directory; a resume= directory that does not exist is run()'s error to report
    write = run_dir is not None and Path(run_dir).is_dir() and _is_rank_zero()
    if write:
        write_status(run_dir, status="running", started_utc=_now(), experiment=experiment, pid=os.getpid(),
                     error=None, traceback=None)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM (Lightning's SIGTERMException is a SystemExit)
        if write:
            write_status(run_dir, status="interrupted", ended_utc=_now())
        raise
    except Exception as e:
        tb = traceback.format_exc()
        error = f"{type(e).__name__}: {e}"
        log_to_files(f"run failed: {error}\n{tb}")
        if write:
            write_status(run_dir, status="failed", ended_utc=_now(), error=error, traceback=tb)
        raise
    if write:
        write_status(run_dir, status="finished", ended_utc=_now())
