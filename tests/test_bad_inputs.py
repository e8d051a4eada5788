"""Bad inputs, each one clear error (or an honest mark) before work is wasted: partial evaluations, skipped
queries, degenerate models, config values, corrupt images in workers, foreign checkpoints, bad features."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY, compose, run_cli

QUIET = ["logger=csv", "model.figures=null", "callbacks.results_writer.rank_list=0", "callbacks.lr_monitor=null"]
PLAIN = ["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def _run(over: list[str], out: Path) -> dict:
    from vreid_lightning.run import run

    return run(compose(over, out))


def _veri_copy(world: Path, dst: Path) -> Path:
    shutil.copytree(world, dst)
    (dst / "test_track.txt").unlink(missing_ok=True)  # optional; it would list the images removed below
    return dst


def _on(root: Path) -> list[str]:
    """PLAIN on a VeRi-layout folder (data=veri) instead of the cached synthetic world."""
    return [*PLAIN, "data=veri", f"data.root={root}", "data.synthetic=null"]


# ---------------------------------------------------------------- item 4: partial evaluation
def test_a_cut_short_test_is_marked_partial_and_never_written_as_test(tmp_path: Path, veri_world: Path, capsys):
    res = _run([*PLAIN, "+trainer.limit_test_batches=1"], tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    total = len((veri_world / "name_query.txt").read_text().split()) + len((veri_world / "name_test.txt").read_text().split())
    assert saved["partial"] == {"evaluated_images": 32, "total_images": total}  # data.eval_batch_size=32
    assert "test" not in saved and "test" not in res and "mAP" in saved["partial_test"]
    assert f"PARTIAL test (32 of {total} images)" in capsys.readouterr().out


# ---------------------------------------------------------------- item 6: skipped queries
def test_queries_without_a_valid_positive_are_counted_in_results_and_table(tmp_path: Path, veri_world: Path, capsys):
    root = _veri_copy(veri_world, tmp_path / "VeRi")
    q0 = (root / "name_query.txt").read_text().split()[0]  # e.g. 0004_c005_...: keep only its own camera
    pid, cam = q0.split("_")[:2]
    gallery = [n for n in (root / "name_test.txt").read_text().split()
               if not (n.startswith(pid + "_") and n.split("_")[1] != cam)]
    (root / "name_test.txt").write_text("\n".join(gallery) + "\n")
    queries = (root / "name_query.txt").read_text().split()
    skipped = sum(1 for n in queries if n.startswith(f"{pid}_{cam}_"))
    res = _run(_on(root), tmp_path / "run")
    assert res["queries"] == {"total": len(queries), "evaluated": len(queries) - skipped,
                              "skipped_no_positive": skipped} and skipped >= 1
    assert f"queries: {len(queries)} total, {len(queries) - skipped} evaluated, {skipped} skipped" in capsys.readouterr().out


def test_a_split_without_any_valid_query_is_one_error_before_training(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import DatasetFormatError

    root = _veri_copy(veri_world, tmp_path / "VeRi")
    qids = {n.split("_")[0] for n in (root / "name_query.txt").read_text().split()}
    (root / "name_test.txt").write_text("\n".join(n for n in (root / "name_test.txt").read_text().split()
                                                  if n.split("_")[0] not in qids) + "\n")
    with pytest.raises(DatasetFormatError, match=r"test query whose identity is in the gallery .*none of 16 queries"):
        _run(_on(root), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_test_sizes_on_an_image_protocol_dataset_is_one_error_not_ignored(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.test_sizes=\['800'\]: dataset 'veri' is evaluated under the image"):
        _run([*PLAIN, "data.test_sizes=[800]"], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("sampler, expected", [
    ("pk", r"data.batch_size=4096 \(data.sampler=pk, data.num_instances=2\) on \d+ training images of \d+ identities: PKSampler"),
    ("shuffle", r"data.batch_size=4096 \(data.sampler=shuffle\) on \d+ training images .*not one whole batch"),
])
def test_a_batch_the_training_set_cannot_fill_is_one_error_naming_the_key(tmp_path: Path, veri_world: Path,
                                                                         sampler: str, expected: str):
    from vreid_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=expected):
        _run([*PLAIN, f"data.sampler={sampler}", "data.batch_size=4096"], tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


# ---------------------------------------------------------------- item 7: degenerate models
def test_ram_regions_on_a_map_too_short_are_refused_before_training(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.image_size gives a conv map of \d row.*model.net.num_regions=3 .*at least"):
        _run(["+experiment=ram_synthetic", *TINY, *QUIET, "data.image_size=[33,33]", "run_stages=[baseline]"], tmp_path)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_pk_batch_of_one_identity_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.batch_size=4 with data.num_instances=4 gives P=1 identity.*>= 8"):
        _run([*PLAIN, "data.batch_size=4", "data.num_instances=4"], tmp_path)


# ---------------------------------------------------------------- item 10: config values up front
@pytest.mark.parametrize("override,message", [
    ("data.batch_size=abc", "data.batch_size='abc': expected an int >= 1"),
    ("data.batch_size=0", "data.batch_size=0: expected an int >= 1"),
    ("optimizer.lr=-0.01", "optimizer.lr=-0.01: expected a float > 0"),
    ("data.num_instances=0", "data.num_instances=0: expected an int >= 1"),
    ("data.batch_size=7", "data.batch_size=7 must be a multiple of data.num_instances=2 (expected a PK batch"),
    ("++stages.bn.optimizer={lr:0}", "(stage bn) optimizer.lr=0: expected a float > 0"),
])
def test_invalid_config_values_are_one_error_naming_key_value_and_expected(tmp_path: Path, override: str,
                                                                           message: str):
    from vreid_lightning.errors import ConfigError

    exp = "ram_synthetic" if "stages" in override else "baseline_synthetic"
    with pytest.raises(ConfigError) as info:
        _run([f"+experiment={exp}", *TINY, override], tmp_path)
    assert message in str(info.value)
    assert not (tmp_path / "config_resolved.yaml").exists()  # before any work


# ---------------------------------------------------------------- item 9: images
def test_a_corrupt_training_image_with_workers_is_the_same_one_line_error(tmp_path: Path, veri_world: Path):
    root = _veri_copy(veri_world, tmp_path / "VeRi")
    for name in (root / "name_train.txt").read_text().split():  # every one: the first batch meets one
        (root / "image_train" / name).write_bytes(b"")
    p = run_cli([*_on(root), "data.num_workers=2", f"hydra.run.dir={tmp_path / 'run'}"], REPO, timeout=600)
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"error: {root / 'image_train'}/" in p.stderr and ": expected a readable image (JPEG/PNG)" in p.stderr
    assert "Traceback" not in p.stderr and "DataLoader worker" not in p.stderr


def test_a_corrupt_query_image_fails_before_training_and_inspect_decodes_fully(tmp_path: Path, veri_world: Path):
    from vreid_lightning.errors import DatasetFormatError

    root = _veri_copy(veri_world, tmp_path / "VeRi")
    bad = root / "image_query" / (root / "name_query.txt").read_text().split()[3]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a truncated JPEG: its header still verifies
    with pytest.raises(DatasetFormatError, match=rf"{bad}: expected a readable image \(query/gallery image"):
        _run(_on(root), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    _run([*_on(root), "data.verify_eval_images=false", "train=false", "test=false"], tmp_path / "skip")
    p = subprocess.run([sys.executable, "-m", "vreid_lightning.data.inspect", "--dataset", "veri", "--root", str(root),
                        "--verify-images"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 2 and str(bad.name) in p.stderr and "truncated" in p.stderr, p.stderr


# ---------------------------------------------------------------- item 11: foreign checkpoints
def test_a_checkpoint_of_another_method_or_architecture_names_file_saver_and_expected(tmp_path: Path,
                                                                                      veri_world: Path):
    import torch

    from vreid_lightning.errors import ConfigError

    _run([*PLAIN, "test=false"], tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    rec = torch.load(ckpt, map_location="cpu", weights_only=False)["vreid_method"]
    assert rec["model"].endswith("BaselineModule") or rec["model"].startswith("vreid_lightning.methods")
    with pytest.raises(ConfigError, match=rf"ckpt_path: {ckpt} was saved by {rec['model']} .*this run expects "
                                          r"vreid_lightning.methods.scan.SCANModule"):
        _run(["+experiment=scan_synthetic", *TINY, *QUIET, f"ckpt_path={ckpt}"], tmp_path / "b")
    with pytest.raises(ConfigError, match=rf"ckpt_path: {ckpt} does not fit .* of another shape"):
        _run([*PLAIN, "backbone.width_mult=0.125", f"ckpt_path={ckpt}"], tmp_path / "c")
    with pytest.raises(ConfigError, match=rf"ckpt_path: {tmp_path / 'a'} is a directory, not a checkpoint file"):
        _run([*PLAIN, f"ckpt_path={tmp_path / 'a'}"], tmp_path / "d")


# ---------------------------------------------------------------- item 12: bad features.npz
@pytest.mark.parametrize("kind,message", [
    ("empty", "EOFError|BadZipFile|ValueError"),
    ("garbage", "BadZipFile|ValueError|OSError"),
    ("pickled", "ValueError: .*pickle"),
    ("not_suite", "an array 'query_feats'"),
    ("nan", "finite features in 'query_feats', got '1 NaN/inf value"),
    ("inf", "finite features in 'gallery_feats', got '2 NaN/inf value"),
])
def test_evaluate_on_a_bad_features_file_is_one_error_naming_it(tmp_path: Path, capsys, kind: str, message: str):
    from vreid_lightning.evaluate import main as evaluate_main
    from vreid_lightning.evaluation.saved_features import FeatureSet, save_features

    f = tmp_path / "features.npz"
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    ids = {"ids": np.array([0, 1, 2, 3])}, {"ids": np.array([0, 1, 2, 3, 0, 1])}
    if kind == "empty":
        f.write_bytes(b"")
    elif kind == "garbage":
        f.write_bytes(b"PK\x03\x04 this is not a zip archive")
    elif kind == "pickled":
        np.savez(f, query_feats=np.array([{"a": 1}], dtype=object))
    elif kind == "not_suite":
        np.savez(f, weights=np.zeros(3))
    else:
        if kind == "nan":
            q[2, 1] = np.nan
        else:
            g[1, 0], g[5, 2] = np.inf, -np.inf
        save_features(FeatureSet({"": (q, g)}, *ids), f)
    assert evaluate_main([str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err


# ---------------------------------------------------------------- item 8: duplicate list lines
def test_duplicate_list_lines_are_counted_reported_and_dropped_or_refused(tmp_path: Path, veri_world: Path,
                                                                          vehicleid_world: Path):
    from vreid_lightning.data.datasets import load_dataset
    from vreid_lightning.errors import DatasetFormatError

    root = _veri_copy(veri_world, tmp_path / "VeRi")
    lst = root / "name_query.txt"
    lines = lst.read_text().split()
    lst.write_text("\n".join([*lines, lines[0], lines[3], lines[0]]) + "\n")
    ds = load_dataset("veri", root)
    assert len(ds.query) == len(lines)  # each image counted once
    assert ds.diagnostics["duplicate_lines"] == {"name_query.txt": 3}
    assert any("name_query.txt: 3 duplicate line(s) dropped" in w for w in ds.warnings)
    with pytest.raises(DatasetFormatError, match=rf"{lst}, line {len(lines) + 1}: expected each image listed once "
                                                 r"\(duplicates='error'\); the same line as line 1"):
        load_dataset("veri", root, duplicates="error")
    p = subprocess.run([sys.executable, "-m", "vreid_lightning.data.inspect", "--dataset", "veri", "--root", str(root)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0 and json.loads(p.stdout)["diagnostics"]["duplicate_lines"] == {"name_query.txt": 3}

    vid = tmp_path / "VehicleID_V1.0"
    shutil.copytree(vehicleid_world, vid)
    train = vid / "train_test_split" / "train_list.txt"
    rows = train.read_text().splitlines()
    before = len(load_dataset("vehicleid", vid).train)
    train.write_text("\n".join([*rows, rows[5]]) + "\n")
    ds = load_dataset("vehicleid", vid)
    assert len(ds.train) == before and ds.diagnostics["duplicate_lines"] == {"train_list.txt": 1}
