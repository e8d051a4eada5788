"""VERI-Wild parser (Lou et al., CVPR 2019) and its 2.0 test set (Bai et al., TPAMI 2021).

VERI-Wild (``VERI-Wild/``, as released and as FastReID ``fastreid/data/datasets/veriwild.py`` reads it):
``images/<vid>/<imgid>.jpg``; ``train_test_split/train_list.txt``, ``test_<N>.txt`` (gallery) and
``test_<N>_query.txt`` for N = 3000, 5000, 10000, one ``<vid>/<imgid>`` per line; and
``train_test_split/vehicle_info.txt``: a header line (``id/image;Camera ID;Time;Model;Type;Color``,
the column names PVEN's ``preprocess_veriwild.py`` indexes), then ``<vid>/<imgid>;camera;time;model;type;colour``
per image. Every field is read: the camera (junk rule), the time (seconds, for the time-window
post-processing), and model / type / colour as attribute labels (names, numbered in sorted order; the
names are kept in ``attribute_names``). Copies without the header line are read too (FastReID issue
#661: a header-less copy loses its first image when the header is skipped unconditionally).

Protocol: image-to-image; a gallery image of the query's id from the query's camera is junk (the dataset's
README "Test" section and ``test-code/READ ME.txt``). A query image also listed in ``test_<N>.txt`` is
removed from the gallery (counted in ``diagnostics``): under the junk rule it never counts anyway.

VERI-Wild 2.0 (``version=2``): the same training set, a new test set from other cameras, released as
``test_split/{A,B,All}_{query,gallery}.txt`` with ``<relative image path> <vid>`` per line (PVEN
``preprocess_veriwild2.py``; one script names the folder ``test_split_V2/``). The test lists carry no camera
(both peers give every test image one camera): no junk rule (``camids`` MISSING). The relative path is
resolved against the 2.0 root or, as PVEN joins it, against ``<root>/<query|gallery>/``.
"""

from __future__ import annotations

import calendar
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vreid_lightning.errors import ConfigError

from ._io import DirCache, missing_image, parse_camera, read_rows, require_dir, require_file, resolve_root
from ._verify import Origin, check_verify_options, verify_split
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["load_veriwild", "veriwild_test_sets", "read_vehicle_info", "parse_time", "TEST_SIZES",
           "V2_SUBSETS", "ATTRIBUTES"]

logger = logging.getLogger(__name__)

TEST_SIZES = (3000, 5000, 10000)  # small / medium / large (CVPR 2019, Table 2)
V2_SUBSETS = ("A", "B", "All")    # VERI-Wild 2.0 test subsets (PVEN preprocess_veriwild2.py)
ATTRIBUTES = ("model", "type", "colour")  # vehicle_info.txt fields 4-6, in file order
_SUBFOLDERS = ("VERI-Wild", "VeRi-Wild", "VERI_Wild", "veri-wild", "veriwild", "VeRI-Wild")
_V2_SUBFOLDERS = ("VERI-Wild2", "VeRI-Wild2", "VERI-Wild2.0", "VERI-Wild_2.0", "veriwild2", "v2.0")
_V2_SPLIT_DIRS = ("test_split", "test_split_V2")
_KEY = re.compile(r"^(\d+)/(\d+)(?:\.jpe?g)?$", re.IGNORECASE)
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S.%f",
                 "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%S")
_DATETIME = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_INFO_FIELDS = 6


def parse_time(token: str) -> int | None:
    """Seconds from ``token``: an integer (seconds or frame), or a date-time (read as UTC); None if unreadable.

    The release's time format is not pinned down by any public parser (the peers keep it as a string),
    so every common form is accepted.
    """
    text = token.strip()
    if re.fullmatch(r"\d+", text) and len(text) != 14:
        return int(text)
    fast = _DATETIME.fullmatch(text)  # the common form without strptime (416,314 lines)
    if fast is not None:
        try:
            return calendar.timegm(tuple(int(g) for g in fast.groups()) + (0, 0, 0))
        except (ValueError, OverflowError):
            return None
    for fmt in _TIME_FORMATS:
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp())
        except ValueError:
            continue
    return None


