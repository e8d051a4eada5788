"""Hand-written miniature dataset layouts for the parser tests (real formats, real quirks, tiny sizes).

Each ``write_*`` function writes one layout under a folder and returns it. The contents are chosen so
the tests can assert exact counts; the docstrings say what each layout holds.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

__all__ = ["jpeg_bytes", "write_veri", "write_vehicleid", "write_cityflow", "write_compcars",
           "VERI_TRAIN", "VERI_QUERY", "VERI_TEST", "CITYFLOW_IDS"]

_JPEG: bytes | None = None
GB2312 = '<?xml version="1.0" encoding="gb2312" ?>'


def jpeg_bytes() -> bytes:
    """An 8x8 JPEG, encoded once."""
    global _JPEG
    if _JPEG is None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (120, 30, 200)).save(buffer, format="JPEG")
        _JPEG = buffer.getvalue()
    return _JPEG


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(jpeg_bytes())


def _text(path: Path, lines: list[str], crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode("ascii") + b"\n")


# ----------------------------------------------------------------------------------------------- VeRi
VERI_TRAIN = ["0001_c001_00016450_0.jpg", "0001_c002_00016460_0.jpg", "0003_c001_00000100_0.jpg",
              "0003_c003_00000200_1.jpg", "0005_c002_00001000_0.jpg", "0005_c004_00002000_0.jpg"]
VERI_QUERY = ["0002_c002_00030600_0.jpg", "0004_c001_00000500_0.jpg"]
VERI_TEST = ["0002_c002_00030605_0.jpg", "0002_c002_00030610_0.jpg", "0002_c003_00030700_0.jpg",
             "0004_c001_00000510_0.jpg", "0004_c005_00000600_0.jpg"]
_VERI_ATTR = {"0001": (5, 1), "0002": (7, 4), "0003": (10, 0), "0004": (1, 8), "0005": (4, 2)}  # colour, type


def _veri_xml(root_tag: str, names: list[str]) -> list[str]:
    items = []
    for name in names:
        vid, cam = name.split("_")[:2]
        colour, vtype = _VERI_ATTR[vid]
        items.append(f'    <Item imageName="{name}" vehicleID="{vid}" cameraID="{cam}" colorID="{colour}" '
                     f'typeID="{vtype}" />')
    return [GB2312, f'<{root_tag} Version="1.0">', f'  <Items number="{len(names)}">', *items, "  </Items>",
            f"</{root_tag}>"]


def write_veri(root: Path) -> Path:
    """VeRi: train 6 images / 3 ids (0001, 0003, 0005) / 4 cameras; query 2; gallery 5 (ids 0002, 0004).

    Quirks: gb2312 XML declaration with CRLF; vehicle 0003 has the typeID=0 erratum; lists with trailing
    spaces, CRLF and blank lines; test_label.xml covers the gallery and query 0002 only; test_track.txt
    groups gallery rows [0, 0, 1, 2, MISSING] with a non-image first token and trailing spaces.
    """
    _images(root / "image_train", VERI_TRAIN)
    _images(root / "image_query", VERI_QUERY)
    _images(root / "image_test", VERI_TEST)
    _text(root / "name_train.txt", [f"{n} " for n in VERI_TRAIN[:3]] + ["", *VERI_TRAIN[3:], "   "], crlf=True)
    _text(root / "name_query.txt", VERI_QUERY)
    _text(root / "name_test.txt", ["", *VERI_TEST], crlf=True)
    _text(root / "train_label.xml", _veri_xml("TrainingImages", VERI_TRAIN), crlf=True)
    _text(root / "test_label.xml", _veri_xml("TestImages", VERI_TEST + VERI_QUERY[:1]), crlf=True)
    _text(root / "test_track.txt", [
        "0002_c002 0002_c002_00030605_0.jpg 0002_c002_00030610_0.jpg ",
        "0002_c003 0002_c003_00030700_0.jpg ",
        "",
        "0004_c001 0004_c001_00000510_0.jpg ",
    ])
    return root


# ------------------------------------------------------------------------------------------ VehicleID
def write_vehicleid(root: Path) -> Path:
    """VehicleID: train 5 images / 3 vehicles (1, 1, 2, 2, 3); test_list_800 5 images / 3 vehicles
    (10, 10, 11, 11, 12); test_list_1600 7 images / 4 vehicles (adds 13, 13); test_list_3200 = 800.

    model_attr.txt labels vehicles 1 -> 7, 2 -> 249, 10 -> 0, 11 -> 3 (3, 12, 13 unlabelled);
    color_attr.txt labels 1 -> 6, 10 -> 0 only. Lists use CRLF, trailing spaces and blank lines; one
    stem (0000100) is on disk but in no list. model_names.txt: UTF-8 Chinese ``<name> <id>`` (a UTF-8
    BOM, one name with a space); color_names.txt: CRLF ``<name> <id>``, as released (``sliver`` sic).
    """
    train = [("0000001", 1), ("0000002", 1), ("0000003", 2), ("0000004", 2), ("0000005", 3)]
    test = [("0001001", 10), ("0001002", 10), ("0001003", 11), ("0001004", 11), ("0001005", 12)]
    extra = [("0001006", 13), ("0001007", 13)]
    _images(root / "image", [f"{s}.jpg" for s, _ in train + test + extra] + ["0000100.jpg"])
    split = root / "train_test_split"
    _text(split / "train_list.txt", [f"{s} {v} " for s, v in train] + [""], crlf=True)
    _text(split / "test_list_800.txt", ["", *(f"{s} {v}" for s, v in test)])
    _text(split / "test_list_1600.txt", [f"{s} {v}" for s, v in test + extra], crlf=True)
    _text(split / "test_list_3200.txt", [f"{s} {v}" for s, v in test])
    _text(root / "attribute" / "model_attr.txt", ["1 7", "2 249 ", "", "10 0", "11 3"], crlf=True)
    _text(root / "attribute" / "color_attr.txt", ["1 6", "10 0"])
    _text(root / "attribute" / "img2vid.txt", [f"{s} {v}" for s, v in train + test + extra])
    (root / "attribute" / "model_names.txt").write_bytes(
        "\ufeff五菱荣光2008款 0\n大众-朗逸2006-2011 1\n奥迪A6L 2012款 2\n".encode("utf-8"))
    (root / "attribute" / "color_names.txt").write_bytes(
        b"black 0\r\nblue 1\r\ngray 2\r\nred 3\r\nsliver 4\r\nwhite 5\r\nyellow 6\r\n")
    return root


# ------------------------------------------------------------------------------------------- CityFlow
CITYFLOW_IDS = [5, 17, 42, 96, 101, 150, 222, 269, 300, 333, 512, 666]


def write_cityflow(root: Path, ids: list[int] | None = None, per_track: int = 2, aic21: bool = False) -> Path:
    """CityFlow (AIC20 layout): each id has 2 cameras x 1 track x ``per_track`` images.

    With the default 12 ids and ``per_track=2``: 48 training images, cameras c001..c012 (id i uses cameras
    ``c{i % 12 + 1:03d}`` and the next one). ``image_query/`` 3 images, ``image_test/`` 4 images
    (test_track.txt: 2 tracks of 2). ``aic21=True`` writes 3-digit vehicleIDs and query_label.xml /
    test_label.xml (imageName, cameraID).
    """
    ids = CITYFLOW_IDS if ids is None else ids
    names, items, tracks = [], [], []
    number = 0
    for i, vid in enumerate(ids):
        for cam in (i % 12 + 1, (i + 1) % 12 + 1):
            track = []
            for _ in range(per_track):
                number += 1
                name = f"{number:06d}.jpg"
                names.append(name)
                track.append(name)
                shown = f"{vid:03d}" if aic21 else f"{vid:04d}"
                items.append(f'<Item imageName="{name}" vehicleID="{shown}" cameraID="c{cam:03d}" />')
            tracks.append(" ".join(track) + " ")
    _images(root / "image_train", names)
    _text(root / "name_train.txt", names, crlf=True)
    _text(root / "train_label.xml", [GB2312, '<TrainingImages Version="1.0">', f'<Items number="{len(names)}">',
                                      *items, "</Items>", "</TrainingImages>"], crlf=True)
    _text(root / "train_track.txt", tracks)
    query, test = [f"{k:06d}.jpg" for k in range(1, 4)], [f"{k:06d}.jpg" for k in range(1, 5)]
    _images(root / "image_query", query)
    _images(root / "image_test", test)
    _text(root / "name_query.txt", query)
    _text(root / "name_test.txt", test)
    _text(root / "test_track.txt", ["000001.jpg 000002.jpg ", "000003.jpg 000004.jpg "])
    if aic21:
        for file_name, listed, cams in (("query_label.xml", query, (3, 4, 5)), ("test_label.xml", test, (3, 3, 9, 9))):
            rows = [f'<Item imageName="{n}" cameraID="c{c:03d}" />' for n, c in zip(listed, cams)]
            _text(root / file_name, [GB2312, "<QueryImages>", "<Items>", *rows, "</Items>", "</QueryImages>"])
    return root


# ------------------------------------------------------------------------------------------- CompCars
COMPCARS_LABELS = {  # relative path -> label file lines
    "78/1/2014/3ac218c0c6c378.jpg": ["1", "1", "38 112 905 561"],
    "78/1/2014/4bd3.jpg": ["4", "1", "1 1 8 8"],
    "78/2/unknown/b1.jpg": ["-1", "1", "2 2 7 7"],
    "5/30/2010/c1.jpg": ["3", "1", "1 1 6 6"],
    "78/2/unknown/b2.jpg": ["2", "1", "1 1 8 8"],
    "78/1/2015/d2.jpg": ["5", "1", "2 3 8 8"],
    "5/30/2010/c2.jpg": ["3", "1", "6 6 2 2"],  # empty box (x2 < x1)
}
COMPCARS_TRAIN = ["78/1/2014/3ac218c0c6c378.jpg", "78/1/2014/4bd3.jpg", "78/2/unknown/b1.jpg", "5/30/2010/c1.jpg",
                  "78/1/2015/d1.jpg"]  # the last one is listed but missing
COMPCARS_TEST = ["78/2/unknown/b2.jpg", "78/1/2015/d2.jpg", "5/30/2010/c2.jpg"]


def write_compcars(root: Path) -> Path:
    """CompCars web-nature: ``root/data/...``.

    train.txt: 5 lines; line 5 (78/1/2015/d1.jpg) is missing on disk. test.txt: 3 lines, the last has an
    empty box. Models: 1 (make 78; years 2014, 2015), 2 (make 78; year unknown), 30 (make 5; 2010).
    attributes.txt: model 1 type 3, model 2 type 4, model 30 type 0 (unknown).
    """
    data = root / "data"
    for rel, lines in COMPCARS_LABELS.items():
        _images((data / "image" / rel).parent, [Path(rel).name])
        _text(data / "label" / Path(rel).with_suffix(".txt"), lines, crlf=rel.startswith("78/1"))
    split = data / "train_test_split" / "classification"
    _text(split / "train.txt", COMPCARS_TRAIN, crlf=True)
    _text(split / "test.txt", [*COMPCARS_TEST, ""])
    _text(data / "misc" / "attributes.txt", ["model_id maximum_speed displacement door_number seat_number type",
                                             "1 235 1.8 5 5 3", "2 0 0 4 5 4 ", "30 180 1.6 4 5 0"])
    return root
