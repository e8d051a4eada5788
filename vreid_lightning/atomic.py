"""Atomic file writes: written beside as ``<name>.tmp``, fsynced, renamed over the target.

A kill leaves either the old file or the new one, never a half-written one; a failed write (disk full,
read-only directory) removes its ``.tmp`` and raises one :class:`~vreid_lightning.errors.OutputError`
naming the file and its directory. Each write is a fault-injection point (:mod:`vreid_lightning.faults`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator

from vreid_lightning.errors import OutputError
from vreid_lightning.faults import fault_point

__all__ = ["atomic_open", "atomic_write_text", "write_probe"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", point: str | None = None) -> Iterator[IO]:
    """Open ``<path>.tmp`` for writing; on a clean exit fsync it and rename it over ``path``.

    ``point``: the fault-injection name of this write (default the file's name).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    point = point or path.name
    fault_point(point)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault_point(point + ".tmp")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path} (directory {path.parent}): {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_probe(directory: str | os.PathLike[str], key: str) -> None:
    """Create ``directory`` if needed and check a file can be written there; one error naming it if not."""
    d = Path(directory)
    probe = d / f".write_probe.{os.getpid()}"
    try:
        d.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"{key}: cannot write in {d}: {e.strerror or e} (give a writable directory)") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
