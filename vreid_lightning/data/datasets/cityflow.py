"""CityFlow / AI City Challenge track 2 parser (AIC19, AIC20, AIC21 layouts).

Reads ``image_train/`` labelled by ``train_label.xml`` (gb2312 declaration; ``vehicleID`` parsed as an
int, ``cameraID`` ``c026`` -> 26; ``colorID`` / ``typeID`` of the simulation set become ``colour`` /
``type``). Rows follow ``name_train.txt`` (XML order when that list is absent); train tracks come from
``train_track.txt`` (file names) or ``train_track_id.txt`` (numbers: ``12`` is ``000012.jpg``).

Validation split (VehicleNet, Zheng et al. TMM 2020, Sec. III-A). The public query/test sets are
unlabelled, so a seeded split of the labelled training set is built:

* ``val_ids`` identities (78 of 333) are held out; on a set with fewer than 333 ids the number is
  ``max(1, round(val_fraction * ids))`` (``val_fraction`` = 78/333). Held-out ids are drawn with
  ``numpy.random.default_rng(val_seed)`` among ids seen by at least two cameras (others only when
  too few), so that every query has a true match.
* ``train`` = the images of the other ids.
* ``query`` = per held-out id up to ``queries_per_id`` images (6: 463 queries / 78 ids), one per
  track in a seeded order, then a second per track, and so on (tracks fall back to cameras).
* ``gallery`` = the whole original training set, queries included: each query's own image (and its
  same-camera siblings) is removed from its ranking by the junk rule (same id and same camera).

``val_ids=0`` disables the split (``train`` = every labelled image, no query/gallery): use it when
CityFlow is a training source only. The challenge sets are exposed unlabelled as
``CityFlowDataset.unlabelled_query`` / ``unlabelled_test`` (``pids`` MISSING; cameras from AIC21's
``query_label.xml`` / ``test_label.xml`` when present; test tracks from ``test_track.txt``); they are
not part of ``splits()`` and appear under ``"unlabelled"`` in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import DirCache, IMAGE_SUFFIXES, missing_image, parse_camera, parse_int, read_rows, require_dir, \
    require_file, resolve_root, unlisted_note
from ._verify import Origin, check_verify_options, verify_split
from ._xml import read_label_xml
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["CityFlowDataset", "load_cityflow", "validation_split", "FULL_IDS", "VAL_IDS", "QUERIES_PER_ID"]

FULL_IDS = 333  # CityFlow training ids (VehicleNet Sec. III-A)
VAL_IDS = 78  # held-out validation ids (VehicleNet Sec. III-A)
QUERIES_PER_ID = 6  # 463 validation queries / 78 ids (VehicleNet Sec. III-A)
_SUBFOLDERS = ("AIC20_ReID", "AIC19_ReID", "aic19-track2-reid", "AIC21_Track2_ReID", "AIC20_track2_reid",
               "CityFlow", "cityflow")
_OPTIONAL_ATTRIBUTES = (("colour", "colorid"), ("type", "typeid"))


@dataclass
class CityFlowDataset(ReIDDataset):
    """A :class:`ReIDDataset` with the unlabelled challenge sets and the validation split's record.

    Attributes:
        unlabelled_query: ``image_query/`` rows (``pids`` MISSING), or None when absent.
        unlabelled_test: ``image_test/`` rows (``pids`` MISSING, tracks from ``test_track.txt``).
        validation: how the validation split was drawn (seed, held-out ids, counts); empty when disabled.
    """

    unlabelled_query: Split | None = None
    unlabelled_test: Split | None = None
    validation: dict = field(default_factory=dict)

    def summary(self) -> dict:
        out = super().summary()
        out["validation"] = {k: v for k, v in self.validation.items() if k != "held_out_ids"}
        out["unlabelled"] = {
            name: {"images": len(s), "cameras": s.num_cams,
                   "tracks": int(np.unique(s.tracks[s.tracks != MISSING]).size)}
            for name, s in (("query", self.unlabelled_query), ("test", self.unlabelled_test)) if s is not None
        }
        return out


def _read_labels(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, int], list[str]]:
    """image name -> (pid, camid, *optional attributes), image name -> XML line, attribute names present."""
    items = read_label_xml(path)
    present = [(key, xml) for key, xml in _OPTIONAL_ATTRIBUTES if any(xml in a for _, a in items)]
    labels: dict[str, tuple[int, ...]] = {}
    lines: dict[str, int] = {}
    for line, attrs in items:
        name = attrs.get("imagename", "")
        if not name:
            raise DatasetFormatError(path, "an imageName attribute on every Item", line=line)
        label = (parse_int(attrs.get("vehicleid", ""), path, line, "a vehicleID like '0269'"),
                 parse_camera(attrs.get("cameraid", ""), path, line),
                 *(parse_int(attrs[xml], path, line, f"an integer {xml}") if xml in attrs else MISSING
                   for _, xml in present))
        if labels.setdefault(name, label) != label:
            raise DatasetFormatError(path, f"one label per image (an earlier Item for {name} differs)", line=line)
        lines.setdefault(name, line)
    return labels, lines, [key for key, _ in present]


def _read_train(root: Path, cache: DirCache, warnings: list[str]) -> tuple[Split, list[Origin]]:
    image_dir = require_dir(root / "image_train", "the CityFlow image folder image_train/")
    xml_path = require_file(root / "train_label.xml", "the CityFlow training labels train_label.xml")
    labels, xml_lines, attribute_names = _read_labels(xml_path)
    present = cache[image_dir]
    list_path = root / "name_train.txt"
    if list_path.is_file():
        listed = [(line, t.rsplit("/", 1)[-1]) for line, (t,) in
                  read_rows(list_path, ncols=1, expected="one image file name per line")]
        for line, name in listed:
            if name not in labels:
                raise DatasetFormatError(list_path, "an Item for this image in train_label.xml", line=line, got=name)
        source = list_path
        unlisted = len(set(labels) - {n for _, n in listed})
        if unlisted:
            warnings.append(f"train: {unlisted} Item(s) of train_label.xml are not in name_train.txt (not loaded)")
    else:
        listed = [(xml_lines[name], name) for name in labels]
        source = xml_path
        warnings.append("name_train.txt not found: training rows in train_label.xml order")
    for line, name in listed:
        if name not in present:
            raise missing_image(source, line, image_dir / name)
    note = unlisted_note(image_dir, present, {n for _, n in listed}, source.name)
    if note:
        warnings.append(note)
    table = np.array([labels[name] for _, name in listed], dtype=np.int64).reshape(len(listed), -1)
    split = Split(paths=[str(image_dir / n) for _, n in listed], pids=table[:, 0], camids=table[:, 1],
                  attributes={k: table[:, 2 + i] for i, k in enumerate(attribute_names)})
    return split, [(source, line) for line, _ in listed]


def _read_tracks(path: Path, split: Split, numeric: bool) -> np.ndarray:
    """Per row of ``split``, the index of its line in a ``*_track.txt`` / ``*_track_id.txt`` file."""
    names = [Path(p).name for p in split.paths]
    if numeric:
        row_of = {int(Path(n).stem): i for i, n in enumerate(names) if Path(n).stem.isdigit()}
    else:
        row_of = {n: i for i, n in enumerate(names)}
    tracks = np.full(len(split), MISSING, np.int64)
    expected = "image numbers" if numeric else "image names ending in .jpg"
    for index, (line, tokens) in enumerate(read_rows(path)):
        keys = ([parse_int(t, path, line, "integer image numbers") for t in tokens] if numeric
                else [t for t in tokens if t.lower().endswith(".jpg")])
        if not keys:
            raise DatasetFormatError(path, f"a track line holding {expected}", line=line, got=" ".join(tokens))
        for key in keys:
            row = row_of.get(key)
            if row is None:
                raise DatasetFormatError(path, "track images that are in the split's image list", line=line,
                                         got=str(key))
            if tracks[row] != MISSING:
                raise DatasetFormatError(path, "each image in one track only", line=line, got=str(key))
            tracks[row] = index
    return tracks


def _attach_tracks(root: Path, stem: str, split: Split, warnings: list[str], label: str) -> None:
    for file_name, numeric in ((f"{stem}_track.txt", False), (f"{stem}_track_id.txt", True)):
        if (root / file_name).is_file():
            split.tracks = _read_tracks(root / file_name, split, numeric)
            return
    warnings.append(f"{label}: {stem}_track.txt not found: tracks MISSING")


def _read_unlabelled(root: Path, folder: str, list_name: str, xml_name: str, cache: DirCache,
                     warnings: list[str]) -> tuple[Split, list[Origin]] | None:
    image_dir = root / folder
    if not image_dir.is_dir():
        warnings.append(f"{folder}/ not found: no unlabelled challenge set")
        return None
    present = cache[image_dir]
    list_path = root / list_name
    if list_path.is_file():
        listed = [(line, t.rsplit("/", 1)[-1]) for line, (t,) in
                  read_rows(list_path, ncols=1, expected="one image file name per line")]
        for line, name in listed:
            if name not in present:
                raise missing_image(list_path, line, image_dir / name)
        origins: list[Origin] = [(list_path, line) for line, _ in listed]
    else:
        listed = [(None, n) for n in sorted(present) if n.lower().endswith(IMAGE_SUFFIXES)]
        origins = [(image_dir, None)] * len(listed)
        warnings.append(f"{list_name} not found: {folder}/ rows in sorted file-name order")
    cameras = np.full(len(listed), MISSING, np.int64)
    xml_path = root / xml_name
    if xml_path.is_file():
        camera_of: dict[str, int] = {}
        for line, attrs in read_label_xml(xml_path):
            if "imagename" not in attrs or "cameraid" not in attrs:
                raise DatasetFormatError(xml_path, "imageName and cameraID on every Item", line=line)
            camera_of[attrs["imagename"]] = parse_camera(attrs["cameraid"], xml_path, line)
        cameras = np.array([camera_of.get(n, MISSING) for _, n in listed], dtype=np.int64)
        unknown = int((cameras == MISSING).sum())
        if unknown:
            warnings.append(f"{folder}: {unknown} image(s) have no Item in {xml_name} (camera MISSING)")
    split = Split(paths=[str(image_dir / n) for _, n in listed], pids=np.full(len(listed), MISSING, np.int64),
                  camids=cameras)
    return split, origins


def validation_split(train: Split, num_val: int, seed: int,
                     queries_per_id: int = QUERIES_PER_ID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The VehicleNet-style validation split of a labelled training set (see the module docstring).

    Args:
        train: the whole labelled training set.
        num_val: how many ids to hold out (``1 <= num_val < ids``).
        seed: seed of ``numpy.random.default_rng``.
        queries_per_id: most queries per held-out id.

    Returns:
        (held-out ids sorted, row indices of the reduced train set, row indices of the queries), all
        into ``train``.
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(train.pids)
    pairs = np.unique(np.stack([train.pids, train.camids], axis=1), axis=0)
    cameras_per_id = np.bincount(np.searchsorted(ids, pairs[:, 0]), minlength=ids.size)
    multi, single = ids[cameras_per_id >= 2], ids[cameras_per_id < 2]
    if multi.size >= num_val:
        held = rng.choice(multi, num_val, replace=False)
    else:
        held = np.concatenate([multi, rng.choice(single, num_val - multi.size, replace=False)])
    held = np.sort(held)
    is_held = np.isin(train.pids, held)
    # group rows by track; rows without a track are grouped by camera (keys below -1 never clash)
    group = np.where(train.tracks != MISSING, train.tracks, -2 - train.camids)
    queries: list[int] = []
    for vid in held:
        rows = np.flatnonzero(train.pids == vid)
        keys = np.unique(group[rows])
        pools = [rng.permutation(rows[group[rows] == k]) for k in rng.permutation(keys)]
        picks: list[int] = []
        depth = 0
        while len(picks) < queries_per_id and any(depth < len(p) for p in pools):
            picks.extend(int(p[depth]) for p in pools if depth < len(p))
            depth += 1
        queries.extend(picks[:queries_per_id])
    return held, np.flatnonzero(~is_held), np.sort(np.asarray(queries, dtype=np.int64))


def load_cityflow(root: str | Path, *, val_ids: int = VAL_IDS, val_fraction: float = VAL_IDS / FULL_IDS,
                  val_seed: int = 0, queries_per_id: int = QUERIES_PER_ID, verify_images: str = "none",
                  on_corrupt: str = "error") -> CityFlowDataset:
    """Parse a CityFlow (AIC19/20/21 re-ID) folder and build the seeded validation split.

    Args:
        root: ``AIC20_ReID/`` (or a folder holding it).
        val_ids: ids held out on a full-size set (>= 333 ids); 0 disables the validation split.
        val_fraction: fraction of ids held out on a smaller set.
        val_seed: seed of the validation split.
        queries_per_id: most validation queries per held-out id.
        verify_images: ``none`` | ``header`` | ``full``.
        on_corrupt: ``error`` | ``skip``.
    """
    check_verify_options(verify_images, on_corrupt)
    if val_ids < 0 or not 0.0 <= val_fraction < 1.0 or queries_per_id < 1:
        raise ValueError(f"CityFlow options: expected val_ids >= 0, 0 <= val_fraction < 1, queries_per_id >= 1; "
                         f"got val_ids={val_ids}, val_fraction={val_fraction}, queries_per_id={queries_per_id}")
    root = resolve_root(root, ("image_train",), _SUBFOLDERS)
    warnings: list[str] = []
    cache = DirCache()
    full, origins = _read_train(root, cache, warnings)
    _attach_tracks(root, "train", full, warnings, "train")
    full = verify_split(full, origins, "train", verify_images, on_corrupt, warnings)

    unlabelled: dict[str, Split | None] = {}
    for key, folder, list_name, xml_name in (("query", "image_query", "name_query.txt", "query_label.xml"),
                                             ("test", "image_test", "name_test.txt", "test_label.xml")):
        parsed = _read_unlabelled(root, folder, list_name, xml_name, cache, warnings)
        if parsed is None:
            unlabelled[key] = None
            continue
        split, split_origins = parsed
        if key == "test":
            _attach_tracks(root, "test", split, warnings, "unlabelled test")
        unlabelled[key] = verify_split(split, split_origins, f"unlabelled {key}", verify_images, on_corrupt,
                                       warnings)

    num_ids = full.num_ids
    num_val = val_ids if num_ids >= FULL_IDS else (max(1, round(val_fraction * num_ids)) if val_fraction else 0)
    if val_ids == 0:
        num_val = 0
    num_val = min(num_val, num_ids - 1) if num_ids > 1 else 0
    train, query, gallery, validation = full, None, None, {}
    if num_val:
        held, train_rows, query_rows = validation_split(full, num_val, val_seed, queries_per_id)
        train, query, gallery = full.subset(train_rows), full.subset(query_rows), full
        validation = {"seed": val_seed, "held_out_ids": held.tolist(), "num_held_out_ids": int(held.size),
                      "train_ids": train.num_ids, "queries": len(query), "gallery": len(gallery)}
    elif val_ids:
        warnings.append(f"train: only {num_ids} id(s): no validation split")

    classes = {k: int(full.attributes[k].max(initial=MISSING)) + 1 for k in full.attributes}
    return CityFlowDataset(name="cityflow", root=root, train=train, query=query, gallery=gallery,
                           protocol="image", attribute_classes=classes, warnings=warnings,
                           unlabelled_query=unlabelled["query"], unlabelled_test=unlabelled["test"],
                           validation=validation)
