"""Your own dataset: a CSV ``path,id,camera[,timestamp][,split]`` or folders ``ROOT/<id>/<image>``.

CSV (``ROOT/annotations.csv``; ``annotations=`` names another file): a header line naming the columns
(any order; ``path``, ``id``, ``camera`` required, ``timestamp`` and ``split`` optional), one image a row.
``path`` is relative to the CSV's folder (or absolute); ``id`` and ``camera`` are integers or any strings
(strings are numbered in sorted order; a camera such as ``c003`` is 3); ``timestamp`` an integer (frame or
seconds; empty = unknown); ``split`` one of ``train``, ``query``, ``gallery``. Any other column is an
attribute (``colour``, ``type`` ...: integers or strings, empty = unlabelled) that ``data.attributes`` can
train on (RAM's attribute branch, RNN-HA's model level).

Folders (``layout=folders``, or no CSV at ``ROOT``): every image under ``ROOT/<id>/`` is one row of identity
``<id>``; the camera comes from the file name by ``camera_regex`` (its group ``cam``, or its first group;
default ``c(\\d+)`` as in ``c003_000123.jpg``); no match: camera unknown (-1).

Without a split column (and always for folders) the split is automatic and seeded (``split_seed``): a
``test_ids`` fraction of the identities is held out (at least one, at least one left to train); of each
held-out identity, one image per camera is a query (an identity with a single image has none) and the rest
is the gallery. Protocol: image-to-image, junk = same id and camera, as VeRi-776.

Errors, one each, naming the file and line: a missing column, a missing image file, a path listed twice, a
split value other than train/query/gallery, a query identity without any gallery image, a bad integer.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np

from ._io import IMAGE_SUFFIXES, check_choice, require_dir
from ._verify import Origin, check_verify_options, verify_split
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["load_custom", "SPLITS", "REQUIRED_COLUMNS", "DEFAULT_CSV", "DEFAULT_CAMERA_REGEX"]

SPLITS = ("train", "query", "gallery")
REQUIRED_COLUMNS = ("path", "id", "camera")
OPTIONAL_COLUMNS = ("timestamp", "split")
DEFAULT_CSV = "annotations.csv"
DEFAULT_CAMERA_REGEX = r"[cC](\d+)"
LAYOUTS = ("auto", "csv", "folders")
_INT = re.compile(r"^[+-]?\d+$")
_CAM = re.compile(r"^[cC]?(\d+)$")


def _codes(values: list[str], camera: bool) -> tuple[np.ndarray, dict[int, str]]:
    """Integer labels of ``values``: the integers themselves (cameras ``c003`` -> 3), else the sorted strings
    numbered 0.. (returned as ``{code: name}``)."""
    pat = _CAM if camera else _INT
    matches = [pat.match(v) for v in values]
    if all(matches):
        return np.array([int(m.group(1) if camera else m.group(0)) for m in matches], np.int64), {}
    names = sorted(set(values))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], np.int64), dict(enumerate(names))


def _read_csv(path: Path) -> tuple[list[int], dict[str, list[str]]]:
    """(line numbers, column -> values) of the CSV, header checked."""
    from ._io import read_text

    rows = list(csv.reader(read_text(path).splitlines()))
    lines = [i + 1 for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not lines:
        raise DatasetFormatError(path, f"a header line naming the columns {', '.join(REQUIRED_COLUMNS)}", line=1,
                                 got="an empty file")
    header = [c.strip().lower() for c in rows[lines[0] - 1]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header) or "" in header:
        raise DatasetFormatError(path, f"a header with the columns {', '.join(REQUIRED_COLUMNS)} and optionally "
                                 f"{', '.join(OPTIONAL_COLUMNS)} and attribute columns, each once, none empty",
                                 line=lines[0], got=",".join(header))
    cols: dict[str, list[str]] = {c: [] for c in header}
    for ln in lines[1:]:
        row = [c.strip() for c in rows[ln - 1]]
        if len(row) != len(header):
            raise DatasetFormatError(path, f"{len(header)} comma-separated values ({','.join(header)})", line=ln,
                                     got=",".join(row))
        for c, v in zip(header, row):
            cols[c].append(v)
    return lines[1:], cols


def _from_csv(path: Path) -> tuple[Split, list[Origin], np.ndarray | None, dict]:
    lines, cols = _read_csv(path)
    base = path.parent
    paths, seen = [], {}
    for ln, p in zip(lines, cols["path"]):
        full = Path(p) if Path(p).is_absolute() else base / p
        key = str(full.resolve())
        if key in seen:
            raise DatasetFormatError(path, f"each image once (duplicate path: also on line {seen[key]})", line=ln, got=p)
        seen[key] = ln
        if not full.is_file():
            raise DatasetFormatError(path, f"an existing image file {full} (missing file)", line=ln, got=p)
        paths.append(str(full))
    for name, col in (("id", "id"), ("camera", "camera")):
        for ln, v in zip(lines, cols[col]):
            if not v:
                raise DatasetFormatError(path, f"a non-empty {name}", line=ln, got=v)
    pids, id_names = _codes(cols["id"], camera=False)
    cams, cam_names = _codes(cols["camera"], camera=True)
    times = np.full(len(paths), MISSING, np.int64)
    for i, (ln, v) in enumerate(zip(lines, cols.get("timestamp", [""] * len(paths)))):
        if v:
            if not _INT.match(v):
                raise DatasetFormatError(path, "an integer timestamp (or nothing)", line=ln, got=v)
            times[i] = int(v)
    split = None
    if "split" in cols:
        for ln, v in zip(lines, cols["split"]):
            if v.lower() not in SPLITS:
                raise DatasetFormatError(path, f"a split value of {', '.join(SPLITS)} (unknown split value)",
                                         line=ln, got=v)
        split = np.array([SPLITS.index(v.lower()) for v in cols["split"]], np.int64)
    attributes = {}
    for col in (c for c in cols if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS):
        known = [i for i, v in enumerate(cols[col]) if v]
        values = np.full(len(paths), MISSING, np.int64)
        if known:
            values[known] = _codes([cols[col][i] for i in known], camera=False)[0]
        attributes[col] = values
    names = {"ids": len(id_names), "cameras": len(cam_names)}
    return Split(paths, pids, cams, timestamps=times, attributes=attributes), [(path, ln) for ln in lines], split, names


def _from_folders(root: Path, camera_regex: str) -> tuple[Split, list[Origin], dict]:
    try:
        pat = re.compile(camera_regex)
    except re.error as e:
        raise ValueError(f"option camera_regex={camera_regex!r}: not a regular expression ({e})") from None
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, ids, cams = [], [], []
    for d in folders:
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                m = pat.search(f.name)
                g = (m.groupdict().get("cam") or (m.group(1) if m.groups() else None)) if m else None
                paths.append(str(f))
                ids.append(d.name)
                cams.append(int(g) if g is not None and g.isdigit() else MISSING)
    if not paths:
        raise DatasetFormatError(root, "identity folders ROOT/<id>/ holding images (or an annotations CSV)",
                                 got="no image in any sub-folder")
    pids, id_names = _codes(ids, camera=False)
    return Split(paths, pids, np.array(cams, np.int64)), [(Path(p).parent, None) for p in paths], \
        {"ids": len(id_names), "cameras": 0}


def _auto_split(split: Split, seed: int, test_ids: float, where: Path) -> np.ndarray:
    """Seeded split codes (0 train, 1 query, 2 gallery): held-out ids, one query per held-out id and camera."""
    ids = np.unique(split.pids)
    if ids.size < 2:
        raise DatasetFormatError(where, "at least 2 identities for an automatic train/test split (folders: one "
                                 "sub-folder per identity, ROOT/<id>/<image>)", got=f"{ids.size} identity")
    n_test = int(np.clip(round(ids.size * test_ids), 1, ids.size - 1))
    rng = np.random.default_rng([seed, 22])
    held = set(rng.choice(ids, n_test, replace=False).tolist())
    codes = np.zeros(len(split), np.int64)
    for pid in sorted(held):
        rows = np.flatnonzero(split.pids == pid)
        codes[rows] = 2
        if rows.size < 2:
            continue  # a single image: gallery only (a query needs a gallery image of its identity)
        for cam in np.unique(split.camids[rows]):
            in_cam = rows[split.camids[rows] == cam]
            if in_cam.size == rows.size:  # the only camera: keep at least one gallery image
                in_cam = in_cam[: max(1, in_cam.size - 1)]
            codes[in_cam[int(rng.integers(in_cam.size))]] = 1
    return codes


def load_custom(root: str | Path, *, layout: str = "auto", annotations: str = DEFAULT_CSV,
                camera_regex: str = DEFAULT_CAMERA_REGEX, split_seed: int = 0, test_ids: float = 0.5,
                verify_images: str = "none", on_corrupt: str = "error") -> ReIDDataset:
    """Parse your own dataset (see the module docstring).

    Args:
        root: the dataset folder.
        layout: ``auto`` (the CSV when ``root/annotations`` exists, else folders), ``csv`` or ``folders``.
        annotations: the CSV's file name under ``root`` (or an absolute path).
        camera_regex: folders layout: camera id from the file name (group ``cam`` or the first group).
        split_seed: seed of the automatic split (no ``split`` column, or folders).
        test_ids: fraction of the identities held out for query/gallery by the automatic split.
        verify_images, on_corrupt: as for every parser (``none|header|full``, ``error|skip``).
    """
    check_verify_options(verify_images, on_corrupt)
    check_choice("layout", layout, LAYOUTS)
    if not 0.0 < float(test_ids) < 1.0:
        raise ValueError(f"option test_ids={test_ids!r}: expected a fraction in (0, 1)")
    root = require_dir(Path(root).expanduser().absolute(), "the custom dataset folder")
    csv_path = Path(annotations) if Path(annotations).is_absolute() else root / annotations
    use_csv = layout == "csv" or (layout == "auto" and csv_path.is_file())
    diagnostics: dict = {"layout": "csv" if use_csv else "folders"}
    if use_csv:
        if not csv_path.is_file():
            raise DatasetFormatError(csv_path, "the annotations CSV path,id,camera[,timestamp][,split] (not found)")
        table, origins, codes, named = _from_csv(csv_path)
        diagnostics["annotations"] = str(csv_path)
        diagnostics["annotations_sha256"] = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    else:
        table, origins, named = _from_folders(root, camera_regex)
        codes = None
        diagnostics["camera_regex"] = camera_regex
        diagnostics["images_without_camera"] = int((table.camids == MISSING).sum())
    diagnostics["string_labels_numbered"] = named
    warnings: list[str] = []
    if codes is None:
        codes = _auto_split(table, int(split_seed), float(test_ids), csv_path if use_csv else root)
        diagnostics["split"] = {"mode": "auto", "seed": int(split_seed), "test_ids": float(test_ids)}
    else:
        diagnostics["split"] = {"mode": "given"}
    splits = {}
    for i, name in enumerate(SPLITS):
        rows = np.flatnonzero(codes == i)
        splits[name] = verify_split(table.subset(rows), [origins[r] for r in rows], name, verify_images,
                                    on_corrupt, warnings)
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise DatasetFormatError(csv_path if use_csv else root, f"at least one {name} image", got="none")
    orphan = np.setdiff1d(np.unique(splits["query"].pids), np.unique(splits["gallery"].pids))
    if orphan.size:
        row = int(np.flatnonzero(np.isin(table.pids, orphan[:1]) & (codes == 1))[0])
        src, line = origins[row]
        raise DatasetFormatError(src, f"a gallery image of every query identity (query id without gallery: "
                                 f"{orphan.size} identities)", line=line, got=Path(table.paths[row]).name)
    classes = {k: int(v.max(initial=MISSING)) + 1 for k, v in table.attributes.items()}
    return ReIDDataset(name="custom", root=root, train=splits["train"], query=splits["query"],
                       gallery=splits["gallery"], protocol="image", attribute_classes=classes, warnings=warnings,
                       diagnostics=diagnostics)
