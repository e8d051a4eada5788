"""Track files (``*_track.txt`` by file name, ``*_track_id.txt`` by image number): read, reconcile, report.

A track is one vehicle seen by one camera: one line of a track file. VeRi ships ``test_track.txt``;
CityFlow/AIC ships ``train_track.txt`` *and* ``train_track_id.txt`` (and the same for test), and the
public AIC19 copy's two files disagree: every line of ``train_track.txt`` lacks the last image of its
track (single-image tracks are blank lines) while ``train_track_id.txt`` is complete (1-based unpadded
numbers, a trailing space). :func:`attach_tracks` reads every file present, takes the one that tracks
more images (ties: the numeric file), adds the other file's tracks for images the first leaves out when
they do not conflict (the union), and warns with counts whenever images stay untracked or the files
disagree. What it did is returned as a JSON-able record (``ReIDDataset.diagnostics``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import IMAGE_SUFFIXES, parse_int, read_rows, read_text
from .base import MISSING, DatasetFormatError, Split

__all__ = ["TrackFile", "read_track_file", "attach_tracks"]

TrackFile = tuple[str, bool]
"""(file name, numeric): numeric files hold image numbers (``12`` is ``000012.jpg``), others file names."""


def _blank_lines(path: Path) -> int:
    """Blank lines (AIC19's single-image tracks in train_track.txt); a final newline is not one."""
    return sum(1 for line in read_text(path).splitlines() if not line.strip())


def read_track_file(path: Path, split: Split, numeric: bool) -> tuple[list[np.ndarray], int]:
    """Rows of ``split`` per non-blank line of a track file, and the number of blank lines.

    Raises:
        DatasetFormatError: a line without image tokens, an image not in ``split``, or an image on two
            lines (names the file and line).
    """
    names = [Path(p).name for p in split.paths]
    if numeric:
        row_of = {int(Path(n).stem): i for i, n in enumerate(names) if Path(n).stem.isdigit()}
    else:
        row_of = {n: i for i, n in enumerate(names)}
    expected = "image numbers" if numeric else f"image names ending in {'/'.join(IMAGE_SUFFIXES)}"
    seen = np.zeros(len(split), bool)
    out: list[np.ndarray] = []
    for line, tokens in read_rows(path):
        keys = ([parse_int(t, path, line, "integer image numbers") for t in tokens] if numeric
                else [t for t in tokens if t.lower().endswith(IMAGE_SUFFIXES)])  # .png: synthetic PNG worlds
        if not keys:
            raise DatasetFormatError(path, f"a track line holding {expected}", line=line, got=" ".join(tokens))
        rows = []
        for key in keys:
            row = row_of.get(key)
            if row is None:
                raise DatasetFormatError(path, "track images that are in the split's image list", line=line,
                                         got=str(key))
            if seen[row]:
                raise DatasetFormatError(path, "each image in one track only", line=line, got=str(key))
            seen[row] = True
            rows.append(row)
        out.append(np.asarray(rows, dtype=np.int64))
    return out, _blank_lines(path)


def _labels(lines: list[np.ndarray], n: int) -> np.ndarray:
    labels = np.full(n, MISSING, np.int64)
    for index, rows in enumerate(lines):
        labels[rows] = index
    return labels


def attach_tracks(root: Path, files: list[TrackFile], split: Split, warnings: list[str], label: str) -> dict:
    """Set ``split.tracks`` from the track files of ``files`` found in ``root``; returns the record.

    Args:
        root: the dataset folder.
        files: candidate files in order of preference for equal coverage (the last wins ties).
        split: the split whose rows the tracks index; its ``tracks`` column is replaced.
        warnings: appended with one line per finding (counts included).
        label: the split's name in messages (``train``, ``gallery`` ...).

    Returns:
        ``{"files": {name: {"lines", "blank_lines", "images"}}, "used": [names], "tracked_images",
        "untracked_images", "tracks"}`` plus, with two files, ``"disagreement"``: ``only_in`` (images
        tracked by one file only, per file), ``lines_inside`` (lines of the secondary file inside one
        track of the primary, e.g. a track minus its last image), ``lines_added`` (union),
        ``lines_conflicting``.
    """
    n = len(split)
    found = [(name, numeric) for name, numeric in files if (root / name).is_file()]
    names = " / ".join(name for name, _ in files)
    if not found:
        split.tracks = np.full(n, MISSING, np.int64)
        warnings.append(f"{label}: {names} not found: tracks MISSING")
        return {"files": {}, "used": [], "tracked_images": 0, "untracked_images": n, "tracks": 0}
    read = {name: read_track_file(root / name, split, numeric) for name, numeric in found}
    labels = {name: _labels(lines, n) for name, (lines, _) in read.items()}
    coverage = {name: int((lab != MISSING).sum()) for name, lab in labels.items()}
    order = [name for name, _ in found]
    primary = max(order, key=lambda k: (coverage[k], order.index(k)))
    record: dict = {"files": {k: {"lines": len(read[k][0]), "blank_lines": read[k][1], "images": coverage[k]}
                              for k in order}, "used": [primary]}
    tracks = labels[primary].copy()
    next_track = len(read[primary][0])
    for other in (k for k in order if k != primary):
        a, b = labels[primary], labels[other]
        inside = added = conflicting = 0
        for rows in read[other][0]:
            theirs = a[rows]
            known = theirs[theirs != MISSING]
            if known.size == rows.size and np.unique(known).size == 1:
                inside += 1
            elif known.size == 0:
                tracks[rows] = next_track  # the union: a track only the other file has
                next_track += 1
                added += 1
            else:
                conflicting += 1
        only = {primary: int(((a != MISSING) & (b == MISSING)).sum()),
                other: int(((b != MISSING) & (a == MISSING)).sum())}
        record["disagreement"] = {"only_in": only, "lines_inside": inside, "lines_added": added,
                                  "lines_conflicting": conflicting}
        if added:
            record["used"].append(other)
        if only[primary] or only[other] or conflicting:
            blank = read[other][1]
            warnings.append(
                f"{label}: {primary} and {other} disagree: {only[primary]} image(s) tracked only in {primary}, "
                f"{only[other]} only in {other}; {inside} line(s) of {other} lie inside one {primary} track"
                + (f" (e.g. a track minus its last image), {blank} blank line(s)" if blank else "")
                + f", {conflicting} conflict; tracks taken from {primary}"
                + (f" plus {added} track(s) only in {other}" if added else ""))
    split.tracks = tracks
    untracked = int((tracks == MISSING).sum())
    record.update(tracked_images=n - untracked, untracked_images=untracked,
                  tracks=int(np.unique(tracks[tracks != MISSING]).size))
    if untracked:
        hint = ""
        if len(order) == 1 and order[0].endswith("_track.txt") and read[order[0]][1]:
            complete = order[0].replace("_track.txt", "_track_id.txt")
            hint = (f" ({order[0]} has {read[order[0]][1]} blank line(s): in the public AIC19 copy it lacks the last "
                    f"image of every track and {complete} is complete; add that file to track them)")
        warnings.append(f"{label}: {untracked} of {n} image(s) are in no track of {' + '.join(record['used'])} "
                        f"(track MISSING){hint}")
    return record
