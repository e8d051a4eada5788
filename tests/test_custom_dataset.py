"""data=custom: your own dataset as an annotations CSV or folder-per-id, written by the synthetic world's
``custom`` layout; counts, the automatic split, every bad input's one error, and tiny runs end to end."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, compose
from vreid_lightning.data.datasets import DatasetFormatError, load_dataset

IDS = 12


@pytest.fixture(scope="module")
def custom_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vreid_lightning.synth import generate

    out = tmp_path_factory.mktemp("custom") / "mydata"
    generate("custom", out, ids=IDS, seed=0, image_size=64, images_per_id=16, workers=1, progress=False)
    return out


def _rows(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((root / "annotations.csv").open()))


def _copy(world: Path, tmp: Path, rows: list[dict[str, str]] | None = None, header: str | None = None) -> Path:
    """A copy of the world's CSV (images stay where they are: absolute paths) with ``rows`` instead."""
    root = tmp / "data"
    root.mkdir()
    rows = _rows(world) if rows is None else rows
    lines = [header or "path,id,camera,timestamp,split"]
    lines += [f"{world / r['path']},{r['id']},{r['camera']},{r['timestamp']},{r['split']}" for r in rows]
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_counts_match_the_annotations(custom_world: Path):
    ds = load_dataset("custom", custom_world)
    count = Counter(r["split"] for r in _rows(custom_world))
    assert {k: len(v) for k, v in ds.splits().items()} == {"train": count["train"], "query": count["query"],
                                                          "gallery": count["gallery"]}
    assert ds.diagnostics["layout"] == "csv" and ds.diagnostics["split"] == {"mode": "given"}
    assert len(ds.diagnostics["annotations_sha256"]) == 64
    assert set(ds.query.pids) <= set(ds.gallery.pids) and not set(ds.train.pids) & set(ds.gallery.pids)
    assert (ds.query.camids > 0).all() and (ds.gallery.timestamps >= 0).all()


def test_folder_per_id_automatic_split(custom_world: Path):
    ds = load_dataset("custom", custom_world / "images")
    total = sum(1 for _ in (custom_world / "images").rglob("*.jpg"))
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == total
    test_ids = set(ds.query.pids) | set(ds.gallery.pids)
    assert len(test_ids) == IDS // 2 and not test_ids & set(ds.train.pids)
    pairs = list(zip(ds.query.pids.tolist(), ds.query.camids.tolist()))
    assert len(pairs) == len(set(pairs))  # one query per identity and camera
    assert ds.diagnostics["split"]["mode"] == "auto" and ds.diagnostics["images_without_camera"] == 0
    again = load_dataset("custom", custom_world / "images")
    other = load_dataset("custom", custom_world / "images", split_seed=1)
    assert again.query.paths == ds.query.paths and other.query.paths != ds.query.paths


def test_csv_without_split_column_is_split_automatically(custom_world: Path, tmp_path: Path):
    rows = _rows(custom_world)
    root = tmp_path / "data"
    root.mkdir()
    (root / "annotations.csv").write_text("camera,path,id\n" + "".join(
        f"{r['camera']},{custom_world / r['path']},car_{r['id']}\n" for r in rows))  # any order, string ids
    ds = load_dataset("custom", root, test_ids=0.25)
    assert len(set(ds.query.pids) | set(ds.gallery.pids)) == round(IDS * 0.25)
    assert ds.diagnostics["string_labels_numbered"]["ids"] == IDS


def _bad(custom_world: Path, tmp_path: Path, edit) -> str:
    rows = _rows(custom_world)
    edit(rows)
    with pytest.raises(DatasetFormatError) as e:
        load_dataset("custom", _copy(custom_world, tmp_path, rows))
    return str(e.value)


def test_missing_file_is_one_error(custom_world: Path, tmp_path: Path):
    def edit(rows):
        rows[3]["path"] = "images/0001/nope.jpg"
    msg = _bad(custom_world, tmp_path, edit)
    assert "annotations.csv, line 5: expected an existing image file" in msg and "(missing file)" in msg


def test_duplicate_path_is_one_error(custom_world: Path, tmp_path: Path):
    def edit(rows):
        rows.append(dict(rows[0]))
    msg = _bad(custom_world, tmp_path, edit)
    assert f"line {len(_rows(custom_world)) + 2}: expected each image once (duplicate path: also on line 2)" in msg


