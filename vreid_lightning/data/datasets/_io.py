"""File helpers shared by the dataset parsers: tolerant text lists, folder checks, integer fields.

Every helper raises :class:`DatasetFormatError` naming the file (and line) on bad input. Text lists
tolerate CRLF, trailing spaces, a UTF-8 BOM and blank lines; line numbers are those of the file.
"""

from __future__ import annotations

import contextlib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import numpy as np

from .base import MISSING, DatasetFormatError

__all__ = [
    "Row",
    "read_text",
    "read_rows",
    "read_names",
    "require_dir",
    "require_file",
    "parse_int",
    "parse_camera",
    "resolve_root",
    "DirCache",
    "check_choice",
    "missing_image",
    "unlisted_note",
    "IMAGE_SUFFIXES",
    "lookup",
    "DUPLICATE_POLICIES",
    "duplicate_lines",
]

DUPLICATE_POLICIES = ("drop", "error")
_DUP_POLICY: ContextVar[str] = ContextVar("vreid_duplicate_policy", default="drop")
_DUP_COUNTS: ContextVar["dict[str, int] | None"] = ContextVar("vreid_duplicate_counts", default=None)

Row = tuple[int, list[str]]
"""A non-blank line of a text list: (1-based line number, whitespace-separated tokens)."""

_INT = re.compile(r"^[+-]?\d+$")
_CAMERA = re.compile(r"^[cC]?(\d+)$")


