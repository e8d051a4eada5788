"""CityFlow / AI City Challenge track 2 parser (AIC19, AIC20, AIC21 layouts).

Reads ``image_train/`` labelled by ``train_label.xml`` (gb2312 declaration; ``vehicleID`` parsed as an
int, ``cameraID`` ``c026`` -> 26; ``colorID`` / ``typeID`` of the simulation set become ``colour`` /
``type``). Rows follow ``name_train.txt`` (XML order when that list is absent). Tracks:
``train_track.txt`` (file names) and ``train_track_id.txt`` (numbers: ``12`` is ``000012.jpg``) are
both read when present and reconciled (the public AIC19 copy's ``train_track.txt`` lacks the last image
of every track; see ``_tracks``), with a warning and counts in ``diagnostics["tracks"]`` whenever
images stay untracked or the files disagree.

Validation split (VehicleNet, Zheng et al. TMM 2020, Sec. III-A: "the training set contains 26,803
images of 255 classes, and the validation query set includes 463 images of the rest 78 classes. We
deploy the all original training set as the gallery"). The public query/test sets are unlabelled, so
the labelled training set is split:

* ``val_split="released"``: the authors' released code (layumi/AICIty-reID-2020, ``prepare_2020.py``):
  vehicle ids ``<= 400`` train (255 of the 333), the ids above are held out (78).
* ``val_split="seeded"``: ``val_ids`` identities (78) drawn with ``numpy.random.default_rng(val_seed)``
  among ids seen by at least two cameras (others only when too few); on a set with fewer than 333 ids
  the number is ``max(1, round(val_fraction * ids))`` (``val_fraction`` = 78/333). For the synthetic
  worlds and subsets, whose ids do not reach 400.
* ``val_split="auto"`` (default): ``released`` on a full-size set (>= 333 ids) with ids above the
  threshold, ``seeded`` otherwise. ``validation["method"]`` records which one ran.
* ``train`` = the images of the other ids.
* ``query`` = one image per (held-out id, camera), as the released code does (463 / 78 = 5.9 cameras
  per id): the first in file-name order (released) or a seeded draw (seeded). ``queries_per_id=N``
  instead takes up to N per id, one per track in a seeded order, then a second per track, ...
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

from ._io import DirCache, IMAGE_SUFFIXES, check_choice, missing_image, parse_camera, parse_int, read_rows, \
    require_dir, require_file, resolve_root, unlisted_note
from ._tracks import attach_tracks
from ._verify import Origin, check_verify_options, verify_split
from ._xml import read_label_xml
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["CityFlowDataset", "load_cityflow", "validation_split", "released_split", "FULL_IDS", "VAL_IDS",
           "VAL_ID_THRESHOLD", "VAL_SPLITS"]

FULL_IDS = 333  # CityFlow training ids (VehicleNet Sec. III-A)
VAL_IDS = 78  # held-out validation ids (VehicleNet Sec. III-A: 255 train + 78 validation ids)
# The authors' released split (layumi/AICIty-reID-2020, pytorch/prepare_2020.py): vehicle ids <= 400
# train, the others give one query per camera; the gallery is the whole training set.
VAL_ID_THRESHOLD = 400
VAL_SPLITS = ("auto", "released", "seeded")
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
                  read_rows(list_path, ncols=1, expected="one image file name per line", image_list=True)]
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


def _attach_tracks(root: Path, stem: str, split: Split, warnings: list[str], label: str) -> dict:
    """Tracks from ``<stem>_track.txt`` and ``<stem>_track_id.txt`` (both read when present; see ``_tracks``)."""
    return attach_tracks(root, [(f"{stem}_track.txt", False), (f"{stem}_track_id.txt", True)], split, warnings,
                         label)


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
                  read_rows(list_path, ncols=1, expected="one image file name per line", image_list=True)]
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


def _pick_queries(train: Split, held: np.ndarray, rng: np.random.Generator | None,
                  queries_per_id: int | None) -> np.ndarray:
    """Query rows of the held-out ids (sorted).

    ``queries_per_id=None``: one image per (held-out id, camera), as the authors' released split does
    (the first in file-name order when ``rng`` is None, else a seeded draw). An integer: up to that
    many per id, one per track in a seeded order, then a second per track, and so on (rows without a
    track are grouped by camera).
    """
    queries: list[int] = []
    if queries_per_id is None:
        for vid in held:
            rows = np.flatnonzero(train.pids == vid)
            for cam in np.unique(train.camids[rows]):
                pool = rows[train.camids[rows] == cam]
                if rng is None:
                    queries.append(int(min(pool, key=lambda r: Path(train.paths[r]).name)))
                else:
                    queries.append(int(rng.choice(pool)))
        return np.sort(np.asarray(queries, dtype=np.int64))
    rng = np.random.default_rng(0) if rng is None else rng
    # group rows by track; rows without a track are grouped by camera (keys below -1 never clash)
    group = np.where(train.tracks != MISSING, train.tracks, -2 - train.camids)
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
    return np.sort(np.asarray(queries, dtype=np.int64))


def validation_split(train: Split, num_val: int, seed: int,
                     queries_per_id: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seeded validation split of a labelled training set (see the module docstring).

    Args:
        train: the whole labelled training set.
        num_val: how many ids to hold out (``1 <= num_val < ids``), drawn among ids seen by at least two
            cameras (others only when too few).
        seed: seed of ``numpy.random.default_rng``.
        queries_per_id: ``None``: one query per (held-out id, camera), drawn with the seed; an integer:
            up to that many per id, spread over tracks.

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
    return held, np.flatnonzero(~np.isin(train.pids, held)), _pick_queries(train, held, rng, queries_per_id)


def released_split(train: Split, threshold: int = VAL_ID_THRESHOLD, queries_per_id: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The authors' split (layumi/AICIty-reID-2020 ``prepare_2020.py``): ids above ``threshold`` held out.

    Training ids ``<= threshold`` (400: 255 of AIC20's 333) train; each held-out id gives one query per
    camera (463 queries of 78 ids in sec. III-A); the gallery is the whole training set.

    Returns:
        (held-out ids sorted, row indices of the reduced train set, row indices of the queries).
    """
    held = np.unique(train.pids[train.pids > threshold])
    rng = None if queries_per_id is None else np.random.default_rng(seed)
    return held, np.flatnonzero(train.pids <= threshold), _pick_queries(train, held, rng, queries_per_id)


