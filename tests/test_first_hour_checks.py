"""What a FastReID/torchreid user expects in the first hour: a TensorBoard logger, errors that say what
to do (switching backbones, SLURM off a cluster, DDP without a GPU, the Caffe converter's input), and
pictures that explain their colours and lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, compose, run_cli
from vreid_lightning.errors import ConfigError


def test_tensorboard_logger_writes_event_files(tmp_path: Path, veri_world: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vreid_lightning.run import run

    run(compose(["+experiment=baseline_synthetic", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "logger=tensorboard"], tmp_path))
    (folder,) = {p.parent for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"] and "test/mAP" in acc.Tags()["scalars"]
    assert list((tmp_path / "csv").rglob("metrics.csv"))  # beside the CSV logs


def test_switching_backbone_names_the_options_to_drop():
    from vreid_lightning.models.backbones.registry import build_backbone

    with pytest.raises(ConfigError, match=r"backbone.norm: the resnet50 backbone takes no option 'norm' "
                                          r"\(nor 'width_mult'\).*`backbone=resnet50 ~backbone.norm ~backbone.width_mult`"):
        build_backbone("resnet50", norm="bn", width_mult=0.25)


def test_rank_list_has_a_colour_key(tmp_path: Path):
    from vreid_lightning.viz.ranklist import FALSE_POSITIVE_RGB, LEGEND, MATCH_RGB, QUERY_RGB, save_rank_list

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 40), (128, 128, 128)).save(p)
        paths.append(str(p))
    img = Image.open(save_rank_list(paths[:1], [1], paths, [1, 2, 1], np.array([[0, 1]]), tmp_path / "rl.png",
                                    size=50)).convert("RGB")
    key = {img.getpixel((x, 8)) for x in range(img.size[0])}  # the key's swatches, above the rows
    assert {QUERY_RGB, MATCH_RGB, FALSE_POSITIVE_RGB} <= key
    assert [t for t, _ in LEGEND] == ["query (blue)", "true match (green)", "false positive (red, thick frame)"]


def test_response_map_region_lines_are_captioned(tmp_path: Path):
    from vreid_lightning.viz.response_maps import region_caption, save_response_grid

    maps = {"Region branch (M)": torch.rand(2, 8, 8)}
    text = region_caption({"Region branch (M)": [(0, 4), (2, 6), (4, 8)]}, {"Region branch (M)": 8},
                          ("white", "cyan", "magenta"))
    assert "solid line (first row) to its dashed line (end)" in text
    assert "region 2 (cyan): rows 2-6 of 8" in text and "red: high response" in text
    plain = save_response_grid(torch.rand(2, 3, 64, 64), maps, tmp_path / "a.png")
    lined = save_response_grid(torch.rand(2, 3, 64, 64), maps, tmp_path / "b.png", region_bounds=[(0, 4), (4, 8)])
    assert Image.open(plain).size == Image.open(lined).size  # the caption fits in the same figure


def test_slurm_launcher_off_a_cluster_is_one_line(tmp_path: Path):
    p = run_cli(["-m", "+experiment=baseline_synthetic", *TINY, "hydra/launcher=slurm"], tmp_path, timeout=300,
                env={"PATH": "/usr/bin:/bin"})  # no srun
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: hydra/launcher=slurm needs a SLURM cluster")
    assert "hydra/launcher=local" in p.stderr
    assert not (tmp_path / "outputs" / "baseline_synthetic" / "multiruns").exists() or not list(
        (tmp_path / "outputs" / "baseline_synthetic" / "multiruns").rglob("results.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without a GPU")
def test_gpu_trainer_on_a_cpu_machine_suggests_the_cpu_ways(tmp_path: Path):
    from vreid_lightning.preflight import check_devices

    cfg = compose(["+experiment=baseline_synthetic", "trainer=ddp"], tmp_path)
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu \(trainer.strategy=ddp\): this machine has no "
                                          r"GPU.*trainer=cpu.*trainer=ddp_spawn \(gloo"):
        check_devices(cfg)
    check_devices(compose(["+experiment=baseline_synthetic", "trainer=ddp_spawn"], tmp_path))  # CPU: fine


def test_caffe_converter_one_line_for_a_missing_or_wrong_file(tmp_path: Path, capsys):
    from vreid_lightning.convert.imagenet_caffe import main as convert_main

    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"garbage")
    for f, what in ((tmp_path / "missing.caffemodel", "no such file"), (bad, "not a readable VGG_CNN_M")):
        assert convert_main("vgg-cnn-m", [str(f), str(tmp_path / "out.pth")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {f}: {what}")
