"""VehicleID parser (Liu et al., CVPR 2016): the released ``VehicleID_V1.0/`` folder.

Reads ``train_test_split/train_list.txt`` and every ``test_list_<N>.txt`` present (800, 1600, 2400 and,
when shipped, 3200, 6000, 13164) into ``test_lists["<N>"]``. List lines are ``<image stem> <vehicle id>``;
the stem stays a string (``image/<stem>.jpg``, zero padding kept) and the id is an int. The ``model``
and ``colour`` attributes come from ``attribute/model_attr.txt`` and ``color_attr.txt``
(``<vehicle id> <attribute id>``) joined by vehicle id; vehicles without a row get ``MISSING`` and are
kept. Attribute names come from ``attribute/model_names.txt`` (UTF-8, Chinese model names) and
``color_names.txt`` (CRLF endings), both ``<name> <id>`` per line (name first, as released; ``<id>
<name>`` is read too), into ``ReIDDataset.attribute_names``. There are no cameras (``camids`` all
``MISSING``): the protocol (``"vehicleid"``) draws one gallery image per vehicle and applies no junk rule.
:func:`check_img2vid` compares ``attribute/img2vid.txt`` with the lists read (``inspect`` runs it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._io import DirCache, lookup, missing_image, parse_int, read_names, read_rows, require_dir, require_file, \
    resolve_root, unlisted_note
from ._verify import Origin, check_verify_options, verify_split
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["load_vehicleid", "check_img2vid", "read_names", "VEHICLEID_MODELS", "VEHICLEID_COLOURS"]

VEHICLEID_MODELS = 250  # model ids 0-249 (datasets.md section 2)
VEHICLEID_COLOURS = 7  # 0 black ... 6 yellow
_TEST_LIST = re.compile(r"^test_list_(\d+)\.txt$")
_SUBFOLDERS = ("VehicleID_V1.0", "VehicleID", "vehicleid")
_ATTRIBUTES = (("model", "model_attr.txt", VEHICLEID_MODELS), ("colour", "color_attr.txt", VEHICLEID_COLOURS))
_NAMES = (("model", "model_names.txt"), ("colour", "color_names.txt"))
FIRST_SHOWN = 3  # examples shown per finding


def _read_list(list_path: Path, image_dir: Path, present: frozenset[str]) -> tuple[Split, list[Origin]]:
    rows = read_rows(list_path, ncols=2, expected="'<image stem> <vehicle id>' per line", image_list=True)
    paths, pids, origins = [], [], []
    for line, (stem, vid) in rows:
        stem = stem[:-4] if stem.lower().endswith(".jpg") else stem
        pids.append(parse_int(vid, list_path, line, "an integer vehicle id in the second field"))
        if f"{stem}.jpg" not in present:
            raise missing_image(list_path, line, image_dir / f"{stem}.jpg")
        paths.append(str(image_dir / f"{stem}.jpg"))
        origins.append((list_path, line))
    n = len(paths)
    return Split(paths=paths, pids=pids, camids=np.full(n, MISSING, np.int64)), origins


def _read_attribute(path: Path) -> np.ndarray:
    """Dense lookup ``table[vehicle id] -> attribute id`` (``MISSING`` for unlabelled vehicles)."""
    rows = read_rows(path, ncols=2, expected="'<vehicle id> <attribute id>' per line")
    pairs = np.array([(parse_int(v, path, line, "an integer vehicle id"),
                       parse_int(a, path, line, "an integer attribute id")) for line, (v, a) in rows],
                     dtype=np.int64).reshape(-1, 2)
    if (pairs[:, 0] < 0).any():
        line = rows[int(np.flatnonzero(pairs[:, 0] < 0)[0])][0]
        raise DatasetFormatError(path, "a non-negative vehicle id", line=line)
    order = np.argsort(pairs[:, 0], kind="stable")
    ordered = pairs[order]
    conflict = np.flatnonzero((ordered[1:, 0] == ordered[:-1, 0]) & (ordered[1:, 1] != ordered[:-1, 1]))
    if conflict.size:
        k = int(conflict[0])
        vid, before, value = ordered[k, 0], ordered[k, 1], ordered[k + 1, 1]
        raise DatasetFormatError(path, f"one value per vehicle (vehicle {vid} was given {before} before)",
                                 line=rows[int(order[k + 1])][0], got=str(value))
    table = np.full(int(pairs[:, 0].max(initial=-1)) + 1, MISSING, np.int64)
    table[pairs[:, 0]] = pairs[:, 1]
    return table


def check_img2vid(dataset: ReIDDataset) -> dict | None:
    """Compare ``attribute/img2vid.txt`` with the lists of a parsed VehicleID ``dataset``.

    Returns:
        None when the file is absent, else counts: ``lines``, ``images``, ``vehicles`` of img2vid;
        ``listed_images`` checked; ``not_in_img2vid`` (listed images img2vid lacks);
        ``vehicle_disagreements`` (listed with another vehicle id than img2vid gives), with the first
        few as ``"<stem>: list <id> / img2vid <id>"``; ``conflicting_lines`` (an image given two ids in
        img2vid); ``unlisted_images`` (in img2vid, in no list read); ``agree`` (no disagreement).
    """
    path = Path(dataset.root) / "attribute" / "img2vid.txt"
    if not path.is_file():
        return None
    rows = read_rows(path, ncols=2, expected="'<image stem> <vehicle id>' per line")
    vid_of: dict[str, int] = {}
    conflicting = 0
    for line, (stem, vid) in rows:
        value = parse_int(vid, path, line, "an integer vehicle id in the second field")
        if vid_of.setdefault(stem, value) != value:
            conflicting += 1
    listed: dict[str, int] = {}
    for split in dataset.splits().values():
        for p, pid in zip(split.paths, split.pids.tolist()):
            listed[Path(p).stem] = int(pid)
    missing = [s for s in listed if s not in vid_of]
    wrong = [s for s, pid in listed.items() if s in vid_of and vid_of[s] != pid]
    out = {"file": str(path), "lines": len(rows), "images": len(vid_of), "vehicles": len(set(vid_of.values())),
           "listed_images": len(listed), "not_in_img2vid": len(missing),
           "vehicle_disagreements": len(wrong),
           "first_disagreements": [f"{s}: list {listed[s]} / img2vid {vid_of[s]}" for s in wrong[:FIRST_SHOWN]],
           "first_not_in_img2vid": missing[:FIRST_SHOWN], "conflicting_lines": conflicting,
           "unlisted_images": len(set(vid_of) - set(listed))}
    out["agree"] = not (missing or wrong or conflicting)
    return out


def load_vehicleid(root: str | Path, *, test_sizes: list[str | int] | None = None, verify_images: str = "none",
                   on_corrupt: str = "error") -> ReIDDataset:
    """Parse a VehicleID folder.

    Args:
        root: ``VehicleID_V1.0/`` (or a folder holding it).
        test_sizes: test lists to read, e.g. ``[800, 1600, 2400]``; default every ``test_list_*.txt`` present.
        verify_images: ``none`` | ``header`` | ``full``.
        on_corrupt: ``error`` | ``skip``.

    Returns:
        ``train`` and ``test_lists`` keyed ``"800"``, ``"1600"`` ...; ``protocol="vehicleid"``.
    """
    check_verify_options(verify_images, on_corrupt)
    root = resolve_root(root, ("train_test_split",), _SUBFOLDERS)
    image_dir = require_dir(root / "image", "the VehicleID image folder image/")
    split_dir = require_dir(root / "train_test_split", "the VehicleID list folder train_test_split/")
    train_path = require_file(split_dir / "train_list.txt", "the VehicleID training list")
    if test_sizes is None:
        found = [m.group(1) for p in split_dir.iterdir() if (m := _TEST_LIST.match(p.name))]
        sizes = sorted(found, key=int)
        if not sizes:
            raise DatasetFormatError(split_dir / "test_list_800.txt", "at least one test_list_<N>.txt (not found)")
    else:
        sizes = [str(int(s)) for s in test_sizes]
    present = DirCache()[image_dir]
    warnings: list[str] = []

    parsed = {"train": _read_list(train_path, image_dir, present)}
    for size in sizes:
        list_path = require_file(split_dir / f"test_list_{size}.txt", f"the VehicleID test list of {size} vehicles")
        parsed[f"test_{size}"] = _read_list(list_path, image_dir, present)
    listed = {Path(p).name for split, _ in parsed.values() for p in split.paths}
    note = unlisted_note(image_dir, present, listed, "the lists read")
    if note:
        warnings.append(note)
    splits = {k: verify_split(s, o, k, verify_images, on_corrupt, warnings) for k, (s, o) in parsed.items()}

    classes: dict[str, int] = {}
    attribute_dir = root / "attribute"
    for key, file_name, known in _ATTRIBUTES:
        path = attribute_dir / file_name
        if not path.is_file():
            warnings.append(f"{path} not found: no {key} attribute")
            continue
        table = _read_attribute(path)
        for split in splits.values():
            split.attributes[key] = lookup(table, split.pids)
        classes[key] = max(known, int(table.max(initial=MISSING)) + 1)
    attribute_names = {key: read_names(attribute_dir / file_name) for key, file_name in _NAMES
                       if (attribute_dir / file_name).is_file()}
    for key, names in attribute_names.items():
        if key in classes and names and max(names) >= classes[key]:
            warnings.append(f"{attribute_dir / dict(_NAMES)[key]}: names ids up to {max(names)}, beyond the "
                            f"{classes[key]} {key} classes")
    return ReIDDataset(name="vehicleid", root=root, train=splits.pop("train"),
                       test_lists={k.removeprefix("test_"): v for k, v in splits.items()},
                       protocol="vehicleid", attribute_classes=classes, warnings=warnings,
                       attribute_names=attribute_names)
