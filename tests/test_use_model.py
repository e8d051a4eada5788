"""After fit: extract features of any images, search a gallery, on a tiny trained run of the synthetic world."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, compose

TINY_RUN = ["trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1", "logger=none"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, veri_world: Path) -> Path:
    """A one-epoch baseline run (checkpoint, config_resolved.yaml, features.npz of its test)."""
    from vreid_lightning.run import run

    out = tmp_path_factory.mktemp("baseline_run")
    run(compose(["+experiment=baseline_synthetic", *TINY, *TINY_RUN], out))
    return out


def _extract(argv: list[str]) -> int:
    from vreid_lightning.extract import main

    return main(argv)


def test_extract_split_equals_the_test_runs_features(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "test.npz"
    assert _extract([str(tiny_run), "--split", "test", "--out", str(out), "--batch-size", "5", "--device", "cpu"]) == 0
    ref, got = np.load(tiny_run / "features.npz"), np.load(out)
    for side in ("query", "gallery"):
        np.testing.assert_allclose(got[f"{side}_feats"], ref[f"{side}_feats"], atol=1e-6, rtol=0)
        for k in ("ids", "cams", "times", "paths"):
            assert (got[f"{side}_{k}"] == ref[f"{side}_{k}"]).all()


def test_extract_images_with_a_broken_file(tiny_run: Path, veri_world: Path, tmp_path: Path, capsys):
    folder = tmp_path / "imgs"
    shutil.copytree(veri_world / "image_test", folder)
    (folder / "0001_c001_00000001_0.jpg").write_bytes(b"not an image")
    out = tmp_path / "g.npz"
    assert _extract([str(tiny_run), "--images", str(folder / "*.jpg"), "--out", str(out), "--device", "cpu"]) == 0
    assert "1 unreadable image(s)" in capsys.readouterr().err
    report = Path(str(out) + ".unreadable.txt").read_text().splitlines()
    assert len(report) == 1 and report[0].startswith(str(folder / "0001_c001_00000001_0.jpg"))
    ref, got = np.load(tiny_run / "features.npz"), np.load(out)
    assert got["query_feats"].shape[0] == 0
    row = {Path(p).name: i for i, p in enumerate(got["gallery_paths"])}
    order = [row[Path(p).name] for p in ref["gallery_paths"]]
    assert len(row) == len(order)
    np.testing.assert_allclose(got["gallery_feats"][order], ref["gallery_feats"], atol=1e-6, rtol=0)
    assert (got["gallery_ids"][order] == ref["gallery_ids"]).all()  # parsed from the VeRi-style names
    assert (got["gallery_cams"][order] == ref["gallery_cams"]).all()
    assert _extract([str(tiny_run), "--images", str(folder), "--out", str(out), "--strict", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "0001_c001_00000001_0.jpg: expected a readable image" in err


def test_extract_unknown_feature_lists_the_offered_ones(tiny_run: Path, tmp_path: Path, capsys):
    assert _extract([str(tiny_run), "--split", "query", "--out", str(tmp_path / "q.npz"), "--feature", "nope",
                     "--device", "cpu"]) == 2
    assert "--feature 'nope'" in capsys.readouterr().err


def test_block_topk_is_the_stable_sort_order():
    from vreid_lightning.evaluation.topk import block_topk

    g = torch.Generator().manual_seed(0)
    d = torch.randint(0, 6, (9, 40), generator=g).double()  # many ties
    d[0, 3] = float("nan")
    d[1, :] = float("inf")
    d[1, 7] = 0.5
    idx, dist = block_topk(d, 12)
    ref = np.argsort(np.nan_to_num(d.numpy(), nan=np.inf), axis=1, kind="stable")[:, :12]
    finite = np.isfinite(np.take_along_axis(d.numpy(), ref, 1))
    assert (idx.numpy() == np.where(finite, ref, -1)).all()
    assert idx[1, 0] == 7 and (idx[1, 1:] == -1).all()


@pytest.mark.parametrize("chunk", [None, 3])
def test_search_topk_equals_the_evaluators_ranking(tiny_run: Path, chunk):
    from vreid_lightning.evaluation.distance import compute_distance
    from vreid_lightning.evaluation.saved_features import load_features
    from vreid_lightning.search import search_features
    from vreid_lightning.viz.ranklist import top_k_valid

    fs = load_features(tiny_run / "features.npz")
    idx, dist = search_features(fs, 10, chunk_size=chunk)
    q, g = (torch.as_tensor(a) for a in fs.views[""])
    full = compute_distance(q, g, fs.metric).numpy()
    ref = top_k_valid(full, fs.query["ids"], fs.gallery["ids"], fs.query["cams"], fs.gallery["cams"], 10)
    assert (idx == ref).all()
    np.testing.assert_allclose(dist, np.take_along_axis(full, ref, 1), atol=1e-6)


def test_search_cli_writes_picture_json_csv(tiny_run: Path, veri_world: Path, tmp_path: Path, capsys):
    from vreid_lightning.search import main

    gallery = tmp_path / "g.npz"
    assert _extract([str(tiny_run), "--split", "gallery", "--out", str(gallery), "--device", "cpu"]) == 0
    query = sorted((veri_world / "image_query").glob("*.jpg"))[0]
    out = tmp_path / "s" / "ranks.png"
    assert main([str(tiny_run), "--query", str(query), "--gallery", str(gallery), "--topk", "5", "--out", str(out),
                 "--rerank", "--device", "cpu"]) == 0
    assert out.is_file()
    lists = json.loads(out.with_suffix(".json").read_text())
    assert len(lists) == 1 and [r["rank"] for r in lists[0]["results"]] == [1, 2, 3, 4, 5]
    assert all(Path(r["path"]).parent.name == "image_test" for r in lists[0]["results"])
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 5 and rows[0]["query"] == str(query)
    dists = [float(r["distance"]) for r in rows]
    assert dists == sorted(dists)
    assert "steps rerank" in capsys.readouterr().out
    assert main([str(gallery), "--query", str(query), "--out", str(out), "--device", "cpu"]) == 2  # images need a ckpt


# Every method's network, tiny and untrained (parity does not need training): experiment, stage, extra overrides.
EXPORT_CASES = [
    ("baseline_synthetic", None, []),
    ("ram_synthetic", "ram", []),
    ("scan_synthetic", None, ["model.net.reduction=4", "backbone.norm=bn"]),
    ("rnn_ha_synthetic", None, ["model.net.hidden_size=16", "model.net.transformer_dims=[16]", "backbone.norm=bn"]),
    ("vehiclenet_synthetic", "stage2", []),
    ("camera_synthetic", None, []),
]


def _tiny_model(name: str, stage: str | None, extra: list[str], out: Path):
    from types import SimpleNamespace

    from vreid_lightning.inference import TrainedModel
    from vreid_lightning.runner.fit import build_model
    from vreid_lightning.runner.stages import stage_config

    from vreid_lightning.runner.debug import apply_debug

    cfg = compose([f"+experiment={name}", *TINY, *extra], out)
    apply_debug(cfg)  # the experiment's own tiny: section, as run() merges it
    if stage is not None:
        cfg = stage_config(cfg, stage)
    torch.manual_seed(0)
    dm = SimpleNamespace(num_classes=12, attribute_classes={"colour": 11, "type": 10})
    module = build_model(cfg, dm).eval()
    for m in module.modules():  # non-trivial BatchNorm statistics, so that eval-mode BN is exercised
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return TrainedModel(module, cfg, out / "untrained.ckpt", out, stage)


def _real_images(world: Path, size: tuple[int, int], n: int = 5) -> torch.Tensor:
    from PIL import Image

    from vreid_lightning.data.transforms import build_test_transform

    tf = build_test_transform(size)
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in sorted((world / "image_test").glob("*.jpg"))[:n]])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name,stage,extra", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_every_methods_network_exports_with_parity(name, stage, extra, fmt, veri_world: Path, tmp_path: Path):
    from vreid_lightning.export import export_model, parity_check

    trained = _tiny_model(name, stage, extra, tmp_path)
    path, meta = export_model(trained, fmt, tmp_path / f"model.{fmt}")
    assert meta["output"] == trained.module.main_feature and meta["flip_averaged"] == trained.module.eval_cfg["flip"]
    images = _real_images(veri_world, trained.image_size)  # 5 images: not the traced batch of 2
    assert parity_check(trained, path, meta, images) <= 1e-4
    if fmt == "onnx":
        import onnx

        stored = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["vreid"])
        assert stored["input_size_hw"] == list(trained.image_size) and stored["output_dim"] == meta["output_dim"]
        assert stored["colour_order"] == "RGB" and len(stored["mean"]) == 3


def test_export_parity_failure_names_the_figure(veri_world: Path, tmp_path: Path):
    from vreid_lightning.export import ExportParityError, export_model, parity_check

    trained = _tiny_model("baseline_synthetic", None, [], tmp_path)
    path, meta = export_model(trained, "onnx", tmp_path / "model.onnx")
    with torch.no_grad():  # the PyTorch model moves on after the export: the file no longer matches
        next(trained.module.parameters()).add_(0.5)
    with pytest.raises(ExportParityError, match=r"max abs difference .* after L2 normalisation"):
        parity_check(trained, path, meta, _real_images(veri_world, trained.image_size))


def test_export_cli_on_a_trained_run(tiny_run: Path, tmp_path: Path, capsys):
    import onnxruntime as ort

    from vreid_lightning.export import main

    out = tmp_path / "m.onnx"
    assert main([str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "parity on 8 real images" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["vreid"])
    assert sess.get_inputs()[0].shape[0] == "batch" and meta["output_dim"] == sess.get_outputs()[0].shape[1]


def test_multi_scale_is_refused_for_onnx_and_kept_in_torchscript(veri_world: Path, tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.export import export_model, parity_check

    trained = _tiny_model("baseline_synthetic", None, [], tmp_path)
    trained.module.eval_cfg["scales"] = [1.0, 0.9]
    with pytest.raises(ConfigError, match=r"aten::_upsample_bilinear2d_aa"):
        export_model(trained, "onnx", tmp_path / "m.onnx")
    path, meta = export_model(trained, "torchscript", tmp_path / "m.pt")
    assert meta["scales"] == [1.0, 0.9]
    assert parity_check(trained, path, meta, _real_images(veri_world, trained.image_size)) <= 1e-4


@pytest.mark.parametrize("module", ["extract", "search", "export"])
def test_help_is_complete(module: str):
    import importlib

    mod = importlib.import_module(f"vreid_lightning.{module}")
    parser = mod.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{module}: {action.dest} has no help"
    assert f"python -m vreid_lightning.{module} " in text  # the usage examples of the module docstring


def test_list_file_and_glob_order(veri_world: Path, tmp_path: Path):
    from vreid_lightning.extract import list_images, parse_labels

    names = sorted(p.name for p in (veri_world / "image_query").glob("*.jpg"))[:3]
    lst = tmp_path / "files.txt"
    lst.write_text("# my queries\n\n" + "".join(f"{veri_world / 'image_query' / n}\n" for n in reversed(names)))
    got = list_images(list_file=str(lst))
    assert [Path(p).name for p in got] == list(reversed(names))  # the list's order
    assert [Path(p).name for p in list_images(str(veri_world / "image_query"))][:3] == names  # a folder: sorted
    ids, cams = parse_labels(["x/0012_c003_00000001_0.jpg", "x/car.jpg"])
    assert ids.tolist() == [12, -1] and cams.tolist() == [3, -1]


def test_a_staged_run_resolves_to_its_last_stage(tmp_path: Path):
    from omegaconf import OmegaConf

    from vreid_lightning.inference import resolve_checkpoint

    OmegaConf.save(OmegaConf.create({"stages": {"a": {}, "b": {}, "c": {}}}), tmp_path / "config_resolved.yaml")
    for stage in ("b", "a"):  # written in another order than the config's: the config decides
        (tmp_path / "stages" / stage / "checkpoints").mkdir(parents=True)
        (tmp_path / "stages" / stage / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path) == tmp_path / "stages" / "b" / "checkpoints" / "last.ckpt"
