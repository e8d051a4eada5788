"""VeRi-776 parser (Liu et al., ICME 2016): the released ``VeRi/`` folder.

Reads ``image_{train,query,test}/`` with ``name_{train,query,test}.txt`` (the lists define the rows
and their order), ``train_label.xml`` / ``test_label.xml`` (gb2312 declaration on ASCII) for ids,
cameras and the ``colour`` / ``type`` attributes (1-based, as in the XML), and ``test_track.txt`` for
gallery tracks. File names ``VVVV_cCCC_TTTTTTTT_K.jpg`` give the timestamp and, where an image has no
XML Item (or the XML is absent, e.g. for queries not covered by ``test_label.xml``), the id and
camera; every such fallback is counted in ``warnings``. Query attributes are joined from
``test_label.xml`` by image name. The ``typeID="0"`` erratum of older releases (vehicles 0003, 0007,
0041) is mapped to SUV (2) with one log line and one warning. Protocol: image-to-image, junk = same
id and camera. ``list_color.txt`` / ``list_type.txt`` (``<id> <name>``), when present, give
``attribute_names``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ._io import DirCache, missing_image, parse_camera, parse_int, read_names, read_rows, require_dir, require_file, \
    resolve_root, unlisted_note
from ._tracks import attach_tracks
from ._verify import Origin, check_verify_options, verify_split
from ._xml import read_label_xml
from .base import MISSING, DatasetFormatError, ReIDDataset, Split

__all__ = ["load_veri", "VERI_COLOURS", "VERI_TYPES"]

logger = logging.getLogger(__name__)

VERI_COLOURS = 10  # 1 yellow ... 10 black (datasets.md section 1)
VERI_TYPES = 9  # 1 sedan ... 9 estate
ERRATUM_TYPE, SUV_TYPE = 0, 2  # typeID="0" in older releases means SUV

_NAME = re.compile(r"^(\d+)_[cC](\d+)_(\d+)_(\d+)\.jpe?g$", re.IGNORECASE)
_SUBFOLDERS = ("VeRi", "veri", "VeRi776", "VeRi-776", "VeRi_776")

Label = tuple[int, int, int, int]  # pid, camid, colour, type


def _read_labels(path: Path) -> dict[str, Label] | None:
    """image name -> label from a VeRi label XML, or None when the file is absent."""
    if not path.is_file():
        return None
    labels: dict[str, Label] = {}
    for line, attrs in read_label_xml(path):
        name = attrs.get("imagename", "")
        if not name:
            raise DatasetFormatError(path, "an imageName attribute on every Item", line=line)
        label = (
            parse_int(attrs.get("vehicleid", ""), path, line, "a vehicleID like '0001'"),
            parse_camera(attrs.get("cameraid", ""), path, line),
            parse_int(attrs["colorid"], path, line, "a colorID like '5'") if "colorid" in attrs else MISSING,
            parse_int(attrs["typeid"], path, line, "a typeID like '1'") if "typeid" in attrs else MISSING,
        )
        if labels.setdefault(name, label) != label:
            raise DatasetFormatError(path, f"one label per image (an earlier Item for {name} differs)", line=line)
    return labels


def _read_split(root: Path, folder: str, list_name: str, labels: dict[str, Label] | None, xml_name: str,
                cache: DirCache, warnings: list[str], split: str) -> tuple[Split, list[Origin]]:
    image_dir = require_dir(root / folder, f"the VeRi image folder {folder}/")
    list_path = require_file(root / list_name, f"the VeRi image list {list_name}")
    present = cache[image_dir]
    rows = read_rows(list_path, ncols=1, expected="one image file name per line", image_list=True)
    names, columns, origins = [], [], []
    unlabelled = disagree = 0
    for line, (token,) in rows:
        name = token.replace("\\", "/").rsplit("/", 1)[-1]
        if name not in present:
            raise missing_image(list_path, line, image_dir / name)
        match = _NAME.match(name)
        label = None if labels is None else labels.get(name)
        if label is None:
            if match is None:
                alternative = "" if labels is None else f" (or an Item for it in {xml_name})"
                raise DatasetFormatError(list_path, f"a file name like 0001_c001_00016450_0.jpg{alternative}",
                                         line=line, got=name)
            label = (int(match.group(1)), int(match.group(2)), MISSING, MISSING)
            unlabelled += labels is not None
        elif match is not None and (int(match.group(1)), int(match.group(2))) != label[:2]:
            disagree += 1
        names.append(name)
        columns.append((*label, int(match.group(3)) if match else MISSING))
        origins.append((list_path, line))
    table = np.array(columns, dtype=np.int64).reshape(-1, 5)
    if unlabelled:
        warnings.append(f"{split}: {unlabelled} of {len(names)} images have no Item in {xml_name}: "
                        "ids/cameras from file names, colour/type MISSING")
    if disagree:
        warnings.append(f"{split}: {disagree} images whose file name disagrees with {xml_name} on "
                        "vehicle/camera; the XML labels were used")
    note = unlisted_note(image_dir, present, set(names), list_name)
    if note:
        warnings.append(note)
    attributes = {} if labels is None else {"colour": table[:, 2], "type": table[:, 3]}
    result = Split(paths=[str(image_dir / n) for n in names], pids=table[:, 0], camids=table[:, 1],
                   timestamps=table[:, 4], attributes=attributes)
    return result, origins


def _fix_type_erratum(splits: list[Split], warnings: list[str]) -> None:
    """typeID 0 -> SUV (2) in place; one log line and one warning for the whole dataset."""
    count, vehicles = 0, set()
    for split in splits:
        types = split.attributes.get("type")
        if types is None:
            continue
        wrong = types == ERRATUM_TYPE
        count += int(wrong.sum())
        vehicles.update(int(v) for v in np.unique(split.pids[wrong]))
        types[wrong] = SUV_TYPE
    if count:
        message = (f"VeRi typeID=0 erratum: {count} image(s) of vehicle(s) "
                   f"{', '.join(f'{v:04d}' for v in sorted(vehicles))} set to SUV (type {SUV_TYPE})")
        logger.warning(message)
        warnings.append(message)


def load_veri(root: str | Path, *, verify_images: str = "none", on_corrupt: str = "error") -> ReIDDataset:
    """Parse a VeRi-776 folder.

    Args:
        root: the ``VeRi/`` folder (or a folder holding ``VeRi/`` / ``veri/``).
        verify_images: ``none`` | ``header`` | ``full`` (see ``_verify``).
        on_corrupt: ``error`` | ``skip`` for images that fail verification.

    Returns:
        ``train``, ``query`` and ``gallery`` splits; ``protocol="image"``.
    """
    check_verify_options(verify_images, on_corrupt)
    root = resolve_root(root, ("image_train",), _SUBFOLDERS)
    warnings: list[str] = []
    train_labels = _read_labels(root / "train_label.xml")
    test_labels = _read_labels(root / "test_label.xml")
    for name, labels in (("train_label.xml", train_labels), ("test_label.xml", test_labels)):
        if labels is None:
            warnings.append(f"{name} not found: ids and cameras from file names, no colour/type attributes")
    cache = DirCache()
    spec = [("train", "image_train", "name_train.txt", train_labels, "train_label.xml"),
            ("query", "image_query", "name_query.txt", test_labels, "test_label.xml"),
            ("gallery", "image_test", "name_test.txt", test_labels, "test_label.xml")]
    parsed = {s: _read_split(root, folder, lst, labels, xml, cache, warnings, s)
              for s, folder, lst, labels, xml in spec}
    splits = {s: split for s, (split, _) in parsed.items()}
    if train_labels is not None or test_labels is not None:
        for split in splits.values():
            for key in ("colour", "type"):
                split.attributes.setdefault(key, np.full(len(split), MISSING, np.int64))
    _fix_type_erratum(list(splits.values()), warnings)

    track_record = attach_tracks(root, [("test_track.txt", False)], splits["gallery"], warnings, "gallery")

    for s, (_, origins) in parsed.items():
        splits[s] = verify_split(splits[s], origins, s, verify_images, on_corrupt, warnings)

    classes: dict[str, int] = {}
    if "colour" in splits["train"].attributes:
        for key, known in (("colour", VERI_COLOURS), ("type", VERI_TYPES)):
            observed = max(int(s.attributes[key].max(initial=MISSING)) for s in splits.values())
            classes[key] = max(known, observed) + 1  # 1-based ids index a head of this size directly
    names = {key: read_names(root / file_name) for key, file_name in (("colour", "list_color.txt"),
                                                                      ("type", "list_type.txt"))
             if (root / file_name).is_file()}
    return ReIDDataset(name="veri", root=root, train=splits["train"], query=splits["query"],
                       gallery=splits["gallery"], protocol="image", attribute_classes=classes,
                       warnings=warnings, attribute_names=names, diagnostics={"tracks": {"gallery": track_record}})
