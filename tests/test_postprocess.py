"""Post-processing steps on small hand-made problems, saved features, and the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vreid_lightning.errors import ConfigError, DatasetFormatError
from vreid_lightning.evaluate import main as evaluate_main
from vreid_lightning.evaluation.camera_verification import camera_clusters, camera_filter
from vreid_lightning.evaluation.postprocess import parse_steps, postprocess_evaluate
from vreid_lightning.evaluation.query_expansion import (average_query_expansion, database_augmentation,
                                                        dbscan_query_expansion)
from vreid_lightning.evaluation.saved_features import FeatureSet, check_aligned, load_features, save_features
from vreid_lightning.evaluation.time_window import time_window_filter
from vreid_lightning.evaluation.tta import lookup_box, multi_scale_features, read_boxes


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


# ---------------------------------------------------------------- query expansion
def test_dbscan_qe_replaces_clustered_queries_by_their_cluster_mean():
    q = _unit([1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0])  # two close queries, one far away
    out = dbscan_query_expansion(q, eps=0.5, min_samples=2)
    mean = F.normalize(q[:2].sum(0, keepdim=True), dim=1)[0]
    torch.testing.assert_close(out[0], mean)
    torch.testing.assert_close(out[1], mean)
    torch.testing.assert_close(out[2], q[2])  # noise: unchanged
    # a tighter eps (2 - 2 cos of the pair is ~0.012) leaves every query alone
    torch.testing.assert_close(dbscan_query_expansion(q, eps=0.01), q)


def test_average_qe_and_database_augmentation():
    q = _unit([1.0, 0.0])
    g = _unit([0.8, 0.6], [0.0, 1.0], [-1.0, 0.0])
    torch.testing.assert_close(average_query_expansion(q, g, k=1), F.normalize(q + g[:1], dim=1))
    # alpha-QE: weights cos^alpha, here cos = 0.8 and 0.0
    out = average_query_expansion(q, g, k=2, alpha=3.0)
    torch.testing.assert_close(out, F.normalize(q + 0.8 ** 3 * g[:1], dim=1))
    dba = database_augmentation(g, k=2)  # itself and its nearest other gallery item
    torch.testing.assert_close(dba[0], F.normalize(g[0] + g[1], dim=0))
    torch.testing.assert_close(dba[2], F.normalize(g[2] + g[1], dim=0))  # cos 0 beats cos -0.8


# ---------------------------------------------------------------- filters
def test_time_window_removes_far_items():
    f = time_window_filter(np.array([100, 5000]), np.array([90, 400, 4990]), tau=50)
    out = f(0, torch.zeros(2, 3))
    assert torch.isinf(out).tolist() == [[False, True, True], [True, True, False]]
    assert f(1, torch.zeros(1, 3)).isinf().tolist() == [[True, True, False]]  # chunk offset


def test_time_window_without_timestamps_names_the_split():
    with pytest.raises(ConfigError, match="1 of 2 images of the gallery set have no timestamp"):
        time_window_filter(np.array([1]), np.array([3, -1]), tau=10)
    with pytest.raises(ConfigError, match="query set has no timestamps"):
        time_window_filter(None, np.array([3]), tau=10)


def test_camera_verification_remove_and_penalty():
    block = torch.tensor([[0.1, 0.2, 0.3]])
    rm = camera_filter(np.array([1]), np.array([1, 2, 1]), "remove")(0, block)
    assert torch.isinf(rm).tolist() == [[True, False, True]] and rm[0, 1] == pytest.approx(0.2)
    pen = camera_filter(np.array([1]), np.array([1, 2, 1]), "penalty", penalty=0.5)(0, block)
    torch.testing.assert_close(pen, torch.tensor([[0.6, 0.2, 0.8]]))
    with pytest.raises(ConfigError, match="no camera labels"):
        camera_filter(np.array([-1]), np.array([1]))
    with pytest.raises(ConfigError, match="mode"):
        camera_filter(np.array([1]), np.array([1]), "drop")


def test_camera_clusters_recover_separated_cameras():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 5
    truth = np.repeat(np.arange(3), 10)
    labels = camera_clusters(centres[truth] + 0.1 * rng.normal(size=(30, 4)), n_clusters=3)
    # the same partition up to renaming
    assert len({(a, b) for a, b in zip(truth, labels)}) == 3


# ---------------------------------------------------------------- pipeline
def _fs(q, g, qi, gi, qc=None, gc=None, qt=None, gt=None, **views) -> FeatureSet:
    q, g = np.asarray(q, np.float32), np.asarray(g, np.float32)

    def side(n, ids, cams, times):
        return {"ids": np.asarray(ids), "cams": np.asarray(cams if cams is not None else [-1] * n),
                "times": np.asarray(times if times is not None else [-1] * n),
                "paths": np.asarray([f"{i}.jpg" for i in range(n)])}

    return FeatureSet({"": (q, g), **views}, side(len(q), qi, qc, qt), side(len(g), gi, gc, gt))


def test_time_window_step_fixes_a_known_ranking():
    # the query's nearest gallery item is another vehicle seen hours later: removing it by time
    # moves the true match from rank 2 to rank 1 (mAP 0.5 -> 1.0)
    fs = _fs([[1.0, 0.0]], [[1.0, 0.05], [0.9, 0.4]], [0], [1, 0], [1], [2, 3], [100], [90000, 400])
    assert postprocess_evaluate(fs)["mAP"] == pytest.approx(0.5)
    assert postprocess_evaluate(fs, ["time_window"])["mAP"] == pytest.approx(1.0)
    assert postprocess_evaluate(fs, [{"time_window": {"tau": 100000}}])["mAP"] == pytest.approx(0.5)


def test_camera_verification_step_and_ensemble():
    # a hard negative from the query's own camera ranks first; removing same-camera items fixes it
    fs = _fs([[1.0, 0.0]], [[1.0, 0.05], [0.9, 0.4]], [0], [1, 0], [1], [1, 2])
    assert postprocess_evaluate(fs)["rank1"] == 0.0
    assert postprocess_evaluate(fs, ["camera_verification"])["rank1"] == 1.0
    with pytest.raises(ConfigError, match="at least two models"):
        postprocess_evaluate(fs, ["ensemble"])
    # a second model that ranks the true match first: the ensemble (normalised concat) follows its margin
    other = _fs([[1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]], [0], [1, 0], [1], [1, 2])
    assert postprocess_evaluate([fs, other], ["ensemble"])["rank1"] == 1.0
    with pytest.raises(ConfigError, match="no cropped-image features"):
        postprocess_evaluate(fs, ["crop"])
    crop = _fs([[1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]], [0], [1, 0], [1], [1, 2])
    fs.views["crop"] = crop.views[""]
    assert postprocess_evaluate(fs, ["crop"])["rank1"] == 1.0  # the average follows the crop's margin


def test_parse_steps_errors_and_order():
    assert list(parse_steps(["rerank", "qe"])) == ["qe", "rerank"]
    assert parse_steps([{"rerank": {"k1": 5}}])["rerank"] == {"k1": 5, "k2": 6, "lambda_value": 0.3,
                                                               "metric": "euclidean"}
    with pytest.raises(ConfigError, match="unknown step 'rerank2'"):
        parse_steps(["rerank2"])
    with pytest.raises(ConfigError, match=r"postprocess.rerank: unknown parameter\(s\) \['k3'\]"):
        parse_steps([{"rerank": {"k3": 1}}])


# ---------------------------------------------------------------- saved features and the command
def _problem(seed: int = 0, nq: int = 12, ng: int = 60):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 8))
    qi, gi = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    q, g = centres[qi] + 0.8 * rng.normal(size=(nq, 8)), centres[gi] + 0.8 * rng.normal(size=(ng, 8))
    return _fs(q, g, qi, gi, rng.integers(1, 4, nq), rng.integers(1, 4, ng), rng.integers(0, 9999, nq),
               rng.integers(0, 9999, ng))


def test_saved_features_round_trip_and_alignment(tmp_path: Path):
    fs = _problem()
    back = load_features(save_features(fs, tmp_path / "features.npz"))
    np.testing.assert_array_equal(back.views[""][1], fs.views[""][1])
    for k in ("ids", "cams", "times", "paths"):
        np.testing.assert_array_equal(back.gallery[k], fs.gallery[k])
    other = _problem(1)
    with pytest.raises(DatasetFormatError, match="query ids"):
        check_aligned([fs, other])
    short = _problem(0, ng=59)
    with pytest.raises(DatasetFormatError, match="60 gallery rows"):
        check_aligned([fs, short])


def test_evaluate_command_cumulative(tmp_path: Path, capsys):
    a, b = _problem(), _problem()
    rng = np.random.default_rng(5)
    b.views[""] = tuple(v + 0.3 * rng.normal(size=v.shape).astype(np.float32) for v in a.views[""])
    pa, pb = save_features(a, tmp_path / "a" / "features.npz"), save_features(b, tmp_path / "b" / "features.npz")
    rc = evaluate_main([str(tmp_path / "a"), str(pb), "--steps", "ensemble,qe,camera_verification,rerank",
                        "--cumulative", "--set", "rerank.k1=6", "--set", "rerank.k2=3", "--out", str(tmp_path / "o")])
    assert rc == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [c["added"] for c in res["columns"]] == ["none", "ensemble", "qe", "camera_verification", "rerank"]
    assert res["columns"][0]["mAP"] == pytest.approx(postprocess_evaluate(a)["mAP"])
    last = postprocess_evaluate([a, b], [{"ensemble": {}}, {"qe": {}}, {"camera_verification": {}},
                                         {"rerank": {"k1": 6, "k2": 3}}])
    assert res["test"]["mAP"] == pytest.approx(last["mAP"])
    table = (tmp_path / "o" / "table.md").read_text()
    rerank = next(ln for ln in table.splitlines() if ln.startswith("| Re-ranking?"))
    assert rerank.endswith(" |  |  |  |  | ✓ |") and "mAP (%)" in table
    # re-ranking lowers mAP on this toy problem (48.95 -> 48.34): its row says so
    assert ("lowers mAP here" in rerank) == (res["columns"][4]["mAP"] < res["columns"][3]["mAP"])
    assert pa.is_file()


@pytest.mark.parametrize("args,msg", [
    (["--steps", "qe,sharpen"], "unknown step 'sharpen'"),
    (["--steps", "rerank", "--set", "qe.eps=0.3"], "not in --steps"),
    (["--steps", "time_window"], "no timestamp"),
])
def test_evaluate_command_bad_input(tmp_path: Path, capsys, args, msg):
    fs = _problem()
    fs.gallery["times"][3] = -1
    save_features(fs, tmp_path / "features.npz")
    assert evaluate_main([str(tmp_path / "features.npz"), *args]) == 2
    assert msg in capsys.readouterr().err


def test_evaluate_command_misaligned_files(tmp_path: Path, capsys):
    save_features(_problem(0), tmp_path / "a.npz")
    save_features(_problem(0, ng=50), tmp_path / "b.npz")
    assert evaluate_main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--steps", "ensemble"]) == 2
    assert "60 gallery rows" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "missing.npz")]) == 2


# ---------------------------------------------------------------- test-time augmentation
def test_multi_scale_resizes_the_original_each_time():
    seen = []

    def extract(x):
        seen.append(tuple(x.shape[-2:]))
        return {"f": x.mean(dim=(1, 2, 3))[:, None]}

    x = torch.arange(2 * 3 * 20 * 10, dtype=torch.float32).view(2, 3, 20, 10)
    out = multi_scale_features(extract, x, [1.0, 0.9, 0.8], flip=True)
    assert seen == [(20, 10), (20, 10), (18, 9), (18, 9), (16, 8), (16, 8)]  # 0.8 of 20, not 0.8 * 18
    assert out["f"].shape == (2, 1)
    with pytest.raises(ConfigError, match="scales"):
        multi_scale_features(extract, x, [0.0])


def test_boxes_file(tmp_path: Path):
    p = tmp_path / "boxes.csv"
    p.write_text("image,x0,y0,x1,y1\nimage_test/0001.jpg,1,2,30,40\nimage_query/0001.jpg,3,4,20,21\n0002.jpg,0,0,5,5\n")
    table = read_boxes(p)
    assert table["image_test/0001.jpg"] == (1.0, 2.0, 30.0, 40.0)
    # CityFlow numbers query and test images alike: the folder tells them apart; a bare name matches anywhere
    assert lookup_box(table, "/data/AIC20_ReID/image_query/0001.jpg") == (3.0, 4.0, 20.0, 21.0)
    assert lookup_box(table, "/data/AIC20_ReID/image_test/0001.jpg") == (1.0, 2.0, 30.0, 40.0)
    assert lookup_box(table, "/x/image_train/0002.jpg") == (0.0, 0.0, 5.0, 5.0)
    assert lookup_box(table, "/x/image_train/0001.jpg") is None
    p.write_text("0001.jpg,1,2,0,40\n")
    with pytest.raises(DatasetFormatError, match="line 1"):
        read_boxes(p)
    p.write_text("a/0001.jpg,1,2,3,4\na/0001.jpg,1,2,3,5\n")
    with pytest.raises(DatasetFormatError, match="line 2.*each image once|each image once.*line 2"):
        read_boxes(p)


def test_tiny_run_saves_features_and_postprocesses(tmp_path: Path, veri_world: Path):
    from tests.conftest import TINY, compose
    from vreid_lightning.run import run

    over = ["+experiment=baseline_synthetic", *TINY, "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
            "postprocess=[rerank]", "postprocess.rerank.k1=6", "postprocess.rerank.k2=3"]
    results = run(compose(over, tmp_path))
    fs = load_features(tmp_path / "features.npz")
    assert fs.num_query > 0 and fs.views[""][0].shape[1] > 0 and (fs.gallery["times"] >= 0).all()
    steps = [{"rerank": {"k1": 6, "k2": 3}}]
    assert results["test"]["mAP"] == pytest.approx(postprocess_evaluate(fs, steps)["mAP"], abs=1e-9)
    assert results["features"]["f_c (before postprocess)"]["mAP"] == pytest.approx(postprocess_evaluate(fs)["mAP"])
    assert evaluate_main([str(tmp_path), "--steps", "rerank", "--set", "rerank.k1=6", "--set", "rerank.k2=3"]) == 0
    (own,) = (tmp_path / "evaluations").iterdir()  # a new timestamped folder beside the input
    assert sorted(f.name for f in own.iterdir()) == ["command.txt", "results.json", "table.md"]
    saved = json.loads((own / "results.json").read_text())
    assert saved["test"]["mAP"] == pytest.approx(results["test"]["mAP"], abs=1e-9)
    assert saved["experiment"] == "baseline_synthetic"  # the table generator attributes it to the features' run
    # cropped-image features from the run's checkpoint and a boxes file (left half of every image)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("".join(f"{Path(p).name},0,0,32,64\n" for p in fs.query["paths"][:3]))
    assert evaluate_main([str(tmp_path), "--steps", "crop", "--extract-crops", str(boxes), "--out",
                          str(tmp_path / "pp_crop")]) == 0
    crop = load_features(tmp_path / "crop_features.npz")
    check_aligned([fs, crop])
    changed = ~np.isclose(crop.views[""][0], fs.views[""][0], atol=1e-5).all(axis=1)
    assert changed[:3].all() and not changed[3:].any()  # only the images with a box differ
    assert json.loads((tmp_path / "pp_crop" / "results.json").read_text())["steps"] == {"crop": {}}
    # the synthetic world's own tight boxes: every test image has one, and cropping changes its features
    assert evaluate_main([str(tmp_path), "--steps", "crop", "--extract-crops", "dataset", "--out",
                          str(tmp_path / "pp_crop_world")]) == 0
    crop = load_features(tmp_path / "crop_features.npz")
    changed = ~np.isclose(crop.views[""][0], fs.views[""][0], atol=1e-5).all(axis=1)
    assert changed.mean() > 0.9


def test_crop_run_config_of_a_staged_run(tmp_path: Path):
    from omegaconf import OmegaConf

    from vreid_lightning.evaluate import _crop_run_config

    cfg = {"data": {"extra_sources": ["src"], "batch_size": 4}, "model": {"net": {"dropout": 0.0}},
           "stages": {"stage1": {}, "stage2": {"data": {"extra_sources": []}, "model": {"net": {"dropout": 0.2}}}}}
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "config_resolved.yaml")
    for run in (tmp_path, tmp_path / "stages" / "stage2"):  # the run (its last stage) or the stage's folder
        got, ckpts, out = _crop_run_config(run)
        assert list(got.data.extra_sources) == [] and got.model.net.dropout == 0.2
        assert ckpts == tmp_path / "stages" / "stage2" / "checkpoints" and out == tmp_path / "stages" / "stage2"
    got, ckpts, _ = _crop_run_config(tmp_path / "stages" / "stage1")
    assert list(got.data.extra_sources) == ["src"] and ckpts.parent.name == "stage1"
    with pytest.raises(DatasetFormatError, match="config_resolved.yaml"):
        _crop_run_config(tmp_path / "nowhere")


def test_camera_model_loss_and_camera_less_data():
    from vreid_lightning.methods.camera import CameraModule

    torch.manual_seed(0)
    model = CameraModule({"name": "vgg_cnn_m", "pretrained": False, "width_mult": 0.125, "norm": "bn"},
                         net={"_target_": "vreid_lightning.models.camera.CameraNet"}, num_cameras=3,
                         optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3})
    images = torch.randn(4, 3, 64, 64)
    loss, parts, logits = model.training_loss({"image": images, "camid": torch.tensor([1, 2, 1, 2])})
    assert logits.shape == (4, 3) and loss.item() > 0 and "ce" in parts
    assert model.extract(images)["cam"].shape[0] == 4
    with pytest.raises(ConfigError, match="no camera labels"):
        model.training_loss({"image": images, "camid": torch.tensor([-1, -1, 1, 2])})
    with pytest.raises(ConfigError, match="num_cameras=3"):
        model.training_loss({"image": images, "camid": torch.tensor([1, 3, 1, 2])})


def test_detector_without_weights_names_the_file(tmp_path: Path):
    from vreid_lightning.evaluation.tta import MaskRCNNBoxes

    with pytest.raises(ConfigError, match="no Mask R-CNN weights file at .*missing.pth"):
        MaskRCNNBoxes(tmp_path / "missing.pth")


def test_each_evaluation_writes_its_own_directory_and_flags_a_step_that_lowers_mAP(tmp_path: Path, capsys):
    """Two evaluations of one run: two folders, each with all its files; into one --out folder, a second
    evaluation replaces all of the first one's files (a non-cumulative one writes its own table.md too); a
    step that lowers mAP says so in its row (here: qe with a huge eps merges every query into one cluster)."""
    save_features(_problem(), tmp_path / "run" / "features.npz")
    args = [str(tmp_path / "run"), "--steps", "qe", "--set", "qe.eps=4.0", "--cumulative"]
    assert evaluate_main(args) == 0 and evaluate_main(args) == 0
    dirs = sorted((tmp_path / "run" / "evaluations").iterdir())
    assert len(dirs) == 2
    for d in dirs:
        assert sorted(f.name for f in d.iterdir()) == ["command.txt", "results.json", "table.md"]
    res = json.loads((dirs[0] / "results.json").read_text())
    before, after = res["columns"][0]["mAP"], res["columns"][1]["mAP"]
    assert after < before and res["mAP_drops"] == {"qe": {"before": before, "after": after}}
    row = next(ln for ln in (dirs[0] / "table.md").read_text().splitlines() if ln.startswith("| Query Expansion?"))
    assert f"lowers mAP here: {100 * before:.2f} -> {100 * after:.2f}" in row and "README" in row
    out = tmp_path / "out"
    assert evaluate_main([*args, "--out", str(out)]) == 0
    (out / "mine.txt").write_text("kept")
    assert evaluate_main([str(tmp_path / "run"), "--steps", "rerank", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == parse_steps("rerank")
    table = (out / "table.md").read_text()
    assert "Re-ranking?" in table and "Query Expansion?" not in table  # not the first evaluation's table
    assert (out / "mine.txt").read_text() == "kept"


def test_results_table_says_when_post_processing_lowered_mAP():
    from vreid_lightning.runner.results import format_results_table

    res = {"test": {"mAP": 0.059}, "features": {"f_c": {"mAP": 0.059}, "f_c (before postprocess)": {"mAP": 0.159}}}
    text = format_results_table(res)
    assert "note: post-processing lowered mAP 15.90 -> 5.90" in text and "--cumulative" in text
    res["features"]["f_c"]["mAP"] = res["test"]["mAP"] = 0.2
    assert "lowered" not in format_results_table(res)
