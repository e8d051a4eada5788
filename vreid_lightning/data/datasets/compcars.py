"""CompCars web-nature parser (Yang et al., CVPR 2015), used by VehicleNet as extra training data.

Reads ``data/train_test_split/classification/{train,test}.txt`` (relative paths
``<make>/<model>/<year>/<hex>.jpg``), the matching ``data/label/.../<hex>.txt`` (viewpoint, box count,
``x1 y1 x2 y2`` 1-based inclusive, stored 0-based with exclusive end in ``Split.boxes``) and
``data/misc/attributes.txt`` (``type`` per model; 0 = unknown -> MISSING).

Classes follow VehicleNet (Zheng et al. TMM 2020, Table I): each model of each year is its own class,
``pid = model_id * 10000 + year`` (``unknown`` year -> ``model_id * 10000``), stable whatever files are
present. Attributes: ``viewpoint`` (1 front ... 5 rear-side; -1 uncertain -> MISSING), ``make``,
``model``, ``type``. No cameras. ``protocol="none"``: CompCars is training data only; ``use_all=True``
(what the VehicleNet merge uses) puts train.txt and test.txt into ``train``; otherwise ``train`` is
train.txt and test.txt is only counted in ``warnings``. Options, each counted in ``warnings`` when it
drops rows: ``unknown_year`` (``class`` keeps such images as a class per model, ``skip`` drops them),
``missing_files`` (listed image or its label file absent: ``skip``, the default, since the released
split lists name files the release lacks, or ``error``), ``invalid_boxes``
(empty box or box count 0: ``skip`` as VehicleNet does, ``error``, or ``keep`` with box MISSING =
whole image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import DirCache, check_choice, lookup, missing_image, parse_int, read_rows, require_dir, require_file, \
    resolve_root
from ._verify import Origin, check_verify_options, verify_split
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["load_compcars", "class_id", "YEAR_FACTOR", "UNKNOWN_YEAR", "COMPCARS_TYPES", "COMPCARS_VIEWPOINTS"]

FIRST_SHOWN = 3  # names shown in a warning about skipped rows
YEAR_FACTOR = 10000  # pid = model_id * YEAR_FACTOR + year
UNKNOWN_YEAR = 0
COMPCARS_TYPES = 12  # MPV ... convertible, 1-based (car_type.mat)
COMPCARS_VIEWPOINTS = 5  # 1 front ... 5 rear-side
_SUBFOLDERS = ("data", "CompCars/data", "compcars/data")
_PREFIXES = ("data/image/", "image/", "./")


def class_id(model_id: int | np.ndarray, year: int | np.ndarray) -> int | np.ndarray:
    """VehicleNet class of a model in a year (``UNKNOWN_YEAR`` for ``unknown``)."""
    return model_id * YEAR_FACTOR + year


def _read_label(path: Path) -> tuple[int, tuple[int, int, int, int] | None]:
    """(viewpoint, 0-based exclusive-end box or None when the box is empty / count is 0)."""
    rows = read_rows(path)
    if len(rows) < 2:
        raise DatasetFormatError(path, "3 lines: viewpoint, box count, 'x1 y1 x2 y2'", line=len(rows) + 1,
                                 got="end of file")
    (l1, t1), (l2, t2) = rows[0], rows[1]
    viewpoint = parse_int(" ".join(t1), path, l1, "one viewpoint (-1, 1-5) on line 1")
    count = parse_int(" ".join(t2), path, l2, "one box count on line 2")
    if count < 1:
        return viewpoint, None
    if len(rows) < 3 or len(rows[2][1]) != 4:
        line = rows[2][0] if len(rows) >= 3 else l2 + 1
        raise DatasetFormatError(path, "'x1 y1 x2 y2' (4 integers) on line 3", line=line,
                                 got=" ".join(rows[2][1]) if len(rows) >= 3 else "end of file")
    line = rows[2][0]
    x1, y1, x2, y2 = (parse_int(t, path, line, "integer box coordinates 'x1 y1 x2 y2'") for t in rows[2][1])
    box = (max(x1 - 1, 0), max(y1 - 1, 0), x2, y2)  # 1-based inclusive -> 0-based, exclusive end
    return viewpoint, (box if box[2] > box[0] and box[3] > box[1] else None)


def _read_types(path: Path) -> np.ndarray:
    """Dense lookup ``table[model id] -> type`` from attributes.txt (0 -> MISSING)."""
    rows = read_rows(path)
    type_col = 5
    if rows and not rows[0][1][0].lstrip("+-").isdigit():
        header = [h.lower() for h in rows[0][1]]
        if "type" not in header:
            raise DatasetFormatError(path, "a header naming a 'type' column", line=rows[0][0], got=" ".join(header))
        type_col, rows = header.index("type"), rows[1:]
    pairs = []
    for line, tokens in rows:
        if len(tokens) <= type_col:
            raise DatasetFormatError(path, f"at least {type_col + 1} columns (model_id ... type)", line=line,
                                     got=" ".join(tokens))
        pairs.append((parse_int(tokens[0], path, line, "an integer model_id"),
                      parse_int(tokens[type_col], path, line, "an integer type")))
    table_pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    table = np.full(int(table_pairs[:, 0].max(initial=-1)) + 1, MISSING, np.int64)
    table[table_pairs[:, 0]] = np.where(table_pairs[:, 1] == 0, MISSING, table_pairs[:, 1])
    return table


class _Reader:
    """Reads split lists under the three row-dropping options, counting what each dropped."""

    def __init__(self, base: Path, unknown_year: str, missing_files: str, invalid_boxes: str) -> None:
        self.base, self.cache = base, DirCache()
        self.unknown_year, self.missing_files, self.invalid_boxes = unknown_year, missing_files, invalid_boxes
        self.dropped: dict[str, list[str]] = {"unknown_year": [], "missing": [], "invalid_box": []}
        self.unknown_kept = 0

    def read(self, list_path: Path) -> tuple[list[str], list[tuple[int, ...]], list[Origin]]:
        paths, rows, origins = [], [], []
        for line, (token,) in read_rows(list_path, ncols=1, expected="one relative image path per line", image_list=True):
            rel = token.replace("\\", "/")
            for prefix in _PREFIXES:
                rel = rel.removeprefix(prefix)
            parts = rel.split("/")
            if len(parts) != 4:
                raise DatasetFormatError(list_path, "a path '<make>/<model>/<year>/<name>.jpg'", line=line, got=token)
            make = parse_int(parts[0], list_path, line, "an integer make id as the 1st path part")
            model = parse_int(parts[1], list_path, line, "an integer model id as the 2nd path part")
            if parts[2].lower() == "unknown":
                year = UNKNOWN_YEAR
                if self.unknown_year == "skip":
                    self.dropped["unknown_year"].append(rel)
                    continue
                self.unknown_kept += 1
            else:
                year = parse_int(parts[2], list_path, line, "a year (or 'unknown') as the 3rd path part")
                if not 0 < year < YEAR_FACTOR:
                    raise DatasetFormatError(list_path, "a year between 1 and 9999", line=line, got=parts[2])
            image = self.base / "image" / rel
            label = self.base / "label" / parts[0] / parts[1] / parts[2] / (Path(parts[3]).stem + ".txt")
            absent = next((p for p in (image, label) if p.name not in self.cache[p.parent]), None)
            if absent is not None:
                if self.missing_files == "error":
                    raise missing_image(list_path, line, absent)
                self.dropped["missing"].append(str(absent))
                continue
            viewpoint, box = _read_label(label)
            if box is None:
                if self.invalid_boxes == "error":
                    raise DatasetFormatError(label, "a non-empty box (x2 > x1, y2 > y1, count >= 1)")
                if self.invalid_boxes == "skip":
                    self.dropped["invalid_box"].append(str(label))
                    continue
                box = (MISSING,) * 4
            paths.append(str(image))
            rows.append((class_id(model, year), make, model, MISSING if viewpoint == -1 else viewpoint, *box))
            origins.append((list_path, line))
        return paths, rows, origins

    def notes(self) -> list[str]:
        what = {"unknown_year": "image(s) of unknown year (unknown_year='skip')",
                "missing": "listed image(s) or label file(s) missing on disk (missing_files='skip')",
                "invalid_box": "image(s) with an empty box or box count 0 (invalid_boxes='skip')"}
        out = [f"skipped {len(v)} {what[k]}; first: {', '.join(v[:FIRST_SHOWN])}" for k, v in self.dropped.items() if v]
        if self.unknown_kept:
            out.append(f"{self.unknown_kept} image(s) of unknown year kept as one class per model "
                       "(unknown_year='class')")
        return out

    def diagnostics(self) -> dict:
        """Counts for inspect's JSON and results.json: ``missing_files`` (and the first names), skips."""
        return {"missing_files": len(self.dropped["missing"]),
                "missing_files_first": self.dropped["missing"][:FIRST_SHOWN],
                "skipped_unknown_year": len(self.dropped["unknown_year"]),
                "skipped_invalid_boxes": len(self.dropped["invalid_box"]),
                "unknown_year_kept": self.unknown_kept}