def read_text(path: Path) -> str:
    """Whole file as text (UTF-8, BOM stripped); a non-UTF-8 byte is an error naming the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DatasetFormatError(path, "UTF-8/ASCII text", line=line,
                                 got=data[err.start: err.start + 8].decode("latin-1")) from None


def read_rows(path: Path, ncols: int | None = None, expected: str = "", image_list: bool = False) -> list[Row]:
    """Non-blank lines of ``path`` split on whitespace.

    Args:
        path: the list file (must exist: check with :func:`require_file` first for a clear message).
        ncols: when given, every row must have exactly this many tokens.
        expected: what a line should look like, for the error message.
        image_list: a list of images (one row per image): a repeated line is counted and dropped, or
            refused under ``duplicates='error'`` (:func:`duplicate_lines`).
    """
    rows: list[Row] = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if ncols is not None and len(tokens) != ncols:
            raise DatasetFormatError(path, expected or f"{ncols} space-separated fields", line=number,
                                     got=line.strip())
        rows.append((number, tokens))
    return _drop_duplicates(path, rows) if image_list else rows


def _drop_duplicates(path: Path, rows: list[Row]) -> list[Row]:
    first: dict[tuple[str, ...], int] = {}
    kept: list[Row] = []
    for number, tokens in rows:
        key = tuple(tokens)
        if key in first:
            if _DUP_POLICY.get() == "error":
                raise DatasetFormatError(path, f"each image listed once (duplicates='error'); the same line as line "
                                               f"{first[key]}", line=number, got=" ".join(tokens))
            continue
        first[key] = number
        kept.append((number, tokens))
    counts = _DUP_COUNTS.get()
    if counts is not None and len(kept) < len(rows):
        counts[str(path)] = counts.get(str(path), 0) + len(rows) - len(kept)
    return kept


@contextlib.contextmanager
def duplicate_lines(policy: str = "drop") -> Iterator[dict[str, int]]:
    """Within the block, image lists drop repeated lines (``drop``) or refuse them (``error``); yields
    ``{list file: lines dropped}``."""
    check_choice("duplicates", policy, DUPLICATE_POLICIES)
    counts: dict[str, int] = {}
    tp, tc = _DUP_POLICY.set(policy), _DUP_COUNTS.set(counts)
    try:
        yield counts
    finally:
        _DUP_POLICY.reset(tp)
        _DUP_COUNTS.reset(tc)


def read_names(path: Path) -> dict[int, str]:
    """``id -> name`` from a names file (VehicleID ``*_names.txt``, VeRi ``list_*.txt``), UTF-8, any line end.

    ``<name> <id>`` per line (VehicleID, confirmed): the name may hold spaces (all tokens but the last).
    A line whose last token is not an integer is read as ``<id> <name>`` (VeRi's lists, unconfirmed).
    """
    names: dict[int, str] = {}
    for line, tokens in read_rows(path):
        if len(tokens) >= 2 and _INT.match(tokens[-1]):
            key, name = int(tokens[-1]), " ".join(tokens[:-1])
        elif len(tokens) >= 2 and _INT.match(tokens[0]):
            key, name = int(tokens[0]), " ".join(tokens[1:])
        else:
            raise DatasetFormatError(path, "'<name> <id>' per line (an integer id)", line=line, got=" ".join(tokens))
        if names.setdefault(key, name) != name:
            raise DatasetFormatError(path, f"one name per id (id {key} was named {names[key]!r} before)", line=line,
                                     got=name)
    return names


def require_dir(path: Path, expected: str = "a folder") -> Path:
    """``path`` if it is a folder, else a :class:`DatasetFormatError` naming it."""
    if not Path(path).is_dir():
        raise DatasetFormatError(path, f"{expected} (not found)")
    return Path(path)


def require_file(path: Path, expected: str = "a file") -> Path:
    """``path`` if it is a file, else a :class:`DatasetFormatError` naming it."""
    if not Path(path).is_file():
        raise DatasetFormatError(path, f"{expected} (not found)")
    return Path(path)


def parse_int(token: str, path: Path, line: int | None, expected: str) -> int:
    """``int(token)`` for a decimal token (zero padding allowed), else an error naming file and line."""
    if not _INT.match(token):
        raise DatasetFormatError(path, expected, line=line, got=token)
    return int(token)


def parse_camera(token: str, path: Path, line: int | None) -> int:
    """Camera id from ``c001`` / ``C026`` / ``26`` -> int."""
    match = _CAMERA.match(token.strip())
    if match is None:
        raise DatasetFormatError(path, "a camera id like 'c001'", line=line, got=token)
    return int(match.group(1))


def resolve_root(root: str | Path, markers: tuple[str, ...], subfolders: tuple[str, ...]) -> Path:
    """The dataset folder: ``root`` itself, or one of ``subfolders`` when only that holds ``markers``.

    Users point at either the dataset folder or its parent (``/data`` holding ``VeRi/``). When neither
    holds the markers, ``root`` is returned so that the parser names the first missing entry.
    """
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise DatasetFormatError(base, "an existing dataset root folder (not found)")
    if all((base / m).exists() for m in markers):
        return base
    for sub in subfolders:
        if all((base / sub / m).exists() for m in markers):
            return base / sub
    return base


class DirCache:
    """Folder listings read once: ``name in cache[folder]`` instead of one ``stat`` per image."""

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}

    def __getitem__(self, folder: str | Path) -> frozenset[str]:
        key = str(folder)
        if key not in self._listings:
            try:
                with os.scandir(key) as entries:
                    self._listings[key] = frozenset(e.name for e in entries if not e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                self._listings[key] = frozenset()
        return self._listings[key]


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the option."""
    if value not in choices:
        raise ValueError(f"option {option}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return value


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def missing_image(list_path: Path, line: int, image: Path) -> DatasetFormatError:
    """The error for an image that a list names but that is not on disk."""
    return DatasetFormatError(list_path, f"the listed image {image} on disk (listed but missing)", line=line,
                              got=Path(image).name)


def unlisted_note(folder: Path, present: frozenset[str], listed: set[str], list_name: str) -> str | None:
    """A warning line when ``folder`` holds images that no list names (they are not loaded)."""
    extra = sum(1 for n in present if n.lower().endswith(IMAGE_SUFFIXES) and n not in listed)
    if not extra:
        return None
    return f"{folder.name}/: {extra} image(s) on disk are not listed in {list_name} (not loaded)"


def lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``table[keys]`` with ``MISSING`` where a key is negative or beyond the table (a vectorised join)."""
    out = np.full(len(keys), MISSING, np.int64)
    known = (keys >= 0) & (keys < len(table))
    out[known] = table[keys[known]]
    return out
