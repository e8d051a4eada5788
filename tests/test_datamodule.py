"""DataModule pieces: label remapping, evaluation shards, evaluation sets, the synthetic-world cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vreid_lightning.data.datamodule import ReIDDataModule, ShardSampler, remap_labels
from vreid_lightning.data.datasets.base import MISSING
from vreid_lightning.errors import ConfigError


def test_remap_labels_contiguous_and_keeps_ignore():
    mapped, classes = remap_labels(np.array([7, 3, MISSING, 7, 10, MISSING]))
    assert classes.tolist() == [3, 7, 10]
    assert mapped.tolist() == [1, 0, MISSING, 1, 2, MISSING]


@pytest.mark.parametrize("n,bs,world", [(10, 3, 2), (7, 4, 3), (5, 8, 2), (64, 8, 4)])
def test_shard_sampler_covers_once_in_whole_batches(n: int, bs: int, world: int):
    shards = [ShardSampler(n, bs, rank=r, world=world).indices for r in range(world)]
    single_batches = [list(range(s, min(s + bs, n))) for s in range(0, n, bs)]
    owners = [r for r in range(world) if single_batches[r::world]]
    flat = sorted(i for r in owners for i in shards[r])
    assert flat == list(range(n))  # every row exactly once, no padding duplicates
    for r, shard in enumerate(shards):
        batches = [shard[i:i + bs] for i in range(0, len(shard), bs)]
        # same batch composition as one process; a rank without a batch re-extracts row 0 only
        assert batches == (single_batches[r::world] if r in owners else [[0]])


def test_shard_sampler_never_leaves_a_rank_empty():
    shards = [ShardSampler(5, 8, rank=r, world=3).indices for r in range(3)]
    assert shards == [[0, 1, 2, 3, 4], [0], [0]]  # ranks 1, 2 repeat row 0 (de-duplicated when gathered)


def test_vehicleid_eval_set_shares_images_between_sizes(vehicleid_world: Path):
    dm = ReIDDataModule(dataset="vehicleid", root=str(vehicleid_world), image_size=(32, 32), num_workers=0)
    dm.setup("fit")
    es = dm.eval_set
    assert es.protocol == "vehicleid"
    sizes = list(es.groups)
    assert len(sizes) >= 2
    all_paths = [p for s in sizes for p in (dm.dataset.test_lists[s].paths)]
    assert len(es.split) == len(set(all_paths))  # each image extracted once
    for s in sizes:
        assert [es.split.paths[i] for i in es.groups[s]] == dm.dataset.test_lists[s].paths


def test_image_eval_set_and_attribute_classes(veri_world: Path):
    dm = ReIDDataModule(dataset="veri", root=str(veri_world), image_size=(32, 32), num_workers=0,
                        attributes=["colour", "type"])
    dm.setup("fit")
    es = dm.eval_set
    assert len(es.groups["query"]) == len(dm.dataset.query)
    assert len(es.groups["gallery"]) == len(dm.dataset.gallery)
    assert dm.num_classes == dm.dataset.train.num_ids
    assert set(dm.attribute_classes) == {"colour", "type"}
    assert all(0 < c <= 10 for c in dm.attribute_classes.values())
    with pytest.raises(ConfigError, match="model"):
        ReIDDataModule(dataset="veri", root=str(veri_world), attributes=["model"], num_workers=0).setup("fit")


def test_missing_root_is_a_clear_error():
    with pytest.raises(ConfigError, match="data.root"):
        ReIDDataModule(dataset="veri", root=None)


def test_synthetic_world_is_cached_and_regenerated_on_change(tmp_path: Path):
    from vreid_lightning.data.synthetic import ensure_synthetic_world

    params = {"layout": "veri", "ids": 8, "seed": 1, "image_size": 48, "images_per_id": 8}
    a = ensure_synthetic_world(tmp_path, params, progress=False)
    stamp = json.loads((a / "world.json").read_text())
    assert stamp["params"] == params and stamp["generator_version"]
    mtime = (a / "world.json").stat().st_mtime_ns
    assert ensure_synthetic_world(tmp_path, params, progress=False) == a
    assert (a / "world.json").stat().st_mtime_ns == mtime  # reused, not rewritten
    b = ensure_synthetic_world(tmp_path, {**params, "seed": 2}, progress=False)
    assert b != a and (b / "world.json").is_file()


def test_extra_sources_merge_with_disjoint_labels(veri_world: Path, vehicleid_world: Path):
    """VehicleNet-style training set: the target's train split plus other sources' training splits."""
    dm = ReIDDataModule(dataset="veri", root=str(veri_world), num_workers=0, attributes=[], source_splits="train",
                        extra_sources=[{"dataset": "vehicleid", "root": str(vehicleid_world)}])
    dm.setup("fit")
    veri_train = dm.dataset.train
    from vreid_lightning.data.datasets import load_dataset

    vid = load_dataset("vehicleid", vehicleid_world)
    assert len(dm.train_split) == len(veri_train) + len(vid.train)
    assert dm.num_classes == veri_train.num_ids + vid.train.num_ids
    assert [s["images"] for s in dm.source_summary] == [len(veri_train), len(vid.train)]
    # the target's evaluation images never enter training
    assert not set(dm.eval_set.split.paths) & set(dm.train_split.paths)


def test_validation_split_holds_out_training_identities(veri_world: Path):
    dm = ReIDDataModule(dataset="veri", root=str(veri_world), num_workers=0, val_ids=2, seed=5)
    dm.setup("fit")
    val = dm.eval_set_for("val")
    assert val is not dm.eval_set_for("test")
    held = set(np.unique(val.split.pids))
    assert len(held) == 2 and not held & set(dm.train_split.pids)
    assert dm.num_classes == dm.dataset.train.num_ids - 2
    q = val.groups["query"]
    pairs = list(zip(val.split.pids[q], val.split.camids[q]))
    assert len(pairs) == len(set(pairs)) == len(set(zip(val.split.pids, val.split.camids)))
    assert "2 held-out" in dm.model_selection
    again = ReIDDataModule(dataset="veri", root=str(veri_world), num_workers=0, val_ids=2, seed=5)
    again.setup("fit")
    assert set(np.unique(again.eval_set_for("val").split.pids)) == held  # seeded
    with pytest.raises(ConfigError, match="data.val_ids"):
        ReIDDataModule(dataset="veri", root=str(veri_world), num_workers=0, val_ids=999).setup("fit")


def test_the_eval_set_is_built_by_the_datasets_protocol_object(veri_world: Path):
    """The registry is the one place a dataset's protocol name is looked up: an unregistered one is one error."""
    from dataclasses import replace

    from vreid_lightning.data.datamodule import _build_eval_set
    from vreid_lightning.data.datasets import load_dataset

    ds = replace(load_dataset("veri", veri_world), protocol="track")
    with pytest.raises(ValueError, match=r"unknown evaluation protocol 'track'; registered: \['image', 'vehicleid'\]"):
        _build_eval_set(ds, None, {})