def _decode(path: Path, warnings: list[str]) -> str:
    """UTF-8 text (BOM stripped); a non-UTF-8 file is read as GB18030 (Chinese names) and said so once."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise DatasetFormatError(path, "UTF-8 or GB18030 text", line=line) from None
        warnings.append(f"{path.name}: not UTF-8, read as GB18030")
        return text


class VehicleInfo:
    """``vehicle_info.txt`` as columns keyed by ``"<vid>/<imgid>"``.

    Attributes:
        path: the file read. header: the header line, or None for a header-less copy.
        row: key -> row index. camids, times: int arrays (time MISSING when the field is empty).
        labels: attribute -> int array (class ids, MISSING for an empty field).
        names: attribute -> {class id: name}. duplicates: identical repeated lines (ignored).
        empty_times: lines whose time field is empty.
    """

    def __init__(self, path: Path, warnings: list[str]) -> None:
        self.path = path
        self.header: str | None = None
        self.row: dict[str, int] = {}
        self.duplicates = 0
        cams: list[int] = []
        times: list[int] = []
        raw: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
        lines: list[int] = []
        self.empty_times = 0
        for number, line in enumerate(_decode(path, warnings).splitlines(), 1):
            text = line.strip()
            if not text:
                continue
            fields = [f.strip() for f in text.split(";")]
            match = _KEY.match(fields[0])
            if match is None and self.header is None and not self.row:
                self.header = text  # the header line (absent in some copies)
                continue
            if match is None or len(fields) != _INFO_FIELDS:
                raise DatasetFormatError(path, "'<vid>/<imgid>;camera;time;model;type;colour' (6 fields separated by "
                                         "';')", line=number, got=text)
            key = f"{int(match.group(1))}/{match.group(2)}"
            camera = parse_camera(fields[1], path, number)
            when = parse_time(fields[2]) if fields[2] else MISSING
            if when is None:
                raise DatasetFormatError(path, "a time such as '2018-03-11 13:01:07' or an integer in field 3",
                                         line=number, got=fields[2])
            self.empty_times += when == MISSING
            if key in self.row:
                i = self.row[key]
                if (cams[i], times[i], *(raw[a][i] for a in ATTRIBUTES)) != (camera, when, *fields[3:]):
                    raise DatasetFormatError(path, f"one line per image ({key} was given other values on line "
                                             f"{lines[i]})", line=number, got=text)
                self.duplicates += 1
                continue
            self.row[key] = len(cams)
            lines.append(number)
            cams.append(camera)
            times.append(when)
            for a, value in zip(ATTRIBUTES, fields[3:]):
                raw[a].append(value)
        if not self.row:
            raise DatasetFormatError(path, "at least one '<vid>/<imgid>;camera;time;model;type;colour' line")
        self.camids = np.asarray(cams, np.int64)
        self.times = np.asarray(times, np.int64)
        self.labels: dict[str, np.ndarray] = {}
        self.names: dict[str, dict[int, str]] = {}
        for a in ATTRIBUTES:
            values = np.asarray(raw[a], dtype=object)
            names = sorted({v for v in raw[a] if v})
            code = {n: i for i, n in enumerate(names)}
            self.labels[a] = np.fromiter((code.get(v, MISSING) for v in values), np.int64, len(values))
            self.names[a] = dict(enumerate(names))
        if self.duplicates:
            warnings.append(f"{path.name}: {self.duplicates} repeated identical line(s) ignored")
        if self.empty_times:
            warnings.append(f"{path.name}: {self.empty_times} line(s) with an empty time (timestamp MISSING)")
        if self.header is None:
            warnings.append(f"{path.name}: no header line (read from line 1)")


def read_vehicle_info(path: str | Path) -> VehicleInfo:
    """Parse one ``vehicle_info.txt`` (errors name the file and line)."""
    return VehicleInfo(Path(path), [])


def _find_info(root: Path) -> Path:
    for candidate in (root / "train_test_split" / "vehicle_info.txt", root / "vehicle_info.txt"):
        if candidate.is_file():
            return candidate
    raise DatasetFormatError(root / "train_test_split" / "vehicle_info.txt",
                             "the VERI-Wild annotation file vehicle_info.txt (not found; also looked in the root)")


def _read_list(list_path: Path, image_dir: Path, info: VehicleInfo, cache: DirCache,
               counts: dict[str, int]) -> tuple[Split, list[Origin]]:
    """A ``<vid>/<imgid>`` list joined with ``vehicle_info.txt``."""
    rows = read_rows(list_path, expected="'<vid>/<imgid>' per line")
    paths, index, origins, pids = [], [], [], []
    for line, tokens in rows:
        match = _KEY.match(tokens[0])
        if match is None:
            raise DatasetFormatError(list_path, "'<vid>/<imgid>' per line, e.g. '00001/000001'", line=line,
                                     got=" ".join(tokens))
        counts["extra_fields"] += len(tokens) > 1
        folder, stem = match.group(1), match.group(2)
        key = f"{int(folder)}/{stem}"
        i = info.row.get(key)
        if i is None:
            raise DatasetFormatError(list_path, f"every listed image in {info.path} ({folder}/{stem} has no line "
                                     "there)", line=line, got=tokens[0])
        name = f"{stem}.jpg"
        if name not in cache[image_dir / folder]:
            raise missing_image(list_path, line, image_dir / folder / name)
        paths.append(str(image_dir / folder / name))
        pids.append(int(folder))
        index.append(i)
        origins.append((list_path, line))
    idx = np.asarray(index, np.int64)
    split = Split(paths=paths, pids=pids, camids=info.camids[idx], timestamps=info.times[idx],
                  attributes={a: info.labels[a][idx] for a in ATTRIBUTES})
    return split, origins


def _test_size(value: int | str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"veriwild option test_size={value!r}: expected one of {list(TEST_SIZES)}") from None


def _v2_root(root: Path, v2_root: str | Path | None) -> Path:
    """Folder holding VERI-Wild 2.0's ``test_split/``: ``v2_root``, the VERI-Wild root, or a subfolder of it."""
    bases = [Path(v2_root).expanduser()] if v2_root else [root, *(root / s for s in _V2_SUBFOLDERS),
                                                          *(root.parent / s for s in _V2_SUBFOLDERS)]
    for base in bases:
        for sub in _V2_SPLIT_DIRS:
            if (base / sub).is_dir():
                return base / sub
    where = bases[0]
    raise DatasetFormatError(where / "test_split", "the VERI-Wild 2.0 list folder test_split/ (not found; set "
                             "dataset_options.v2_root to the 2.0 folder)")


