"""Dataset parsers on hand-written miniature layouts: exact counts, the quirks of datasets.md section 7,
every error path (message names the file and line), the VehicleNet merge and the inspect CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures_datasets import (CITYFLOW_IDS, VERI_QUERY, VERI_TEST, VERI_TRAIN, write_cityflow, write_compcars,
                               write_vehicleid, write_veri)
from vreid_lightning.data.datasets import (DATASETS, MISSING, CityFlowDataset, DatasetFormatError, load_dataset,
                                           load_vehiclenet, merge_datasets)
from vreid_lightning.data.datasets._xml import read_label_xml
from vreid_lightning.data.datasets.cityflow import validation_split

REPO = Path(__file__).resolve().parents[1]


def _raises_at(path: Path, line: int | None, call, *args, **kwargs) -> DatasetFormatError:
    """Run ``call`` expecting a DatasetFormatError that names ``path`` (and ``line``)."""
    with pytest.raises(DatasetFormatError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    if line is not None:
        assert f"{path}, line {line}:" in message, message
        assert info.value.line == line
    return info.value


# ------------------------------------------------------------------------------------------------ XML
def test_gb2312_xml_parsed_with_line_numbers(tmp_path):
    path = tmp_path / "label.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="gb2312" ?>\r\n<TrainingImages>\r\n<Items>\r\n'
                     b'<Item imageName="a.jpg" vehicleID="0007" cameraID="c001" />\r\n</Items></TrainingImages>')
    assert read_label_xml(path) == [(4, {"imagename": "a.jpg", "vehicleid": "0007", "cameraid": "c001"})]
    path.write_bytes(b'<?xml version="1.0" encoding="gb2312" ?>\n<a>\n<Item x="1">\n</a>\n')
    _raises_at(path, 4, read_label_xml, path)


# ----------------------------------------------------------------------------------------------- VeRi
def test_veri_counts_attributes_tracks_and_erratum(tmp_path, caplog):
    root = write_veri(tmp_path / "VeRi")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("veri", root)
    assert ds.protocol == "image"
    assert [len(ds.train), len(ds.query), len(ds.gallery)] == [6, 2, 5]
    assert [ds.train.num_ids, ds.train.num_cams, ds.gallery.num_ids, ds.gallery.num_cams] == [3, 4, 2, 4]
    assert [Path(p).name for p in ds.train.paths] == VERI_TRAIN
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ds.train.paths)
    assert ds.train.pids.tolist() == [1, 1, 3, 3, 5, 5]
    assert ds.train.camids.tolist() == [1, 2, 1, 3, 2, 4]
    assert ds.train.timestamps.tolist() == [16450, 16460, 100, 200, 1000, 2000]
    # erratum: vehicle 0003 typeID=0 -> SUV (2); one log record and one warning
    assert ds.train.attributes["type"].tolist() == [1, 1, 2, 2, 2, 2]
    assert ds.train.attributes["colour"].tolist() == [5, 5, 10, 10, 4, 4]
    assert sum("erratum" in r.getMessage() for r in caplog.records) == 1
    assert sum("erratum" in w for w in ds.warnings) == 1
    # gallery tracks from test_track.txt (first token not an image; trailing spaces; blank line)
    assert ds.gallery.tracks.tolist() == [0, 0, 1, 2, MISSING]
    assert (ds.train.tracks == MISSING).all() and (ds.query.tracks == MISSING).all()
    # query attributes joined from test_label.xml where it has the image, ids from the file name otherwise
    assert ds.query.pids.tolist() == [2, 4] and ds.query.camids.tolist() == [2, 1]
    assert ds.query.attributes["colour"].tolist() == [7, MISSING]
    assert any("query: 1 of 2 images have no Item" in w for w in ds.warnings)
    assert ds.attribute_classes == {"colour": 11, "type": 10}


def test_veri_without_xml_uses_file_names(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    (root / "train_label.xml").unlink()
    (root / "test_label.xml").unlink()
    ds = load_dataset("veri", tmp_path)  # parent folder holding VeRi/
    assert ds.root == root.absolute()
    assert ds.train.pids.tolist() == [1, 1, 3, 3, 5, 5] and ds.gallery.camids.tolist() == [2, 2, 3, 1, 5]
    assert ds.train.attributes == {} and ds.attribute_classes == {}
    assert sum("not found: ids and cameras from file names" in w for w in ds.warnings) == 2


def test_veri_xml_overrides_file_name_and_is_counted(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    xml = root / "train_label.xml"
    xml.write_bytes(xml.read_bytes().replace(b'imageName="0005_c004_00002000_0.jpg" vehicleID="0005"',
                                             b'imageName="0005_c004_00002000_0.jpg" vehicleID="0009"'))
    ds = load_dataset("veri", root)
    assert ds.train.pids.tolist()[-1] == 9
    assert any("1 images whose file name disagrees" in w for w in ds.warnings)


def test_veri_error_paths(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    # listed but missing on disk
    (root / "image_train" / VERI_TRAIN[3]).unlink()
    err = _raises_at(root / "name_train.txt", 5, load_dataset, "veri", root)  # line 4 is blank
    assert VERI_TRAIN[3] in str(err) and "listed but missing" in str(err)
    write_veri(root)
    # malformed list line
    (root / "name_query.txt").write_text(f"{VERI_QUERY[0]}\n{VERI_QUERY[1]} extra\n")
    _raises_at(root / "name_query.txt", 2, load_dataset, "veri", root)
    write_veri(root)
    # malformed XML field
    xml = root / "test_label.xml"
    xml.write_bytes(xml.read_bytes().replace(b'vehicleID="0004"', b'vehicleID="4x"', 1))
    err = _raises_at(xml, 7, load_dataset, "veri", root)
    assert "vehicleID" in str(err) and "'4x'" in str(err)
    write_veri(root)
    # a track naming an image that is not in the gallery
    (root / "test_track.txt").write_text("0002_c002 0002_c002_00030605_0.jpg\n0009_c001 0009_c001_00000001_0.jpg \n")
    _raises_at(root / "test_track.txt", 2, load_dataset, "veri", root)
    write_veri(root)
    # missing folder and missing list
    for name in VERI_TEST:
        (root / "image_test" / name).unlink()
    (root / "image_test").rmdir()
    _raises_at(root / "image_test", None, load_dataset, "veri", root)
    write_veri(root)
    (root / "name_test.txt").unlink()
    _raises_at(root / "name_test.txt", None, load_dataset, "veri", root)


def test_veri_corrupt_image_error_and_skip(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    (root / "image_query" / VERI_QUERY[1]).write_bytes(b"this is not an image")
    assert len(load_dataset("veri", root).query) == 2  # verify_images="none" does not open images
    err = _raises_at(root / "name_query.txt", 2, load_dataset, "veri", root, verify_images="header")
    assert VERI_QUERY[1] in str(err)
    ds = load_dataset("veri", root, verify_images="header", on_corrupt="skip")
    assert ds.query.pids.tolist() == [2] and len(ds.gallery) == 5
    assert any("query: skipped 1 unreadable image" in w for w in ds.warnings)


# ------------------------------------------------------------------------------------------ VehicleID
def test_vehicleid_counts_lists_and_partial_attributes(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    ds = load_dataset("vehicleid", root)
    assert ds.protocol == "vehicleid" and ds.query is None and ds.gallery is None
    assert sorted(ds.test_lists, key=int) == ["800", "1600", "3200"]
    assert [len(ds.train), ds.train.num_ids] == [5, 3]
    assert [len(ds.test_lists["800"]), ds.test_lists["800"].num_ids] == [5, 3]
    assert [len(ds.test_lists["1600"]), ds.test_lists["1600"].num_ids] == [7, 4]
    assert ds.train.pids.tolist() == [1, 1, 2, 2, 3]
    assert [Path(p).name for p in ds.train.paths] == [f"000000{k}.jpg" for k in range(1, 6)]
    assert (ds.train.camids == MISSING).all() and ds.train.num_cams == 0
    # unlabelled vehicles get MISSING and are kept
    assert ds.train.attributes["model"].tolist() == [7, 7, 249, 249, MISSING]
    assert ds.train.attributes["colour"].tolist() == [6, 6, MISSING, MISSING, MISSING]
    assert ds.test_lists["1600"].attributes["model"].tolist() == [0, 0, 3, 3, MISSING, MISSING, MISSING]
    assert ds.attribute_classes == {"model": 250, "colour": 7}
    assert any("1 image(s) on disk are not listed" in w for w in ds.warnings)
    only = load_dataset("vehicleid", root, test_sizes=[800])
    assert list(only.test_lists) == ["800"]


def test_vehicleid_attribute_names_utf8_and_crlf(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    ds = load_dataset("vehicleid", root)
    assert ds.attribute_names["model"] == {0: "五菱荣光2008款", 1: "大众-朗逸2006-2011", 2: "奥迪A6L 2012款"}
    assert ds.attribute_names["colour"][4] == "sliver" and ds.attribute_names["colour"][6] == "yellow"
    assert all("\r" not in n for n in ds.attribute_names["colour"].values())
    assert ds.summary()["attribute_names"] == {"model": 3, "colour": 7}
    (root / "attribute" / "color_names.txt").write_bytes(b"black 0\r\nblue\r\n")
    err = _raises_at(root / "attribute" / "color_names.txt", 2, load_dataset, "vehicleid", root)
    assert "<name> <id>" in str(err)
    (root / "attribute" / "color_names.txt").write_bytes("black 0\nschwarz 0\n".encode())
    _raises_at(root / "attribute" / "color_names.txt", 2, load_dataset, "vehicleid", root)
    (root / "attribute" / "color_names.txt").write_bytes("0 black\r\n".encode())  # <id> <name> is read too
    assert load_dataset("vehicleid", root).attribute_names["colour"] == {0: "black"}
    (root / "attribute" / "model_names.txt").write_bytes("五菱 0\n".encode("gb2312"))
    _raises_at(root / "attribute" / "model_names.txt", 1, load_dataset, "vehicleid", root)  # not UTF-8
    (root / "attribute" / "model_names.txt").unlink()
    (root / "attribute" / "color_names.txt").unlink()
    assert load_dataset("vehicleid", root).attribute_names == {}


def test_inspect_checks_vehicleid_img2vid(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    cmd = [sys.executable, "-m", "vreid_lightning.data.inspect", "--dataset", "vehicleid", "--root", str(root)]
    check = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["checks"]["img2vid"]
    assert check["agree"] and check["listed_images"] == 12 and check["lines"] == 12 and check["vehicles"] == 7
    # one image given to another vehicle, one missing, one line conflicting with an earlier one
    lines = (root / "attribute" / "img2vid.txt").read_text().splitlines()
    lines[0] = "0000001 2"
    (root / "attribute" / "img2vid.txt").write_text("\n".join(lines[:-1] + ["0000003 5", "0009999 40"]) + "\n")
    check = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["checks"]["img2vid"]
    assert not check["agree"]
    assert (check["vehicle_disagreements"], check["not_in_img2vid"], check["conflicting_lines"],
            check["unlisted_images"]) == (1, 1, 1, 1)
    assert check["first_disagreements"] == ["0000001: list 1 / img2vid 2"]
    assert check["first_not_in_img2vid"] == ["0001007"]


def test_vehicleid_error_paths(tmp_path):
    root = write_vehicleid(tmp_path / "VehicleID_V1.0")
    lst = root / "train_test_split" / "test_list_800.txt"
    lst.write_text("\n0001001 10\n0001002 ten\n")
    err = _raises_at(lst, 3, load_dataset, "vehicleid", root)
    assert "'ten'" in str(err)
    lst.write_text("0001001 10\n0009999 10\n")
    _raises_at(lst, 2, load_dataset, "vehicleid", root)
    write_vehicleid(root)
    attr = root / "attribute" / "model_attr.txt"
    attr.write_text("1 7\n2 5\n1 8\n")
    err = _raises_at(attr, 3, load_dataset, "vehicleid", root)
    assert "vehicle 1" in str(err)
    write_vehicleid(root)
    (root / "train_test_split" / "train_list.txt").unlink()
    _raises_at(root / "train_test_split" / "train_list.txt", None, load_dataset, "vehicleid", root)
    other = write_vehicleid(tmp_path / "v2")
    _raises_at(other / "train_test_split" / "test_list_2400.txt", None, load_dataset, "vehicleid", other,
               test_sizes=[2400])


# ------------------------------------------------------------------------------------------- CityFlow
def test_cityflow_validation_split(tmp_path):
    root = write_cityflow(tmp_path / "AIC20_ReID")
    ds = load_dataset("cityflow", root)
    assert isinstance(ds, CityFlowDataset) and ds.protocol == "image"
    # 12 ids < 333: seeded, round(12 * 78 / 333) = 3 held out; 2 cameras each -> one query per camera
    held = ds.validation["held_out_ids"]
    assert ds.validation["method"] == "seeded"
    assert len(held) == 3 and set(held) <= set(CITYFLOW_IDS)
    assert [len(ds.train), ds.train.num_ids, len(ds.query), len(ds.gallery), ds.gallery.num_ids] == [36, 9, 6, 48, 12]
    for vid in held:
        assert sorted(ds.query.camids[ds.query.pids == vid].tolist()) == sorted(set(
            ds.gallery.camids[ds.gallery.pids == vid].tolist()))
    assert set(ds.query.pids.tolist()) == set(held)
    assert not set(ds.query.pids.tolist()) & set(ds.train.pids.tolist())
    assert set(ds.query.paths) <= set(ds.gallery.paths)  # queries stay in the gallery (junk rule removes them)
    assert ds.gallery.tracks.tolist() == [k // 2 for k in range(48)]
    # seeded: same seed same split, another seed another split
    again = load_dataset("cityflow", root, val_seed=0)
    assert again.query.paths == ds.query.paths and again.validation == ds.validation
    other = load_dataset("cityflow", root, val_seed=1)
    assert other.validation["held_out_ids"] != held
    # queries_per_id: one query per track first, then a second per track
    three = load_dataset("cityflow", root, queries_per_id=3)
    assert len(three.query) == 9
    for vid in three.validation["held_out_ids"]:
        assert np.unique(three.query.tracks[three.query.pids == vid]).size == 2
    off = load_dataset("cityflow", root, val_ids=0)
    assert [len(off.train), off.query, off.gallery, off.validation] == [48, None, None, {}]


def test_cityflow_full_size_holds_out_78_ids(tmp_path):
    ids = list(range(1, 341))  # full size, but no id above 400: auto -> seeded, 78 ids
    root = write_cityflow(tmp_path / "aic", ids=ids, per_track=1)
    ds = load_dataset("cityflow", root)
    assert ds.validation["method"] == "seeded"
    assert ds.validation["num_held_out_ids"] == 78 and ds.train.num_ids == 340 - 78
    assert len(ds.query) == 78 * 2 and ds.query.num_ids == 78
    assert len(load_dataset("cityflow", root, val_ids=10).query) == 20
    with pytest.raises(ValueError, match="val_split='released': 0 of 340 training ids are above"):
        load_dataset("cityflow", root, val_split="released")


def test_cityflow_released_split_is_vehiclenet_sec_3a(tmp_path):
    """VehicleNet sec. III-A as released: 255 training ids (<= 400), the other 78 give one query per
    camera (first image in name order), the whole original training set is the gallery."""
    ids = list(range(145, 400 + 1)) + list(range(589, 666 + 1))  # 256 ids <= 400 ... trimmed to 255 below
    ids = ids[1:]
    assert (sum(i <= 400 for i in ids), sum(i > 400 for i in ids)) == (255, 78)
    root = write_cityflow(tmp_path / "aic", ids=ids, per_track=2)
    ds = load_dataset("cityflow", root)
    v = ds.validation
    assert v["method"] == "released" and v["val_id_threshold"] == 400
    assert ds.train.num_ids == 255 and (ds.train.pids <= 400).all() and len(ds.train) == 255 * 4
    assert v["held_out_ids"] == list(range(589, 667)) and ds.query.num_ids == 78
    assert len(ds.gallery) == len(ids) * 4 and ds.gallery.num_ids == 333  # the whole training set
    assert len(ds.query) == 78 * 2  # 2 cameras per id -> 2 queries
    names = [Path(p).name for p in ds.gallery.paths]
    for vid in v["held_out_ids"]:
        for cam in set(ds.gallery.camids[ds.gallery.pids == vid].tolist()):
            first = min(n for n, p, c in zip(names, ds.gallery.pids, ds.gallery.camids) if p == vid and c == cam)
            assert [Path(p).name for p, q, c in zip(ds.query.paths, ds.query.pids, ds.query.camids)
                    if q == vid and c == cam] == [first]
    assert not any("released split holds out" in w for w in ds.warnings)
    assert any("holds out 78 id(s)" in w for w in load_dataset("cityflow", root, val_ids=70).warnings)
    seeded = load_dataset("cityflow", root, val_split="seeded")
    assert seeded.validation["method"] == "seeded" and seeded.validation["num_held_out_ids"] == 78
    assert seeded.validation["held_out_ids"] != v["held_out_ids"]


@pytest.mark.parametrize("files", ["both", "txt", "id"])
def test_cityflow_track_files_as_released(tmp_path, files):
    """AIC19's train_track.txt lacks each track's last image (single-image tracks: blank lines);
    train_track_id.txt is complete (1-based unpadded numbers, trailing space). Both are read."""
    root = write_cityflow(tmp_path / "AIC20_ReID", per_track=3)  # 24 tracks of 3 images, 72 images
    tracks = [[3 * t + k + 1 for k in range(3)] for t in range(24)]
    tracks[5] = tracks[5][:1]  # a single-image track: image 17 and 18 join their own tracks below
    tracks.insert(6, [17, 18])
    (root / "train_track_id.txt").write_text("".join(" ".join(map(str, t)) + " \n" for t in tracks))
    (root / "train_track.txt").write_text("".join(" ".join(f"{n:06d}.jpg" for n in t[:-1]) + "\n" for t in tracks))
    if files == "txt":
        (root / "train_track_id.txt").unlink()
    if files == "id":
        (root / "train_track.txt").unlink()
    ds = load_dataset("cityflow", root, val_ids=0)
    t = ds.train.tracks
    record = ds.diagnostics["tracks"]["train"]
    if files == "txt":
        assert int((t >= 0).sum()) == 72 - 25 and ds.diagnostics["untracked_train_images"] == 25
        assert record["used"] == ["train_track.txt"] and record["files"]["train_track.txt"]["blank_lines"] == 1
        said = [w for w in ds.warnings if "25 of 72 image(s) are in no track" in w]
        assert said and "train_track_id.txt is complete" in said[0]
    else:
        assert (t >= 0).all() and np.unique(t).size == 25 and ds.diagnostics["untracked_train_images"] == 0
        assert record["used"] == ["train_track_id.txt"]
        # every track is one vehicle and one camera
        for k in np.unique(t):
            assert np.unique(ds.train.pids[t == k]).size == 1 and np.unique(ds.train.camids[t == k]).size == 1
    if files == "both":
        d = record["disagreement"]
        assert d == {"only_in": {"train_track_id.txt": 25, "train_track.txt": 0}, "lines_inside": 24,
                     "lines_added": 0, "lines_conflicting": 0}
        said = [w for w in ds.warnings if "train_track.txt and train_track_id.txt disagree" in w
                or "train_track_id.txt and train_track.txt disagree" in w]
        assert len(said) == 1 and "25 image(s) tracked only in train_track_id.txt" in said[0]
        assert "1 blank line(s)" in said[0]
    if files == "id":
        assert not any("track" in w for w in ds.warnings)


def test_cityflow_track_union_and_conflicts(tmp_path):
    """The second file's tracks fill images the first leaves out; conflicting lines are counted."""
    root = write_cityflow(tmp_path / "AIC20_ReID")  # 24 tracks of 2, train_track.txt complete
    (root / "train_track_id.txt").write_text("1 2 \n3 4 \n")  # agrees, covers less
    ds = load_dataset("cityflow", root, val_ids=0)
    assert ds.diagnostics["tracks"]["train"]["used"] == ["train_track.txt"] and (ds.train.tracks >= 0).all()
    lines = (root / "train_track.txt").read_text().splitlines()
    (root / "train_track.txt").write_text("\n".join(lines[2:]) + "\n")  # drops images 1-4
    (root / "train_track_id.txt").write_text("1 2 \n3 4 \n5 7 \n")  # 5 7: split over two tracks
    ds = load_dataset("cityflow", root, val_ids=0)
    record = ds.diagnostics["tracks"]["train"]
    assert record["used"] == ["train_track.txt", "train_track_id.txt"] and (ds.train.tracks >= 0).all()
    assert record["disagreement"]["lines_added"] == 2 and record["disagreement"]["lines_conflicting"] == 1
    assert ds.train.tracks[0] == ds.train.tracks[1] != ds.train.tracks[2]
    assert any("1 conflict" in w and "plus 2 track(s) only in train_track_id.txt" in w for w in ds.warnings)