def load_compcars(root: str | Path, *, use_all: bool = False, unknown_year: str = "class",
                  missing_files: str = "skip", invalid_boxes: str = "skip", verify_images: str = "none",
                  on_corrupt: str = "error") -> ReIDDataset:
    """Parse the CompCars web-nature data.

    Args:
        root: the CompCars folder holding ``data/`` (or ``data/`` itself).
        use_all: train on train.txt and test.txt (VehicleNet merge) instead of train.txt only.
        unknown_year: ``class`` or ``skip``.
        missing_files: ``skip`` (default: the released split lists name some files the release does not
            contain; they are skipped, counted in a warning with the first few names and in
            ``diagnostics["missing_files"]``) or ``error`` (strict: stop at the first one).
        invalid_boxes: ``skip`` (VehicleNet), ``error`` or ``keep``.
        verify_images: ``none`` | ``header`` | ``full``.
        on_corrupt: ``error`` | ``skip``.
    """
    check_verify_options(verify_images, on_corrupt)
    check_choice("unknown_year", unknown_year, ("class", "skip"))
    check_choice("missing_files", missing_files, ("error", "skip"))
    check_choice("invalid_boxes", invalid_boxes, ("skip", "error", "keep"))
    base = resolve_root(root, ("image", "train_test_split"), _SUBFOLDERS)
    require_dir(base / "image", "the CompCars image folder data/image/")
    require_dir(base / "label", "the CompCars label folder data/label/")
    split_dir = require_dir(base / "train_test_split" / "classification",
                            "the CompCars split folder data/train_test_split/classification/")
    lists = [require_file(split_dir / "train.txt", "the CompCars training list")]
    warnings: list[str] = []
    test_path = split_dir / "test.txt"
    if use_all:
        lists.append(require_file(test_path, "the CompCars test list (use_all=True)"))
    elif test_path.is_file():
        warnings.append(f"test.txt: {len(read_rows(test_path))} listed image(s) not loaded (use_all=False)")

    reader = _Reader(base, unknown_year, missing_files, invalid_boxes)
    paths, rows, origins = [], [], []
    for list_path in lists:
        p, r, o = reader.read(list_path)
        paths += p
        rows += r
        origins += o
    warnings += reader.notes()
    table = np.array(rows, dtype=np.int64).reshape(-1, 8)
    attributes = {"viewpoint": table[:, 3], "make": table[:, 1], "model": table[:, 2]}
    classes = {"viewpoint": max(COMPCARS_VIEWPOINTS, int(table[:, 3].max(initial=0))) + 1,
               "make": int(table[:, 1].max(initial=0)) + 1, "model": int(table[:, 2].max(initial=0)) + 1}
    types_path = base / "misc" / "attributes.txt"
    if types_path.is_file():
        types = _read_types(types_path)
        attributes["type"] = lookup(types, table[:, 2])
        classes["type"] = max(COMPCARS_TYPES, int(types.max(initial=0))) + 1
    else:
        warnings.append(f"{types_path} not found: no type attribute")
    train = Split(paths=paths, pids=table[:, 0], camids=np.full(len(paths), MISSING, np.int64),
                  attributes=attributes, boxes=table[:, 4:8])
    train = verify_split(train, origins, "train", verify_images, on_corrupt, warnings)
    return ReIDDataset(name="compcars", root=base, train=train, protocol="none", attribute_classes=classes,
                       warnings=warnings, diagnostics=reader.diagnostics())
