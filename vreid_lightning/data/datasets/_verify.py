"""Optional image check after parsing: ``verify_images`` = ``none`` | ``header`` | ``full``.

``header`` opens every image with PIL and calls ``verify()`` (fast: header and structure only);
``full`` decodes every pixel (slow; also catches truncated JPEGs). ``on_corrupt`` = ``error`` raises
one :class:`DatasetFormatError` naming the list file, its line and the image; ``skip`` drops the
unreadable rows and records how many in the dataset's warnings (never silently).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ._io import check_choice
from .base import DatasetFormatError, Split

__all__ = ["VERIFY_MODES", "CORRUPT_POLICIES", "check_verify_options", "verify_split"]

logger = logging.getLogger(__name__)

VERIFY_MODES = ("none", "header", "full")
CORRUPT_POLICIES = ("error", "skip")

Origin = tuple[Path, int | None]
"""Where a row was listed: (list file or folder, 1-based line or None)."""


def check_verify_options(verify_images: str, on_corrupt: str) -> None:
    """Validate the two options before any parsing work."""
    check_choice("verify_images", verify_images, VERIFY_MODES)
    check_choice("on_corrupt", on_corrupt, CORRUPT_POLICIES)


def _problem(path: str, mode: str) -> str | None:
    """None when ``path`` reads as an image under ``mode``, else the reason."""
    try:
        with Image.open(path) as image:
            if mode == "full":
                image.load()
            else:
                image.verify()
    except (OSError, SyntaxError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def verify_split(split: Split, origins: list[Origin], label: str, mode: str, on_corrupt: str,
                 warnings: list[str]) -> Split:
    """``split`` with its images checked under ``mode``.

    Args:
        split: the parsed rows.
        origins: per row, the list file and line it came from (for the error message).
        label: the split's name, for the warning line.
        mode: one of :data:`VERIFY_MODES`.
        on_corrupt: ``error`` or ``skip``.
        warnings: the dataset's warning list (appended to when rows are skipped).
    """
    if mode == "none" or len(split) == 0:
        return split
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(_problem, split.paths, [mode] * len(split), chunksize=64))
    bad = np.array([p is not None for p in problems], dtype=bool)
    if not bad.any():
        return split
    first = int(np.flatnonzero(bad)[0])
    if on_corrupt == "error":
        list_file, line = origins[first]
        raise DatasetFormatError(list_file, f"a readable image at {split.paths[first]}", line=line,
                                 got=problems[first])
    message = (f"{label}: skipped {int(bad.sum())} unreadable image(s) (on_corrupt='skip'); first: "
               f"{split.paths[first]} ({problems[first]})")
    logger.warning(message)
    warnings.append(message)
    return split.subset(np.flatnonzero(~bad))