def test_cityflow_unlabelled_sets_and_aic21(tmp_path):
    root = write_cityflow(tmp_path / "AIC21_Track2_ReID", aic21=True)
    ds = load_dataset("aic21", tmp_path)
    assert ds.root == root.absolute()
    assert ds.train.num_ids == 9 and sorted(np.unique(ds.gallery.pids).tolist()) == CITYFLOW_IDS  # "001" -> 1
    assert [len(ds.unlabelled_query), len(ds.unlabelled_test)] == [3, 4]
    assert (ds.unlabelled_query.pids == MISSING).all()
    assert ds.unlabelled_query.camids.tolist() == [3, 4, 5]
    assert ds.unlabelled_test.tracks.tolist() == [0, 0, 1, 1]
    summary = ds.summary()
    assert summary["unlabelled"] == {"query": {"images": 3, "cameras": 3, "tracks": 0},
                                     "test": {"images": 4, "cameras": 2, "tracks": 2}}
    assert "unlabelled_query" not in ds.splits() and json.dumps(summary)


def test_cityflow_error_paths(tmp_path):
    root = write_cityflow(tmp_path / "AIC20_ReID")
    (root / "name_train.txt").write_text("000001.jpg\n\n000999.jpg\n")
    err = _raises_at(root / "name_train.txt", 3, load_dataset, "cityflow", root)
    assert "train_label.xml" in str(err)
    (root / "name_train.txt").unlink()
    (root / "image_train" / "000007.jpg").unlink()
    _raises_at(root / "train_label.xml", 10, load_dataset, "cityflow", root)  # XML order when no list
    write_cityflow(root)
    (root / "train_track.txt").write_text("000001.jpg 000002.jpg\n000002.jpg\n")
    _raises_at(root / "train_track.txt", 2, load_dataset, "cityflow", root)
    (root / "train_label.xml").unlink()
    _raises_at(root / "train_label.xml", None, load_dataset, "cityflow", root)


