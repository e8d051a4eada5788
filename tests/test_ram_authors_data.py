"""The RAM authors' data side: CarcontImageData batch composition, Caffe input (BGR, 0-255, RAM mean), PNG worlds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vreid_lightning.data.carcont import CARCONT_RAM, GroupBlockSampler
from vreid_lightning.data.transforms import RAM_MEAN_BGR, build_test_transform


def labels(n: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"pid": rng.integers(0, 40, n), "colour": rng.integers(0, 10, n), "type": rng.integers(0, 9, n)}


def test_ram_step_batch_composition():
    lab = labels()
    s = GroupBlockSampler(lab, CARCONT_RAM, seed=3)
    assert s.batch_size == 68 == 10 * 3 + 10 * 2 + 9 * 2  # train_RAM_finetune.prototxt:17-27
    idx = np.array(list(s)).reshape(-1, 68)
    assert idx.shape[0] == len(lab["pid"]) // 68
    for b in idx:
        ids, cols, mods = b[:30], b[30:50], b[50:]
        # 10 identity groups x 3 rows: each consecutive triple shares its identity, 10 distinct identities
        pid = lab["pid"][ids].reshape(10, 3)
        assert (pid == pid[:, :1]).all() and np.unique(pid[:, 0]).size == 10
        col = lab["colour"][cols].reshape(10, 2)
        assert (col == col[:, :1]).all() and np.unique(col[:, 0]).size == 10  # every colour once
        mod = lab["type"][mods].reshape(9, 2)
        assert (mod == mod[:, :1]).all() and np.unique(mod[:, 0]).size == 9  # every type once


def test_draws_with_replacement_and_wraps_round_few_groups():
    lab = {"pid": np.array([0, 0, 1, 1, 1]), "colour": np.array([0, 0, 0, 1, 1]), "type": np.array([2, 2, 2, 2, 2])}
    s = GroupBlockSampler(lab, [("pid", 3, 4), ("colour", 2, 1), ("type", 2, 3)], seed=0, num_batches=50)
    idx = np.array(list(s)).reshape(50, -1)
    pid = lab["pid"][idx[:, :12]].reshape(50, 3, 4)
    assert (pid == pid[:, :, :1]).all()  # a group of 2-3 rows gives 4 draws: with replacement
    assert (pid[:, 0, 0] == pid[:, 2, 0]).all()  # 3 id slots, 2 ids: slot i takes group i % 2
    assert set(lab["type"][idx[:, 14:]].ravel()) == {2}


def test_unknown_attributes_are_in_no_group_and_seeded():
    lab = labels()
    lab["colour"][:300] = -1
    a, b = GroupBlockSampler(lab, seed=1), GroupBlockSampler(lab, seed=1)
    ia, ib = list(a), list(b)
    assert ia == ib and list(GroupBlockSampler(lab, seed=2)) != ia
    cols = np.array(ia).reshape(-1, 68)[:, 30:50]
    assert (lab["colour"][cols] >= 0).all()
    a.set_epoch(1)
    assert list(a) != ia
    with pytest.raises(ValueError, match="no labels"):
        GroupBlockSampler({"pid": lab["pid"]})


def test_datamodule_carcont_batches(cache_dir):
    from vreid_lightning.data.datamodule import ReIDDataModule
    from tests.conftest import TINY_WORLD

    dm = ReIDDataModule(synthetic=dict(TINY_WORLD), cache_dir=str(cache_dir), image_size=(32, 32), batch_size=68,
                        sampler="carcont", num_workers=0, attributes=["colour", "type"],
                        sampler_options={"num_batches": 2})
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and batches[0]["image"].shape[0] == 68
    pid = batches[0]["pid"][:30].reshape(10, 3)
    assert (pid == pid[:, :1]).all()
    from vreid_lightning.errors import ConfigError

    bad = ReIDDataModule(synthetic=dict(TINY_WORLD), cache_dir=str(cache_dir), batch_size=64, sampler="carcont",
                         num_workers=0)
    bad.prepare_data()
    bad.setup("fit")
    with pytest.raises(ConfigError, match="data.batch_size=64 .* batches of 68"):
        bad.train_dataloader()


def test_caffe_input_is_bgr_0_255_minus_ram_mean():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    t = build_test_transform((224, 224), mean=RAM_MEAN_BGR, std=(1, 1, 1), channels="bgr", pixel_range=255)
    x = t(Image.fromarray(a))
    bgr = torch.from_numpy(a[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))
    ref = bgr - torch.tensor(RAM_MEAN_BGR).view(3, 1, 1)
    torch.testing.assert_close(x, ref, rtol=0, atol=0)  # exactly Caffe's DataTransformer with mean_value
    rgb = build_test_transform((224, 224))(Image.fromarray(a))  # the default stays torchvision's ImageNet RGB
    assert not torch.allclose(rgb, x)


def test_png_square_world(tmp_path):
    from vreid_lightning.data.datasets import load_dataset
    from vreid_lightning.synth import generate

    generate("veri", tmp_path / "w", ids=8, seed=0, image_size=40, images_per_id=3, workers=0, progress=False,
             image_format="png", square=True)
    ds = load_dataset("veri", tmp_path / "w")
    for p in list(ds.train.paths)[:10]:
        with Image.open(p) as im:
            assert p.endswith(".png") and im.format == "PNG" and im.size == (40, 40)
    with pytest.raises(ValueError, match="veri layout only"):
        generate("vehicleid", tmp_path / "v", ids=8, image_format="png", progress=False, workers=0)


def test_figure_images_feed_the_runs_input_and_show_rgb(cache_dir):
    from tests.conftest import TINY_WORLD
    from vreid_lightning.data.datamodule import ReIDDataModule
    from vreid_lightning.viz.figures import query_images

    norm = {"channels": "bgr", "pixel_range": 255, "mean": list(RAM_MEAN_BGR), "std": [1, 1, 1]}
    dm = ReIDDataModule(synthetic=dict(TINY_WORLD), cache_dir=str(cache_dir), image_size=(64, 64), num_workers=0,
                        input_norm=norm)
    dm.prepare_data()
    dm.setup("fit")
    x, shown = query_images(dm, 2)
    split = dm.eval_set.split
    first = dm.eval_set.groups["query"][0]
    with Image.open(split.paths[first]) as im:
        rgb = np.asarray(im.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32)
    bgr = torch.from_numpy(rgb[:, :, ::-1].transpose(2, 0, 1).copy()) - torch.tensor(RAM_MEAN_BGR).view(3, 1, 1)
    assert x.shape == (2, 3, 64, 64) and x.min() < -50  # Caffe's 0-255 scale, not ImageNet's
    assert (x[0] - bgr).abs().mean() < 3  # the same picture (resampling differs by a few grey levels at most)
    torch.testing.assert_close(shown[0], ((x[0] + torch.tensor(RAM_MEAN_BGR).view(3, 1, 1)) / 255).flip(0))
