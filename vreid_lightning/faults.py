"""Fault injection for the finishing writes: ``VREID_FAULT=<write>[@K]`` kills the process at that write.

Each write of a run's finishing sequence calls :func:`fault_point` with its name just before the write
lands (``<file>``) and, for atomic writes, between the temporary file and the rename (``<file>.tmp``).
When the environment variable ``VREID_FAULT`` names the point (``@K``: its K-th occurrence, default the
first), the process ends at once with ``os._exit(137)``, as a SIGKILL would: no ``finally``, no flush;
``<write>[@K]:stop`` stops it there instead (SIGSTOP: frozen, holding its lock, until killed or continued).
``VREID_FAULT_LOG=FILE`` appends every point reached to FILE (one name a line), which is how
``tests/fault_injection.py`` lists the distinct writes of a run. Unset, both cost one dict lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point", "FAULT_ENV", "FAULT_LOG_ENV", "KILLED_CODE"]

FAULT_ENV = "VREID_FAULT"
FAULT_LOG_ENV = "VREID_FAULT_LOG"
KILLED_CODE = 137  # what a shell reports for SIGKILL
_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Mark the write ``name``; end the process here if ``VREID_FAULT`` asks for it."""
    want = os.environ.get(FAULT_ENV)
    logf = os.environ.get(FAULT_LOG_ENV)
    if not want and not logf:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if logf:
        with open(logf, "a") as f:
            f.write(f"{name}@{_seen[name]}\n")
    if want:
        want, _, action = want.partition(":")
        point, _, k = want.partition("@")
        if point == name and _seen[name] == int(k or 1):
            if action == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            os._exit(KILLED_CODE)