def _read_v2_list(list_path: Path, base: Path, phase: str) -> tuple[Split, list[Origin]]:
    """A 2.0 ``<relative path> <vid>`` list; paths against ``base`` or ``base/<phase>`` (PVEN)."""
    rows = read_rows(list_path, ncols=2, expected="'<relative image path> <vehicle id>' per line")
    if not rows:
        raise DatasetFormatError(list_path, "at least one '<relative image path> <vehicle id>' line")
    first = rows[0][1][0].replace("\\", "/")
    prefix = next((p for p in (base, base / phase) if (p / first).is_file()), None)
    if prefix is None:
        raise missing_image(list_path, rows[0][0], base / first)
    cache = DirCache()
    paths, pids, origins = [], [], []
    for line, (rel, vid) in rows:
        path = prefix / rel.replace("\\", "/")
        if path.name not in cache[path.parent]:
            raise missing_image(list_path, line, path)
        if not re.fullmatch(r"[+-]?\d+", vid):
            raise DatasetFormatError(list_path, "an integer vehicle id in the second field", line=line, got=vid)
        paths.append(str(path))
        pids.append(int(vid))
        origins.append((list_path, line))
    n = len(paths)
    return Split(paths=paths, pids=pids, camids=np.full(n, MISSING, np.int64)), origins