def test_validation_split_prefers_ids_seen_by_two_cameras():
    from vreid_lightning.data.datasets import Split
    pids = np.repeat(np.arange(10), 4)
    camids = np.where(np.arange(40) % 4 < 2, 1, 2)
    camids[:20] = 1  # ids 0-4 seen by one camera only
    split = Split(paths=[f"{k}.jpg" for k in range(40)], pids=pids, camids=camids)
    for seed in range(5):
        held, train_rows, query_rows = validation_split(split, 4, seed, queries_per_id=3)
        assert set(held.tolist()) <= {5, 6, 7, 8, 9}
        assert len(query_rows) == 12 and not np.isin(pids[train_rows], held).any()


# ------------------------------------------------------------------------------------------- CompCars
def test_compcars_default_and_options(tmp_path):
    root = write_compcars(tmp_path / "CompCars")
    # strict: the first listed file missing on disk stops the load, naming the list and line
    err = _raises_at(root / "data/train_test_split/classification/train.txt", 5, load_dataset, "compcars", root,
                     missing_files="error")
    assert "d1.jpg" in str(err)
    ds = load_dataset("compcars", root)  # default: skip and count
    assert ds.diagnostics["missing_files"] == 1
    assert ds.diagnostics["missing_files_first"] == [str((root / "data/image/78/1/2015/d1.jpg").absolute())]
    assert ds.summary()["diagnostics"]["missing_files"] == 1
    assert ds.protocol == "none" and ds.root == (root / "data").absolute()
    assert len(ds.train) == 4 and (ds.train.camids == MISSING).all()
    assert ds.train.pids.tolist() == [12014, 12014, 20000, 302010]  # model * 10000 + year (unknown = 0)
    assert ds.train.boxes.tolist()[0] == [37, 111, 905, 561]  # "38 112 905 561" 1-based -> 0-based, end excl.
    assert ds.train.attributes["viewpoint"].tolist() == [1, 4, MISSING, 3]
    assert ds.train.attributes["make"].tolist() == [78, 78, 78, 5]
    assert ds.train.attributes["model"].tolist() == [1, 1, 2, 30]
    assert ds.train.attributes["type"].tolist() == [3, 3, 4, MISSING]
    assert any("skipped 1 listed image(s)" in w and "d1.jpg" in w for w in ds.warnings)
    assert any("test.txt: 3 listed image(s) not loaded" in w for w in ds.warnings)
    both = load_dataset("compcars", root, missing_files="skip", use_all=True)
    assert len(both.train) == 6 and both.train.num_ids == 4  # the empty box of test line 3 skipped
    assert any("skipped 1 image(s) with an empty box" in w for w in both.warnings)
    keep = load_dataset("compcars", root, missing_files="skip", use_all=True, invalid_boxes="keep")
    assert len(keep.train) == 7 and keep.train.boxes[-1].tolist() == [MISSING] * 4
    _raises_at(root / "data/label/5/30/2010/c2.txt", None, load_dataset, "compcars", root, missing_files="skip",
               use_all=True, invalid_boxes="error")
    no_unknown = load_dataset("compcars", root, missing_files="skip", use_all=True, unknown_year="skip")
    assert len(no_unknown.train) == 4 and not (no_unknown.train.pids == 20000).any()
    assert any("skipped 2 image(s) of unknown year" in w for w in no_unknown.warnings)


