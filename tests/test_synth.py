"""Tests of the synthetic vehicle world (vreid_lightning.synth): determinism, layout invariants,
the world statistics, 3D consistency of marks, and the CLI."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vreid_lightning.evaluation.tta import read_boxes
from vreid_lightning.synth import (
    BOXES, MANIFEST, build_world, generate, render_view, schedule_identity, type_colour_sharing,
)
from vreid_lightning.synth.geometry import MARK_KINDS
from vreid_lightning.synth.world import sample_identities

REPO = Path(__file__).resolve().parents[1]
VERI_NAME = re.compile(r"^\d{4}_c\d{3}_\d{8}_\d\.jpg$")
GB2312 = '<?xml version="1.0" encoding="gb2312" ?>'
TINY = dict(image_size=40, images_per_id=5, workers=1, progress=False)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _xml(path: Path) -> ET.Element:
    text = path.read_bytes().decode("ascii")
    assert text.startswith(GB2312), f"{path} must start with the gb2312 declaration"
    return ET.fromstring(text[len(GB2312):])


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def veri(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "VeRi"
    generate("veri", out, ids=16, seed=3, image_size=40, images_per_id=8, workers=1, progress=False)
    return out


def test_same_seed_is_byte_identical_across_worker_counts(tmp_path):
    generate("veri", tmp_path / "a", 12, seed=5, **TINY)
    generate("veri", tmp_path / "b", 12, seed=5, **dict(TINY, workers=2))  # a process pool
    generate("veri", tmp_path / "c", 12, seed=6, **TINY)
    a, b, c = (_hashes(tmp_path / d) for d in "abc")
    assert len(a) > 50 and a == b
    jpgs_a = {h for k, h in a.items() if k.endswith(".jpg")}
    jpgs_c = {h for k, h in c.items() if k.endswith(".jpg")}
    assert not jpgs_a & jpgs_c, "another seed must give other images"


def test_veri_layout_invariants(veri):
    train, query, test = (sorted(os.listdir(veri / f"image_{s}")) for s in ("train", "query", "test"))
    for split, names in (("train", train), ("query", query), ("test", test)):
        assert names == sorted(_lines(veri / f"name_{split}.txt"))
        assert all(VERI_NAME.match(n) for n in names), names[:3]
    vid = lambda n: int(n[:4])  # noqa: E731
    cam = lambda n: int(n[6:9])  # noqa: E731
    train_ids, test_ids, query_ids = {vid(n) for n in train}, {vid(n) for n in test}, {vid(n) for n in query}
    assert train_ids and test_ids and not train_ids & test_ids
    assert query_ids == test_ids
    assert set(query) <= set(test)
    for q in query:  # the query file is the gallery file, and the gallery has the id in another camera
        assert (veri / "image_query" / q).read_bytes() == (veri / "image_test" / q).read_bytes()
        assert any(vid(g) == vid(q) and cam(g) != cam(q) for g in test)
    per_cam = {(vid(q), cam(q)) for q in query}
    assert len(per_cam) == len(query) == len({(vid(n), cam(n)) for n in test}), "one query per (id, camera)"
    world = build_world(16, 3)
    for name, root, files in (("train_label.xml", "TrainingImages", train), ("test_label.xml", "TestImages", test)):
        tree = _xml(veri / name)
        assert tree.tag == root
        items = tree.find("Items")
        listed = [it.get("imageName") for it in items]
        assert sorted(listed) == files and items.get("number") == str(len(files))
        for it in items:
            ident = world.identity(int(it.get("vehicleID")))
            assert it.get("vehicleID") == it.get("imageName")[:4] and it.get("cameraID") == it.get("imageName")[5:9]
            assert (int(it.get("colorID")), int(it.get("typeID"))) == (ident.colour_id, ident.type_id)
    tracked = [t for line in _lines(veri / "test_track.txt") for t in line.split() if t.endswith(".jpg")]
    assert sorted(tracked) == test
    gt, jk = _lines(veri / "gt_image.txt"), (veri / "jk_image.txt").read_text().splitlines()
    assert len(gt) == len(jk) == len(query)
    for q, g, j in zip(_lines(veri / "name_query.txt"), gt, jk):
        assert all(vid(x) == vid(q) and cam(x) != cam(q) for x in g.split()) and g.split()
        assert q in j.split() and all(cam(x) == cam(q) for x in j.split())
    assert _lines(veri / "list_color.txt")[0] == "1 yellow" and _lines(veri / "list_type.txt")[-1] == "9 estate"
    assert _lines(veri / "camera_ID.txt")[:2] == ["c001", "c002"]
    timestamps = {}
    for n in train + test:  # tracks: consecutive frames of one camera have increasing timestamps
        timestamps.setdefault((vid(n), cam(n)), []).append(int(n[10:18]))
    assert any(len(t) >= 2 for t in timestamps.values())


def test_type_colour_sharing_at_veri_scale():
    idents = sample_identities(776, 0)  # the world model alone, no rendering
    assert type_colour_sharing(idents) >= 0.70
    assert type_colour_sharing(idents, min_others=3) > type_colour_sharing(idents, min_others=30)
    assert len({i.model_id for i in idents}) >= 40
    colours = np.bincount([i.colour_id for i in idents], minlength=11)
    assert colours[[4, 7, 10]].sum() > 0.55 * len(idents), "white/black/gray dominate"
    types = np.bincount([i.type_id for i in idents], minlength=10)
    assert types[[1, 2]].sum() > 0.5 * len(idents), "sedans and SUVs dominate"
    years = [i.year for i in idents]
    assert None in years and any(y is not None for y in years), "CompCars needs some unknown years"


@pytest.mark.parametrize("ids", [100, 200])
def test_type_colour_confusers_at_default_sizes(ids):
    """>= 70% of identities share (type, colour) with >= 3 others at 100 and 200 ids, for every seed."""
    from vreid_lightning.synth.palette import PASSENGER_TYPES

    for seed in range(6):
        idents = sample_identities(ids, seed)
        ratio = type_colour_sharing(idents)
        assert ratio >= 0.70, f"seed {seed}: only {ratio:.2f} share their (type, colour) with >= 3 others"
        # the concentration comes from the traffic tables, not from a single (type, colour)
        assert len({(i.type_id, i.colour_id) for i in idents}) >= 8
        assert len({i.type_id for i in idents}) >= 5
    assert type_colour_sharing(sample_identities(ids, 0, PASSENGER_TYPES)) >= 0.70  # CompCars' cars only


def test_identity_depends_on_seed_and_id_alone():
    """The (type, colour) draw keeps every identity a function of (seed, vid): a bigger world extends a smaller."""
    small, big = sample_identities(40, 5), sample_identities(120, 5)
    assert small == big[:40]
    assert sample_identities(40, 6) != small


def _render(ident, view, cam, kinds, size=128):
    img, _ = render_view(ident, view, cam, size, np.random.default_rng(7), mark_kinds=kinds)
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("kind, seen_from, hidden_from", [("windshield", 0.0, 180.0), ("rear", 180.0, 0.0)])
def test_marks_are_glued_to_their_3d_face(kind, seen_from, hidden_from):
    world = build_world(60, 0)
    ident = next(i for i in world.identities if any(m.kind == kind for m in i.marks) and i.type_id == 1)
    base = schedule_identity(world, ident, 8)[0]
    cam = world.cameras[base.cam - 1]
    without = frozenset(MARK_KINDS[1:]) - {kind}
    for az, visible in ((seen_from, True), (hidden_from, False)):
        view = replace(base, azimuth=az, elevation=20.0, res=1.0)
        diff = np.abs(_render(ident, view, cam, None) - _render(ident, view, cam, without)).max(-1)
        if visible:  # discernible at the default size: several clearly changed pixels
            assert (diff > 30).sum() >= 4, f"{kind} mark not visible at azimuth {az}"
        else:
            assert diff.max() == 0, f"{kind} mark drawn at azimuth {az} where its face is turned away"


def test_render_returns_box_inside_crop():
    world = build_world(4, 0, style="web", cameras=2)
    ident = world.identity(1)
    view = schedule_identity(world, ident, 4)[0]
    img, box = render_view(ident, view, world.cameras[view.cam - 1], 64, np.random.default_rng(0), scene=True)
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
    assert (x1 - x0) * (y1 - y0) < 0.9 * img.width * img.height, "a scene is larger than the car"


EXPECTED = {
    "veri": ["image_train", "image_query", "image_test", "name_train.txt", "name_query.txt", "name_test.txt",
             "train_label.xml", "test_label.xml", "test_track.txt", "gt_image.txt", "jk_image.txt",
             "list_color.txt", "list_type.txt", "camera_ID.txt"],
    "vehicleid": ["image", "attribute/img2vid.txt", "attribute/model_attr.txt", "attribute/color_attr.txt",
                  "train_test_split/train_list.txt", "train_test_split/test_list_800.txt",
                  "train_test_split/test_list_1600.txt", "train_test_split/test_list_2400.txt"],
    "cityflow": ["image_train", "image_query", "image_test", "name_train.txt", "name_query.txt", "name_test.txt",
                 "train_label.xml", "train_track.txt", "train_track_id.txt", "test_track.txt", "test_track_id.txt"],
    "compcars": ["data/image", "data/label", "data/misc/attributes.txt",
                 "data/train_test_split/classification/train.txt", "data/train_test_split/classification/test.txt"],
}


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_each_layout_writes_the_documented_files(layout, tmp_path):
    out = tmp_path / layout
    manifest = generate(layout, out, 12, seed=2, **TINY)
    for rel in EXPECTED[layout]:
        assert (out / rel).exists(), f"{layout}: missing {rel}"
    files = len(list(out.rglob("*.jpg")))
    duplicated = manifest["counts"]["query_images"] if layout == "veri" else 0  # VeRi queries are also in image_test
    assert manifest["counts"]["images"] == files - duplicated > 0
    assert (out / MANIFEST).is_file()
    # the tight vehicle boxes (VehicleNet's cropped images): one row per written image, inside it
    rows = [ln.split(",") for ln in _lines(out / BOXES)[1:]]
    jpgs = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert sorted(r[0] for r in rows) == jpgs and manifest["boxes"] == BOXES
    fill = []
    for rel, *box in rows:
        x0, y0, x1, y1 = map(int, box)
        w, h = Image.open(out / rel).size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (rel, box, (w, h))
        fill.append((x1 - x0) * (y1 - y0) / (w * h))
    assert np.mean(fill) < 0.95 and min(fill) < 0.9, "crops have margins, scenes are larger than the car"
    assert sorted(read_boxes(out / BOXES)) == jpgs  # evaluate --extract-crops reads it
    if layout == "vehicleid":
        rows = [ln.split() for ln in _lines(out / "attribute/img2vid.txt")]
        assert all(re.fullmatch(r"\d{7}", s) and (out / "image" / f"{s}.jpg").is_file() for s, _ in rows)
        ids = lambda f: {int(v) for _, v in (ln.split() for ln in _lines(out / "train_test_split" / f))}  # noqa: E731
        small, medium, large = ids("test_list_800.txt"), ids("test_list_1600.txt"), ids("test_list_2400.txt")
        assert small <= medium <= large and not large & ids("train_list.txt")
        models = dict(map(int, ln.split()) for ln in _lines(out / "attribute/model_attr.txt"))
        colours = dict(map(int, ln.split()) for ln in _lines(out / "attribute/color_attr.txt"))
        assert set(colours) <= set(models) and all(0 <= c <= 6 for c in colours.values())
    if layout == "cityflow":
        train = _lines(out / "name_train.txt")
        assert train[0] == "000001.jpg" and all(re.fullmatch(r"\d{6}\.jpg", n) for n in train)
        tree = _xml(out / "train_label.xml")
        assert sorted(it.get("imageName") for it in tree.find("Items")) == train
        assert set(tree.find("Items")[0].attrib) == {"imageName", "vehicleID", "cameraID"}
        raw = (out / "test_track_id.txt").read_text().splitlines()
        assert raw and all(ln.endswith(" ") for ln in raw)
        assert not (out / "query_label.xml").exists(), "AIC20 query/test are unlabelled"
    if layout == "compcars":
        assert _lines(out / "data/misc/attributes.txt")[0] == \
            "model_id maximum_speed displacement door_number seat_number type"
        rel = _lines(out / "data/train_test_split/classification/train.txt")[0]
        assert re.fullmatch(r"\d+/\d+/(\d{4}|unknown)/[0-9a-f]{14}\.jpg", rel)
        label = (out / "data/label" / rel).with_suffix(".txt").read_text().split("\n")
        x1, y1, x2, y2 = map(int, label[2].split())
        w, h = Image.open(out / "data/image" / rel).size
        assert int(label[0]) in (-1, 1, 2, 3, 4, 5) and label[1] == "1" and 1 <= x1 < x2 <= w and 1 <= y1 < y2 <= h


def test_generate_refuses_foreign_directory_and_bad_arguments(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate("veri", tmp_path / "mine", 4, **TINY)
    with pytest.raises(ValueError, match="unknown layout 'veri776'"):
        generate("veri776", tmp_path / "x", 4)
    with pytest.raises(ValueError, match="ids .* must be in"):
        generate("veri", tmp_path / "x", 1)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "vreid_lightning.synth", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--layout", "kitti", "--out", "x", "--ids", "3"], "invalid choice"),
    (["--layout", "veri", "--out", "x", "--ids", "zero"], "--ids must be an integer"),
    (["--layout", "veri", "--out", "x"], "--ids"),
    (["preview", "--out", "grid.jpg"], ".png"),
])
def test_cli_bad_arguments_fail_with_a_message(args, message, tmp_path):
    args = [str(tmp_path / a) if a in ("x", "grid.jpg") else a for a in args]
    res = _cli(*args)
    assert res.returncode != 0 and message in res.stderr


def test_cli_preview_writes_png(tmp_path):
    res = _cli("preview", "--out", str(tmp_path / "p.png"), "--ids", "2", "--columns", "3", "--image-size", "48")
    assert res.returncode == 0, res.stderr
    img = Image.open(tmp_path / "p.png")
    assert img.format == "PNG" and img.width > 3 * 48 and img.height > 2 * 48
