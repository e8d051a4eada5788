"""VERI-Wild and VERI-Wild 2.0: the parser on the synthetic layouts and on a hand-made fixture of
real-format lines, its errors, the synthetic writer's counts, inspect, and the experiments' fast_dev_runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, compose
from vreid_lightning.data.datasets import DatasetFormatError, load_dataset
from vreid_lightning.errors import ConfigError

MANIFEST = "synth_manifest.json"


def _counts(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())["counts"]


# ---------------------------------------------------------------------------------------- synthetic layouts
@pytest.mark.parametrize("size", [3000, 5000, 10000])
def test_synthetic_layout_read_with_exact_counts(veriwild_world: Path, size: int):
    counts = _counts(veriwild_world)
    ds = load_dataset("veriwild", veriwild_world, test_size=size)
    assert (len(ds.train), ds.train.num_ids) == (counts["train_images"], counts["train_ids"])
    expected = counts[f"test_{size}"]
    assert (len(ds.query), ds.query.num_ids) == (expected["query"], expected["ids"])
    # test_<N>.txt lists the queries too; the gallery is the list without them
    assert len(ds.gallery) == expected["gallery"] == expected["gallery_lines"] - expected["query"]
    assert ds.diagnostics["test_set"]["query_images_in_gallery_list"] == expected["query"]
    assert not set(ds.query.paths) & set(ds.gallery.paths)
    assert set(np.unique(ds.query.pids)) == set(np.unique(ds.gallery.pids))
    assert not set(np.unique(ds.train.pids)) & set(np.unique(ds.query.pids))
    # every vehicle_info field read: cameras, times, three attributes, with their names
    for split in (ds.train, ds.query, ds.gallery):
        assert (split.camids > 0).all() and (split.timestamps > 0).all()
        for a in ("model", "type", "colour"):
            assert (split.attributes[a] >= 0).all()
    assert set(ds.attribute_names["colour"].values()) <= {"yellow", "orange", "green", "gray", "red", "blue", "white",
                                                          "golden", "brown", "black"}
    assert ds.warnings == []


def test_test_sets_are_nested_like_the_release(veriwild_world: Path):
    ids = {s: set(load_dataset("veriwild", veriwild_world, test_size=s).query.pids.tolist())
           for s in (3000, 5000, 10000)}
    assert ids[3000] < ids[5000] < ids[10000]


@pytest.mark.parametrize("subset", ["A", "B", "All"])
def test_synthetic_veriwild2_read_with_exact_counts(veriwild_world: Path, subset: str):
    counts = _counts(veriwild_world)
    ds = load_dataset("veriwild", veriwild_world, version=2, subset=subset)
    assert len(ds.train) == counts["train_images"]  # the same training set
    expected = counts[f"2.0-{subset}"]
    assert (len(ds.query), len(ds.gallery), ds.query.num_ids) == (expected["query"], expected["gallery"],
                                                                   expected["ids"])
    assert (ds.query.camids == -1).all() and (ds.gallery.camids == -1).all()  # no camera: no junk rule
    v1_test = set(load_dataset("veriwild", veriwild_world).query.pids.tolist())
    assert not v1_test & set(ds.query.pids.tolist())


def test_protocol_junk_rule_for_v1_and_none_for_v2(veriwild_world: Path):
    from vreid_lightning.data.datamodule import ReIDDataModule

    for version, has_cams in ((1, True), (2, False)):
        dm = ReIDDataModule("veriwild", str(veriwild_world), dataset_options={"version": version, "test_size": 3000},
                            attributes=["colour"], num_workers=0)
        dm.setup()
        cams = dm.eval_set.split.camids
        assert bool((cams >= 0).all()) is has_cams


def test_scale_parameter_and_cli(tmp_path: Path):
    from vreid_lightning.synth.__main__ import main
    from vreid_lightning.synth.generate import ids_for_scale

    assert ids_for_scale("veriwild", 0.001) == 41 and ids_for_scale("veriwild2", 1.0) == 40_671
    with pytest.raises(ValueError, match="scale must be in"):
        ids_for_scale("veriwild", 1.5)
    out = tmp_path / "VERI-Wild"
    assert main(["--layout", "veriwild", "--out", str(out), "--scale", "0.0005", "--image-size", "32",
                 "--workers", "0", "--quiet"]) == 0
    counts = _counts(out)
    ds = load_dataset("veriwild", out, test_size=10000)
    assert counts["train_ids"] + counts["test_ids"] == 20
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (
        counts["train_images"], counts["test_10000"]["query"], counts["test_10000"]["gallery"])
    assert not (out / "test_split").exists()  # --layout veriwild: no 2.0 test split


def test_inspect_prints_every_test_set(veriwild_world: Path, capsys):
    from vreid_lightning.data.inspect import main

    assert main(["--dataset", "veriwild", "--root", str(veriwild_world)]) == 0
    sets = json.loads(capsys.readouterr().out)["checks"]["test_sets"]
    counts = _counts(veriwild_world)
    assert sorted(sets) == ["10000", "2.0-A", "2.0-All", "2.0-B", "3000", "5000"]
    for size in (3000, 5000, 10000):
        assert sets[str(size)]["query"]["images"] == counts[f"test_{size}"]["query"]
        assert sets[str(size)]["gallery_list"]["images"] == counts[f"test_{size}"]["gallery_lines"]
    for subset in ("A", "B", "All"):
        assert sets[f"2.0-{subset}"]["gallery_list"]["images"] == counts[f"2.0-{subset}"]["gallery"]


# ---------------------------------------------------------------------------------------- real-format fixture
def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 90, 90)).save(path, "JPEG")


# Lines in the released format (peers' parsers: FastReID veriwild.py, PVEN preprocess_veriwild.py): a header,
# then vid/imgid;camera;time;model;type;colour. The odd lines a loader must survive: a UTF-8 BOM, CRLF line
# ends, a blank line, trailing spaces, a Chinese model name, an identical repeated line.
INFO = [
    "id/image;Camera ID;Time;Model;Type;Color",
    "00001/000001;21;2018-03-11 13:01:07;Audi-A4;sedan;white",
    "00001/000002;21;2018-03-11 13:02:07;Audi-A4;sedan;white",
    "00001/000003;35;2018-03-12 08:00:00;Audi-A4;sedan;white  ",
    "",
    "00002/000004;35;2018-03-11 09:00:00;大众-帕萨特;sedan;black",
    "00002/000005;7;2018-03-11 10:00:00;大众-帕萨特;sedan;black",
    "00002/000005;7;2018-03-11 10:00:00;大众-帕萨特;sedan;black",
    "00003/000006;7;2018-03-13 10:00:00;Ford-Transit;van;blue",
    "00003/000007;21;2018-03-13 11:00:00;Ford-Transit;van;blue",
    "00004/000008;35;2018-03-14 11:00:00;Ford-Transit;van;silver",
    "00004/000009;7;2018-03-14 11:30:00;Ford-Transit;van;silver",
]
LISTS = {
    "train_list.txt": ["00001/000001", "00001/000002", "00001/000003", "00002/000004", "00002/000005"],
    "test_3000.txt": ["00003/000006", "00003/000007", "00004/000008", "00004/000009"],
    "test_3000_query.txt": ["00003/000006", "00004/000008"],
}


def _write(path: Path, lines: list[str], crlf: bool = True, bom: bool = False) -> None:
    end = "\r\n" if crlf else "\n"
    path.write_bytes(("\ufeff" if bom else "").encode() + "".join(line + end for line in lines).encode("utf-8"))


@pytest.fixture
def real_format(tmp_path: Path) -> Path:
    root = tmp_path / "VERI-Wild"
    for line in INFO[1:]:
        if line:
            vid, img = line.split(";")[0].split("/")
            _jpeg(root / "images" / vid / f"{img}.jpg")
    split = root / "train_test_split"
    split.mkdir(parents=True)
    _write(split / "vehicle_info.txt", INFO, bom=True)
    for name, lines in LISTS.items():
        _write(split / name, [f"{line} " for line in lines] + [""])
    return tmp_path  # the parent: the parser finds VERI-Wild/ itself


def test_real_format_lines_parsed_with_expected_counts(real_format: Path):
    ds = load_dataset("veriwild", real_format, test_size=3000)
    assert (len(ds.train), ds.train.num_ids) == (5, 2)
    assert (len(ds.query), len(ds.gallery)) == (2, 2)  # test_3000.txt's 4 lines minus the 2 queries
    assert ds.diagnostics["vehicle_info"]["lines"] == 9 and ds.diagnostics["vehicle_info"]["duplicate_lines"] == 1
    assert ds.diagnostics["vehicle_info"]["header"].startswith("id/image;Camera ID")
    assert any("1 repeated identical line" in w for w in ds.warnings)
    assert ds.train.camids.tolist() == [21, 21, 35, 35, 7]
    assert int(ds.train.timestamps[1] - ds.train.timestamps[0]) == 60  # seconds
    names = ds.attribute_names
    assert sorted(names["model"].values()) == ["Audi-A4", "Ford-Transit", "大众-帕萨特"]
    assert [names["colour"][c] for c in ds.gallery.attributes["colour"]] == ["blue", "silver"]
    assert [names["type"][t] for t in ds.train.attributes["type"]] == ["sedan"] * 5
    assert ds.gallery.paths[0].endswith("images/00003/000007.jpg")


def test_header_less_copy_keeps_its_first_image(real_format: Path):
    _write(real_format / "VERI-Wild" / "train_test_split" / "vehicle_info.txt", INFO[1:], crlf=False)
    ds = load_dataset("veriwild", real_format, test_size=3000)
    assert len(ds.train) == 5 and ds.diagnostics["vehicle_info"]["header"] is None
    assert any("no header line" in w for w in ds.warnings)


def _expect_error(root: Path, match: str, error=DatasetFormatError, **options):
    with pytest.raises(error) as info:
        load_dataset("veriwild", root, **options)
    assert match in str(info.value), str(info.value)
    return str(info.value)


def test_missing_split_file_is_one_clear_error(real_format: Path):
    (real_format / "VERI-Wild" / "train_test_split" / "test_3000_query.txt").unlink()
    _expect_error(real_format, "test_3000_query.txt: expected the query list of test size 3000 (not found)",
                  test_size=3000)


def test_image_listed_but_not_in_vehicle_info_is_one_clear_error(real_format: Path):
    split = real_format / "VERI-Wild" / "train_test_split"
    _write(split / "test_3000.txt", LISTS["test_3000.txt"] + ["00004/000010"])
    _jpeg(real_format / "VERI-Wild" / "images" / "00004" / "000010.jpg")
    msg = _expect_error(real_format, "test_3000.txt, line 5: expected every listed image in", test_size=3000)
    assert "vehicle_info.txt" in msg and "00004/000010" in msg


def test_malformed_vehicle_info_line_is_one_clear_error(real_format: Path):
    bad = INFO[:3] + ["00001/000003;35;2018-03-12 08:00:00;Audi-A4;sedan"] + INFO[4:]
    _write(real_format / "VERI-Wild" / "train_test_split" / "vehicle_info.txt", bad)
    _expect_error(real_format, "vehicle_info.txt, line 4: expected '<vid>/<imgid>;camera;time;model;type;colour' "
                  "(6 fields", test_size=3000)


def test_unreadable_time_is_one_clear_error(real_format: Path):
    bad = INFO[:2] + ["00001/000002;21;yesterday;Audi-A4;sedan;white"] + INFO[3:]
    _write(real_format / "VERI-Wild" / "train_test_split" / "vehicle_info.txt", bad)
    _expect_error(real_format, "vehicle_info.txt, line 3: expected a time", test_size=3000)


def test_test_size_that_does_not_exist_is_one_clear_error(real_format: Path):
    _expect_error(real_format, "test_5000.txt: expected the gallery list of test size 5000 (not found; test sizes "
                  "present: [3000]", test_size=5000)
    _expect_error(real_format, "test_size='large': expected one of [3000, 5000, 10000]", ConfigError,
                  test_size="large")


def test_missing_image_and_missing_v2_folder_are_clear_errors(real_format: Path):
    _expect_error(real_format, "test_split: expected the VERI-Wild 2.0 list folder test_split/ (not found; set "
                  "dataset_options.v2_root", version=2)
    _expect_error(real_format, "subset='C'", ConfigError, version=2, subset="C")
    (real_format / "VERI-Wild" / "images" / "00002" / "000005.jpg").unlink()
    _expect_error(real_format, "train_list.txt, line 5: expected the listed image", test_size=3000)


def test_v2_lines_resolved_against_the_root_or_the_phase_folder(tmp_path: Path, real_format: Path):
    v2 = tmp_path / "VERI-Wild2"
    _jpeg(v2 / "query" / "q1.jpg")
    _jpeg(v2 / "gallery" / "g" / "g1.jpg")  # listed relative to gallery/ (PVEN's join)
    _jpeg(v2 / "gallery" / "g" / "g2.jpg")
    (v2 / "test_split").mkdir()
    _write(v2 / "test_split" / "All_query.txt", ["query/q1.jpg 7"])
    _write(v2 / "test_split" / "All_gallery.txt", ["g/g1.jpg 7", "g/g2.jpg 8"])
    ds = load_dataset("veriwild", real_format, version=2, v2_root=str(v2))
    assert (len(ds.query), len(ds.gallery)) == (1, 2) and ds.gallery.pids.tolist() == [7, 8]
    _write(v2 / "test_split" / "All_gallery.txt", ["g/g1.jpg 7", "g/g3.jpg 8"])
    _expect_error(real_format, "All_gallery.txt, line 2: expected the listed image", version=2, v2_root=str(v2))


# ---------------------------------------------------------------------------------------- experiments
def _tiny_veriwild(name: str, world: Path, extra: list[str]) -> list[str]:
    # the experiment at its tiny sizes, on the given VERI-Wild layout instead of the tiny world
    return [f"+experiment={name}", *TINY, f"data.root={world}", "data.synthetic=null", "trainer.fast_dev_run=true",
            "model.figures=null", *extra]


@pytest.mark.parametrize("name, extra", [
    ("baseline_veriwild", ["data.dataset_options.test_size=3000"]),
    ("baseline_veriwild", ["data.dataset_options.version=2", "data.dataset_options.subset=B"]),
    ("ram_veriwild", ["data.dataset_options.test_size=5000"]),
])
def test_experiment_fast_dev_run_on_the_synthetic_layout(name: str, extra: list[str], tmp_path: Path,
                                                         veriwild_world: Path):
    from vreid_lightning.run import run

    cfg = compose(_tiny_veriwild(name, veriwild_world, extra), tmp_path)
    assert cfg.data.dataset == "veriwild"
    results = run(cfg)
    assert {"mAP", "rank1", "mINP"} <= set(results["partial_test"])  # fast_dev_run: a cut-short test (runner.results)
    test_set = results["provenance"]["dataset"]["diagnostics"]["test_set"]  # recorded in results.json
    assert test_set["version"] == (2 if "version=2" in " ".join(extra) else 1)


def test_vehiclenet_veriwild_merges_the_papers_four_sources_into_a_new_target(tmp_path: Path):
    cfg = compose(["+experiment=vehiclenet_veriwild"], tmp_path)
    assert cfg.data.dataset == "veriwild"
    assert sorted(s["dataset"] for s in cfg.source_sets["all"]) == ["cityflow", "compcars", "vehicleid", "veri"]
    assert list(cfg.stages) == ["stage1", "stage2"]
    # its fast_dev_run (both stages, real-layout sources) is in test_vehiclenet.py, with the family's others


def test_conflicting_lines_are_an_error_and_extra_list_fields_a_counted_warning(real_format: Path):
    split = real_format / "VERI-Wild" / "train_test_split"
    _write(split / "train_list.txt", [f"{line} 0 23" for line in LISTS["train_list.txt"][:2]]
           + LISTS["train_list.txt"][2:])
    ds = load_dataset("veriwild", real_format, test_size=3000)
    assert len(ds.train) == 5 and any(w.startswith("2 list line(s) with fields after") for w in ds.warnings)
    _write(split / "vehicle_info.txt", INFO + ["00001/000002;22;2018-03-11 13:02:07;Audi-A4;sedan;white"])
    _expect_error(real_format, "vehicle_info.txt, line 13: expected one line per image (1/000002 was given other "
                  "values on line 3)", test_size=3000)
