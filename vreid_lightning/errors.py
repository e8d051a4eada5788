"""User errors: the exceptions that mean bad input (paths, annotations, config values), not a bug.

The entry point prints them as one line and exits with code 2; anything else is a bug and keeps its
traceback. This module imports nothing from the package, so every layer can raise these.
"""

from __future__ import annotations

from pathlib import Path

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

__all__ = ["USER_ERRORS", "ConfigError", "DatasetFormatError", "OutputError", "RunDirLocked", "format_user_error",
           "worker_user_error"]


class ConfigError(ValueError):
    """A config value is missing or not one of the accepted values; the message names the key."""


class DatasetFormatError(ValueError):
    """A dataset layout does not match what the parser expects.

    The message names the file (and line, when there is one) and what was expected.
    """

    def __init__(self, path: str | Path, expected: str, line: int | None = None, got: str | None = None):
        where = f"{path}" + (f", line {line}" if line is not None else "")
        msg = f"{where}: expected {expected}"
        if got is not None:
            msg += f", got {got!r}"
        super().__init__(msg)
        self.path = str(path)
        self.line = line


class OutputError(ConfigError):
    """An output or cache directory cannot be written (read-only, full, missing); the message names it."""


class RunDirLocked(ConfigError):
    """Another run holds the run directory's lock; the message names the holder and how to break a stale lock."""


USER_ERRORS = (DatasetFormatError, ConfigError, FileNotFoundError, InstantiationException, HydraException,
               OmegaConfBaseException)


def format_user_error(e: BaseException) -> str:
    """One line: the innermost user-facing message (Hydra wraps errors raised in constructors)."""
    inner = e
    while isinstance(inner, InstantiationException) and inner.__cause__ is not None:
        inner = inner.__cause__
    return " ".join(str(inner).split())


def worker_user_error(e: BaseException) -> str | None:
    """The one-line message of a user error raised in a DataLoader worker (``num_workers > 0``), else None.

    PyTorch re-raises a worker's exception in the main process as a ``RuntimeError("Caught
    DatasetFormatError in DataLoader worker process 0. Original Traceback ...")``; the last line of that
    traceback is ``<module>.<Class>: <message>``.
    """
    text = str(e)
    if not isinstance(e, RuntimeError) or not text.startswith("Caught "):
        return None
    name = text[len("Caught "):].split(" ", 1)[0]
    if name not in {c.__name__ for c in (DatasetFormatError, ConfigError, OutputError, FileNotFoundError)}:
        return None
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return " ".join(last.split(": ", 1)[-1].split())
