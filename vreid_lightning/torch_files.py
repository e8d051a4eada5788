"""Reading a file with ``torch.load`` where a bad file is the user's input, not a bug.

One list of the exceptions ``torch.load`` raises on a missing-content, truncated, corrupt or foreign file,
shared by the Lightning-checkpoint reader (``callbacks.checkpoint.read_checkpoint``) and the authors'
state-dict reader (``convert.authors_torch.read_state_dict``); each caller words its own error.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["UNREADABLE", "load_or_error"]

#: what ``torch.load`` raises on a file that is not a readable checkpoint
UNREADABLE: tuple[type[BaseException], ...] = (
    RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, AttributeError,
    ImportError, IndexError, KeyError, TypeError, UnicodeDecodeError)


def load_or_error(path: Path, *, weights_only: bool, error: Callable[[str], Exception], width: int = 200) -> Any:
    """``torch.load(path)`` on CPU; an unreadable file raises ``error("<ExceptionType>: <reason>")`` instead."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except UNREADABLE as e:
        reason = " ".join(str(e).split())[:width]
        raise error(f"{type(e).__name__}: {reason}") from None
