"""The run-directory lock: one run (or resume) at a time writes into a run directory.

``RUN_DIR/.vreid_run.lock`` is created exclusively (``O_CREAT | O_EXCL``) and holds the holder's PID,
host, start time and command line. A second run into the same directory is refused with one error
naming the holder. A lock whose PID no longer runs on this host (the holder was killed) is stale: it
is reported and broken only with ``break_lock=true``. A lock from another host cannot be checked from
here: it is reported, and ``break_lock=true`` breaks it too (the user vouches that run is over).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from vreid_lightning.errors import RunDirLocked

__all__ = ["LOCK_NAME", "run_dir_lock", "read_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".vreid_run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict[str, Any]:
    """The holder recorded in a lock file (``{}`` if it is empty or unreadable: written by a killed holder)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "an unknown holder (the lock file is empty)"
    cmd = str(info.get("command", ""))
    cmd = cmd if len(cmd) <= 120 else cmd[:117] + "..."
    return f"PID {info.get('pid')} on host {info.get('host')} since {info.get('started')} ({cmd})"


def _acquire(path: Path, break_stale: bool) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            here = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if here and isinstance(pid, int) and _alive(pid):
                raise RunDirLocked(f"run directory {path.parent} is in use by {_describe(holder)}; lock file {path}. "
                                   f"Wait for that run to end, or choose another run directory") from None
            state = ("stale: that process no longer runs" if here or not holder
                     else "held from another host, which cannot be checked from here")
            if not break_stale or attempt:
                raise RunDirLocked(f"run directory {path.parent} has a lock left by {_describe(holder)} ({state}); "
                                   f"lock file {path}. If no run uses this directory, rerun with break_lock=true "
                                   f"to break it") from None
            log.warning("break_lock=true: breaking the lock of %s (%s)", _describe(holder), state)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
            f.flush()
            os.fsync(f.fileno())
        return


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, break_stale: bool = False, enabled: bool = True) -> Iterator[Path | None]:
    """Hold ``run_dir``'s lock for the block (``enabled=False``: a no-op, for non-zero ranks)."""
    if not enabled:
        yield None
        return
    path = Path(run_dir) / LOCK_NAME
    _acquire(path, break_stale)
    try:
        yield path
    finally:
        if read_lock(path).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()