def load_cityflow(root: str | Path, *, val_ids: int = VAL_IDS, val_fraction: float = VAL_IDS / FULL_IDS,
                  val_seed: int = 0, val_split: str = "auto", val_id_threshold: int = VAL_ID_THRESHOLD,
                  queries_per_id: int | None = None, verify_images: str = "none",
                  on_corrupt: str = "error") -> CityFlowDataset:
    """Parse a CityFlow (AIC19/20/21 re-ID) folder and build the validation split.

    Args:
        root: ``AIC20_ReID/`` (or a folder holding it).
        val_ids: ids held out by the seeded split on a full-size set (>= 333 ids); with the released
            split, the count it is expected to hold out (a warning when it differs); 0 disables the
            validation split.
        val_fraction: fraction of ids the seeded split holds out on a smaller set.
        val_seed: seed of the seeded split (and of the query draw).
        val_split: ``released`` (the authors' split: ids above ``val_id_threshold`` held out),
            ``seeded`` (``val_ids`` / ``val_fraction`` ids drawn with ``val_seed``) or ``auto``
            (``released`` on a full-size set with ids above the threshold, else ``seeded``).
        val_id_threshold: the released split's last training vehicle id (400).
        queries_per_id: ``None`` (one query per held-out id and camera, as released) or at most this
            many per id, spread over tracks.
        verify_images: ``none`` | ``header`` | ``full``.
        on_corrupt: ``error`` | ``skip``.
    """
    check_verify_options(verify_images, on_corrupt)
    check_choice("val_split", val_split, VAL_SPLITS)
    if val_ids < 0 or not 0.0 <= val_fraction < 1.0 or (queries_per_id is not None and queries_per_id < 1):
        raise ValueError(f"CityFlow options: expected val_ids >= 0, 0 <= val_fraction < 1, queries_per_id null "
                         f"or >= 1; got val_ids={val_ids}, val_fraction={val_fraction}, "
                         f"queries_per_id={queries_per_id}")
    root = resolve_root(root, ("image_train",), _SUBFOLDERS)
    warnings: list[str] = []
    diagnostics: dict = {"tracks": {}}
    cache = DirCache()
    full, origins = _read_train(root, cache, warnings)
    diagnostics["tracks"]["train"] = _attach_tracks(root, "train", full, warnings, "train")
    full = verify_split(full, origins, "train", verify_images, on_corrupt, warnings)
    diagnostics["untracked_train_images"] = int((full.tracks == MISSING).sum())

    unlabelled: dict[str, Split | None] = {}
    for key, folder, list_name, xml_name in (("query", "image_query", "name_query.txt", "query_label.xml"),
                                             ("test", "image_test", "name_test.txt", "test_label.xml")):
        parsed = _read_unlabelled(root, folder, list_name, xml_name, cache, warnings)
        if parsed is None:
            unlabelled[key] = None
            continue
        split, split_origins = parsed
        if key == "test":
            diagnostics["tracks"]["test"] = _attach_tracks(root, "test", split, warnings, "unlabelled test")
        unlabelled[key] = verify_split(split, split_origins, f"unlabelled {key}", verify_images, on_corrupt,
                                       warnings)

    num_ids = full.num_ids
    above = int(np.unique(full.pids[full.pids > val_id_threshold]).size)
    method = val_split
    if method == "auto":
        method = "released" if num_ids >= FULL_IDS and 0 < above < num_ids else "seeded"
    train, query, gallery, validation = full, None, None, {}
    if val_ids == 0:
        pass
    elif method == "released":
        if not 0 < above < num_ids:
            raise ValueError(f"CityFlow val_split='released': {above} of {num_ids} training ids are above "
                             f"val_id_threshold={val_id_threshold}; nothing to hold out (use val_split='seeded')")
        held, train_rows, query_rows = released_split(full, val_id_threshold, queries_per_id, val_seed)
        if held.size != val_ids:
            warnings.append(f"train: the released split holds out {held.size} id(s) above vehicle id "
                            f"{val_id_threshold}, not val_ids={val_ids} (VehicleNet sec. III-A: 78 of 333)")
    else:
        num_val = val_ids if num_ids >= FULL_IDS else (max(1, round(val_fraction * num_ids)) if val_fraction else 0)
        num_val = min(num_val, num_ids - 1) if num_ids > 1 else 0
        if not num_val:
            warnings.append(f"train: only {num_ids} id(s): no validation split")
            method = "none"
        else:
            held, train_rows, query_rows = validation_split(full, num_val, val_seed, queries_per_id)
    if val_ids and method != "none":
        train, query, gallery = full.subset(train_rows), full.subset(query_rows), full
        validation = {"method": method, "seed": val_seed, "held_out_ids": held.tolist(),
                      "num_held_out_ids": int(held.size), "train_ids": train.num_ids, "train_images": len(train),
                      "queries": len(query), "gallery": len(gallery),
                      "queries_per_id": "one per camera" if queries_per_id is None else queries_per_id}
        if method == "released":
            validation["val_id_threshold"] = val_id_threshold

    classes = {k: int(full.attributes[k].max(initial=MISSING)) + 1 for k in full.attributes}
    return CityFlowDataset(name="cityflow", root=root, train=train, query=query, gallery=gallery,
                           protocol="image", attribute_classes=classes, warnings=warnings,
                           diagnostics=diagnostics, unlabelled_query=unlabelled["query"],
                           unlabelled_test=unlabelled["test"], validation=validation)