def load_veriwild(root: str | Path, *, version: int = 1, test_size: int | str = 10000, subset: str = "All",
                  v2_root: str | None = None, verify_images: str = "none",
                  on_corrupt: str = "error") -> ReIDDataset:
    """Parse a VERI-Wild folder (and, with ``version=2``, the VERI-Wild 2.0 test set).

    Args:
        root: ``VERI-Wild/`` (or a folder holding it).
        version: 1 (CVPR 2019 test sets) or 2 (VERI-Wild 2.0 test set, same training set).
        test_size: version 1's test set: 3000 (small), 5000 (medium) or 10000 (large).
        subset: version 2's test subset: ``A``, ``B`` or ``All``.
        v2_root: the VERI-Wild 2.0 folder (default: ``root`` or a ``VERI-Wild2``-like folder beside/inside it).
        verify_images, on_corrupt: see ``_verify``.

    Returns:
        ``train``, ``query``, ``gallery``; ``protocol="image"``; ``diagnostics`` with the test set read.
    """
    check_verify_options(verify_images, on_corrupt)
    if int(version) not in (1, 2):
        raise ConfigError(f"veriwild option version={version!r}: expected 1 (CVPR 2019) or 2 (VERI-Wild 2.0)")
    root = resolve_root(root, ("train_test_split",), _SUBFOLDERS)
    image_dir = require_dir(root / "images", "the VERI-Wild image folder images/")
    split_dir = require_dir(root / "train_test_split", "the VERI-Wild list folder train_test_split/")
    warnings: list[str] = []
    info = VehicleInfo(_find_info(root), warnings)
    cache = DirCache()
    counts = {"extra_fields": 0}
    train_path = require_file(split_dir / "train_list.txt", "the VERI-Wild training list")
    parsed = {"train": _read_list(train_path, image_dir, info, cache, counts)}
    diagnostics: dict = {"vehicle_info": {"file": str(info.path), "lines": len(info.row),
                                          "header": info.header, "empty_times": info.empty_times,
                                          "duplicate_lines": info.duplicates}}
    if int(version) == 1:
        size = _test_size(test_size)
        gallery_path = split_dir / f"test_{size}.txt"
        query_path = split_dir / f"test_{size}_query.txt"
        if not gallery_path.is_file():
            found = sorted(int(m.group(1)) for p in split_dir.iterdir()
                           if (m := re.fullmatch(r"test_(\d+)\.txt", p.name)))
            raise DatasetFormatError(gallery_path, f"the gallery list of test size {size} (not found; test sizes "
                                     f"present: {found or 'none'}; the release has {list(TEST_SIZES)})")
        require_file(query_path, f"the query list of test size {size}")
        parsed["query"] = _read_list(query_path, image_dir, info, cache, counts)
        gallery, origins = _read_list(gallery_path, image_dir, info, cache, counts)
        queries = set(parsed["query"][0].paths)
        keep = np.array([p not in queries for p in gallery.paths], dtype=bool)
        diagnostics["test_set"] = {"version": 1, "test_size": size, "gallery_list_lines": len(gallery),
                                   "query_images_in_gallery_list": int((~keep).sum())}
        if not keep.all():
            gallery = gallery.subset(np.flatnonzero(keep))
            origins = [o for o, k in zip(origins, keep) if k]
        parsed["gallery"] = (gallery, origins)
    else:
        if subset not in V2_SUBSETS:
            raise ConfigError(f"veriwild option subset={subset!r}: expected one of {list(V2_SUBSETS)}")
        v2_dir = _v2_root(root, v2_root)
        for phase in ("query", "gallery"):
            path = require_file(v2_dir / f"{subset}_{phase}.txt", f"the VERI-Wild 2.0 {subset} {phase} list")
            parsed[phase] = _read_v2_list(path, v2_dir.parent, phase)
        overlap = len(set(parsed["query"][0].paths) & set(parsed["gallery"][0].paths))
        diagnostics["test_set"] = {"version": 2, "subset": subset, "folder": str(v2_dir),
                                   "query_images_in_gallery_list": overlap}
        if overlap:
            warnings.append(f"VERI-Wild 2.0 {subset}: {overlap} query image(s) also in the gallery list (kept: "
                            "with no camera there is no junk rule to remove them)")
    if counts["extra_fields"]:
        warnings.append(f"{counts['extra_fields']} list line(s) with fields after '<vid>/<imgid>' (ignored; "
                        "a re-distributed copy, not the release's format)")
    splits = {k: verify_split(s, o, k, verify_images, on_corrupt, warnings) for k, (s, o) in parsed.items()}
    classes = {a: max(len(info.names[a]), 1) for a in ATTRIBUTES}
    if int(version) == 2:
        for s in ("query", "gallery"):
            for a in ATTRIBUTES:
                splits[s].attributes[a] = np.full(len(splits[s]), MISSING, np.int64)
    return ReIDDataset(name="veriwild", root=root, train=splits["train"], query=splits["query"],
                       gallery=splits["gallery"], protocol="image", attribute_classes=classes, warnings=warnings,
                       attribute_names=dict(info.names), diagnostics=diagnostics)


def _count_list(path: Path, column: int = 0, sep: str = "/") -> dict[str, int]:
    rows = read_rows(path)
    ids = {t[1] if column else t[0].split(sep, 1)[0] for _, t in rows if t}
    return {"images": len(rows), "ids": len(ids)}


def veriwild_test_sets(dataset: ReIDDataset) -> dict:
    """Sizes of every test set present beside ``dataset`` (v1 test sizes and the 2.0 subsets), from the lists only."""
    root = Path(dataset.root)
    split_dir = root / "train_test_split"
    out: dict = {}
    for size in sorted({*TEST_SIZES, *(int(m.group(1)) for p in split_dir.iterdir()
                                        if (m := re.fullmatch(r"test_(\d+)\.txt", p.name)))}):
        gallery, query = split_dir / f"test_{size}.txt", split_dir / f"test_{size}_query.txt"
        if gallery.is_file() and query.is_file():
            out[str(size)] = {"query": _count_list(query), "gallery_list": _count_list(gallery)}
    try:
        v2_dir = _v2_root(root, None)
    except DatasetFormatError:
        v2_dir = None
    if v2_dir is not None:
        for subset in V2_SUBSETS:
            query, gallery = v2_dir / f"{subset}_query.txt", v2_dir / f"{subset}_gallery.txt"
            if query.is_file() and gallery.is_file():
                out[f"2.0-{subset}"] = {"query": _count_list(query, 1), "gallery_list": _count_list(gallery, 1)}
    return out