def test_query_id_without_gallery_is_one_error(custom_world: Path, tmp_path: Path):
    rows = _rows(custom_world)
    qid = next(r["id"] for r in rows if r["split"] == "query")

    def edit(rs):
        rs[:] = [r for r in rs if not (r["id"] == qid and r["split"] == "gallery")]
    msg = _bad(custom_world, tmp_path, edit)
    assert "expected a gallery image of every query identity (query id without gallery: 1 identities)" in msg


def test_unknown_split_value_is_one_error(custom_world: Path, tmp_path: Path):
    def edit(rows):
        rows[0]["split"] = "test"
    msg = _bad(custom_world, tmp_path, edit)
    assert "line 2: expected a split value of train, query, gallery (unknown split value), got 'test'" in msg


def test_missing_column_is_one_error(custom_world: Path, tmp_path: Path):
    root = _copy(custom_world, tmp_path, header="path,vehicle,camera,timestamp,split")
    with pytest.raises(DatasetFormatError, match=r"line 1: expected a header with the columns path, id, camera"):
        load_dataset("custom", root)


def test_inspect_names_the_bad_line(custom_world: Path, tmp_path: Path, capsys):
    from vreid_lightning.data.inspect import main

    rows = _rows(custom_world)
    rows[1]["split"] = "val"
    assert main(["--dataset", "custom", "--root", str(_copy(custom_world, tmp_path, rows))]) == 2
    assert "annotations.csv, line 3: expected a split value" in capsys.readouterr().err
    assert main(["--dataset", "custom", "--root", str(custom_world)]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"]["layout"] == "csv"


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_train_and_test_end_to_end(layout: str, custom_world: Path, tmp_path: Path, cache_dir: Path):
    from vreid_lightning.run import run

    root = custom_world if layout == "csv" else custom_world / "images"
    results = run(compose(["+experiment=baseline_synthetic", *TINY, "data=custom", f"data.root={root}", "data.synthetic=null",
                           "trainer.max_epochs=1", "logger=none"], tmp_path))
    ds = load_dataset("custom", root)
    assert results["data"]["train_images"] == len(ds.train)
    assert results["data"]["train_ids"] == ds.train.num_ids
    assert results["data"]["eval_images"] == len(ds.query) + len(ds.gallery)
    feats = np.load(tmp_path / "features.npz")
    assert feats["query_feats"].shape[0] == len(ds.query) and feats["gallery_feats"].shape[0] == len(ds.gallery)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["provenance"]["dataset"]["diagnostics"]["layout"] == layout  # the dataset identity


def test_synth_writes_the_custom_layout(custom_world: Path):
    rows = _rows(custom_world)
    assert {r["split"] for r in rows} == {"train", "query", "gallery"}
    assert all((custom_world / r["path"]).is_file() for r in rows)
    assert len({r["id"] for r in rows}) == IDS
    ds = load_dataset("custom", custom_world)  # the extra columns are attributes
    assert sorted(ds.train.attributes) == ["colour", "type"] and (ds.train.attributes["type"] >= 1).all()


# Every method's synthetic experiment on data=custom, with the overrides docs/datasets.md gives for the
# experiments that set data keys of their own (rnn_ha: data.synthetic; vehiclenet: dataset, options, sources).
METHOD_OVERRIDES = {  # what these experiments need beyond data=custom (sizes: +debug=tiny)
    "scan_synthetic": [],
    "ram_synthetic": ["data.attributes=[colour,type]"],
    "rnn_ha_synthetic": ["data.attributes=[colour,type]"],
    "vehiclenet_synthetic": ["data.dataset=custom", "~data.dataset_options.val_seed", "source_set=none"],
}


@pytest.mark.parametrize("name", sorted(METHOD_OVERRIDES))
def test_every_method_runs_on_custom(name: str, custom_world: Path, tmp_path: Path):
    from vreid_lightning.run import run

    over = [*TINY, "data=custom", f"data.root={custom_world}", "data.synthetic=null", *METHOD_OVERRIDES[name]]
    results = run(compose([f"+experiment={name}", *over], tmp_path))
    ds = load_dataset("custom", custom_world)  # the custom layout's own test set was evaluated, whole
    assert results["data"]["eval_images"] == len(ds.query) + len(ds.gallery) and "partial" not in results


def test_folders_root_one_level_too_high_is_one_error(custom_world: Path):
    with pytest.raises(DatasetFormatError, match=r"mydata: expected at least 2 identities .*ROOT/<id>/<image>"):
        load_dataset("custom", custom_world, layout="folders")  # the identity folders are under images/
