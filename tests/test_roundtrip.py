"""Round trip: every layout the synthetic world writes is read back by the real parser with exact counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vreid_lightning.data.datasets import load_dataset
from vreid_lightning.synth import generate

KW = dict(seed=0, image_size=48, workers=1, progress=False, images_per_id=6)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    base = tmp_path_factory.mktemp("roundtrip")
    out = {}
    # CompCars: seed 4, whose 12 cars include one of unknown year (about 8% of cars are), so that the
    # unknown_year option has rows to act on
    for layout, ids, seed in (("veri", 12, 0), ("vehicleid", 30, 0), ("cityflow", 12, 0), ("compcars", 12, 4)):
        root = base / layout
        out[layout] = (root, generate(layout, root, ids=ids, **{**KW, "seed": seed})["counts"])
    return out


def test_veri_roundtrip(worlds):
    root, c = worlds["veri"]
    ds = load_dataset("veri", root, verify_images="full")
    assert len(ds.train) == c["train_images"] and ds.train.num_ids == c["train_ids"]
    assert len(ds.query) == c["query_images"]
    assert len(ds.gallery) == c["test_images"] and ds.gallery.num_ids == c["test_ids"]
    assert set(ds.query.pids) <= set(ds.gallery.pids)
    assert not set(ds.train.pids) & set(ds.gallery.pids)
    assert (ds.train.attributes["colour"] >= 1).all() and (ds.train.attributes["type"] >= 1).all()
    assert np.unique(ds.gallery.tracks[ds.gallery.tracks >= 0]).size == c["test_tracks"]
    assert not ds.warnings
    assert ds.attribute_names["colour"][7] == "white" and ds.attribute_names["type"][1] == "sedan"  # list_*.txt


def test_vehicleid_roundtrip(worlds):
    root, c = worlds["vehicleid"]
    ds = load_dataset("vehicleid", root, verify_images="full")
    assert len(ds.train) == c["train_images"] and ds.train.num_ids == c["train_ids"]
    for size in ("800", "1600", "2400"):
        assert len(ds.test_lists[size]) == c[f"test_list_{size}"]["images"]
        assert ds.test_lists[size].num_ids == c[f"test_list_{size}"]["ids"]
    assert (ds.train.camids == -1).all()
    # partial attribute labels are kept as -1 (never dropped)
    everyone = [ds.train, *ds.test_lists.values()]
    labelled = {int(p) for s in everyone for p, m in zip(s.pids, s.attributes["model"]) if m >= 0}
    assert len(labelled) == c["model_labelled"]
    assert (ds.train.attributes["model"] == -1).any()
    # attribute names as released: UTF-8 Chinese model names, CRLF colour names, every labelled id named
    from vreid_lightning.data.datasets.vehicleid import check_img2vid
    from vreid_lightning.synth.models import CATALOGUE

    assert (root / "attribute" / "color_names.txt").read_bytes().count(b"\r\n") == 7
    assert len(ds.attribute_names["model"]) == len(CATALOGUE) and ds.attribute_names["colour"][5] == "white"
    assert all(not n.isascii() for n in ds.attribute_names["model"].values())
    models = ds.train.attributes["model"]
    assert set(models[models >= 0].tolist()) <= set(ds.attribute_names["model"])
    check = check_img2vid(ds)
    assert check["agree"] and check["listed_images"] == c["images"] and check["unlisted_images"] == 0


def test_cityflow_roundtrip(worlds):
    root, c = worlds["cityflow"]
    ds = load_dataset("cityflow", root, verify_images="full")
    assert len(ds.gallery) == c["train_images"]  # the whole labelled training set is the validation gallery
    assert ds.train.num_ids + np.unique(ds.query.pids).size == c["train_ids"]
    assert not set(ds.train.pids) & set(ds.query.pids)
    assert len(ds.unlabelled_query) == c["query_images"] and len(ds.unlabelled_test) == c["test_images"]


def test_compcars_roundtrip(worlds):
    root, c = worlds["compcars"]
    ds = load_dataset("compcars", root, verify_images="full")
    assert len(ds.train) == c["train_images"]
    both = load_dataset("compcars", root, use_all=True)
    assert len(both.train) == c["train_images"] + c["test_images"]
    assert both.train.num_ids == c["classes"]
    assert (both.train.boxes[:, 2] > both.train.boxes[:, 0]).all()
    assert c["unknown_year_images"] > 0
    skipped = load_dataset("compcars", root, use_all=True, unknown_year="skip")
    assert len(skipped.train) == len(both.train) - c["unknown_year_images"]
    assert any("unknown" in w for w in skipped.warnings)


@pytest.mark.parametrize("layout", ["veri", "vehicleid", "cityflow", "compcars"])
def test_inspect_reads_every_synthetic_layout(worlds, layout):
    import json
    import subprocess
    import sys

    root, _ = worlds[layout]
    p = subprocess.run([sys.executable, "-m", "vreid_lightning.data.inspect", "--dataset", layout, "--root", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["splits"]["train"]["images"] > 0