def test_compcars_error_paths(tmp_path):
    root = write_compcars(tmp_path / "CompCars")
    label = root / "data/label/78/1/2014/4bd3.txt"
    label.write_text("4\n1\n1 1 8\n")
    err = _raises_at(label, 3, load_dataset, "compcars", root, missing_files="skip")
    assert "x1 y1 x2 y2" in str(err)
    label.write_text("4\n")
    _raises_at(label, 2, load_dataset, "compcars", root, missing_files="skip")
    write_compcars(root)
    lst = root / "data/train_test_split/classification/train.txt"
    lst.write_text("78/1/2014/3ac218c0c6c378.jpg\n78/1/4bd3.jpg\n")
    _raises_at(lst, 2, load_dataset, "compcars", root)
    lst.write_text("78/1/20x4/3ac218c0c6c378.jpg\n")
    _raises_at(lst, 1, load_dataset, "compcars", root)
    with pytest.raises(ValueError, match="unknown_year='drop'"):
        load_dataset("compcars", root, unknown_year="drop")


# ---------------------------------------------------------------------------------- registry / merge
def test_registry_errors(tmp_path):
    assert set(DATASETS) == {"veri", "vehicleid", "cityflow", "compcars", "custom", "veriwild"}
    with pytest.raises(ValueError, match="known datasets: cityflow, compcars, custom, vehicleid, veri, veriwild"):
        load_dataset("market1501", tmp_path)
    _raises_at(tmp_path / "nowhere", None, load_dataset, "veri", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown option.*val_seed.*accepted"):
        load_dataset("veri", tmp_path, val_seed=3)


def test_merge_disjoint_labels_offsets_and_source(tmp_path):
    veri = load_dataset("veri", write_veri(tmp_path / "VeRi"))
    vid = load_dataset("vehicleid", write_vehicleid(tmp_path / "VehicleID"))
    cars = load_dataset("compcars", write_compcars(tmp_path / "CompCars"), missing_files="skip", use_all=True)
    merged, summary = merge_datasets([veri, vid, cars])
    assert len(merged) == 6 + 5 + 6
    assert [s["id_offset"] for s in summary] == [0, 3, 6] and [s["ids"] for s in summary] == [3, 3, 4]
    assert merged.pids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 8, 9, 8, 7]
    assert merged.attributes["source"].tolist() == [0] * 6 + [1] * 5 + [2] * 6
    for k in range(3):  # no id value shared between sources
        others = merged.pids[merged.attributes["source"] != k]
        assert not np.isin(merged.pids[merged.attributes["source"] == k], others).any()
    # attribute label spaces stay apart; cameras are disjoint too; boxes only for CompCars rows
    assert merged.attributes["veri.colour"][6:].tolist() == [MISSING] * 11
    assert merged.attributes["vehicleid.colour"][:6].tolist() == [MISSING] * 6
    assert merged.camids[:6].tolist() == [1, 2, 1, 3, 2, 4] and (merged.camids[6:] == MISSING).all()
    assert (merged.boxes[:11] == MISSING).all() and merged.boxes[11].tolist() == [37, 111, 905, 561]
    raw, raw_summary = merge_datasets([veri, vid], relabel=False)
    assert [s["id_offset"] for s in raw_summary] == [0, 6]
    assert raw.pids.tolist() == [1, 1, 3, 3, 5, 5, 7, 7, 8, 8, 9]
    with pytest.raises(ValueError, match="no split 'query'"):
        merge_datasets([veri, vid], split="query")


def test_load_vehiclenet_uses_all_compcars_and_only_train_splits(tmp_path):
    roots = {"cityflow": write_cityflow(tmp_path / "AIC20_ReID"), "veri": write_veri(tmp_path / "VeRi"),
             "compcars": write_compcars(tmp_path / "CompCars")}
    merged, summary = load_vehiclenet(roots)  # CompCars: missing files skipped and counted by default
    assert [s["images"] for s in summary] == [48, 6, 6]  # as a source, CityFlow's whole labelled training set
    assert merged.num_ids == 12 + 3 + 4 and len(merged) == 60
    assert summary[2]["diagnostics"]["missing_files"] == 1  # reaches results.json's provenance.dataset.sources
    assert not any("image_query" in p or "image_test" in p for p in merged.paths)


# --------------------------------------------------------------------------------------- inspect CLI
def _inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vreid_lightning.data.inspect", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_inspect_cli(tmp_path):
    root = write_veri(tmp_path / "VeRi")
    good = _inspect("--dataset", "veri", "--root", str(root), "--verify-images")
    assert good.returncode == 0, good.stderr
    summary = json.loads(good.stdout)
    assert summary["splits"]["train"] == {"images": 6, "ids": 3, "cameras": 4,
                                          "attribute_coverage": {"colour": 1.0, "type": 1.0}}
    (root / "name_train.txt").write_text("0001_c001_00016450_0.jpg\n0001_c001_99999999_0.jpg\n")
    bad = _inspect("--dataset", "veri", "--root", str(root))
    assert bad.returncode == 2 and bad.stdout == ""
    assert f"{root / 'name_train.txt'}, line 2:" in bad.stderr and "Traceback" not in bad.stderr
    unknown = _inspect("--dataset", "nope", "--root", str(root))
    assert unknown.returncode == 2 and "known datasets" in unknown.stderr
    cars = write_compcars(tmp_path / "CompCars")
    skip = _inspect("--dataset", "compcars", "--root", str(cars), "--option", "missing_files=skip",
                    "--option", "use_all=true")
    assert skip.returncode == 0 and json.loads(skip.stdout)["splits"]["train"]["images"] == 6
    bad_option = _inspect("--dataset", "compcars", "--root", str(cars), "--option", "verify_images=all")
    assert bad_option.returncode == 2 and "verify_images='all'" in bad_option.stderr
