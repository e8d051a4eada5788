"""Planted-answer end-to-end tests: the run's metrics equal a plain reference computed from a known feature.

The whole path runs (config -> runner -> DataModule -> the shared evaluation -> protocol object -> results
writer -> runner results), with :class:`tests.planted.PlantedModule`, whose feature is a fixed function of
the image. Each test also checks that every protocol fault the mutation script plants (query/gallery
swapped, no junk rule, the wrong distance, no test-time flip, a stage from fresh weights) moves the
reference answer, so the equality cannot hold under that fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from tests.conftest import TINY_WORLD_OVERRIDES, compose
from tests.planted import planted_feature, reference_metrics

PLANTED = {"_target_": "tests.planted.PlantedModule", "optimizer": "${optimizer}", "scheduler": "${scheduler}",
           "evaluation": {"flip": True, "metric": "cosine", "normalize": "none", "feature_study": False}}
QUIET = [*TINY_WORLD_OVERRIDES, "data.image_size=[64,64]", "data.batch_size=8", "data.num_instances=2",
         "data.eval_batch_size=32", "data.num_workers=0", "trainer.enable_progress_bar=false", "logger=none",
         "callbacks.results_writer.rank_list=0", "callbacks.efficiency=null", "callbacks.lr_monitor=null"]


def _planted_cfg(tmp_path: Path, extra: list[str] = ()) -> object:
    cfg = compose(["+experiment=baseline_synthetic", *QUIET, *extra], tmp_path)
    with open_dict(cfg):
        cfg.model = OmegaConf.create(PLANTED)
    return cfg


def _reference_inputs(cfg: object, w: torch.Tensor) -> dict[str, dict]:
    """The test images' planted features (with and without the flip average) and the protocol's labels."""
    from hydra.utils import instantiate

    from vreid_lightning.data.datamodule import ImageDataset
    from vreid_lightning.data.transforms import build_test_transform

    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup("test")
    es = dm.eval_set
    ds = ImageDataset(es.split, build_test_transform(dm.image_size))
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    plain = planted_feature(x, w)
    flipped = (plain + planted_feature(torch.flip(x, dims=[3]), w)) / 2
    labels = {"pids": es.split.pids, "cams": es.split.camids}
    return {"flip": {"feats": flipped.detach().numpy().astype(np.float64), **labels},
            "plain": {"feats": plain.detach().numpy().astype(np.float64), **labels},
            "groups": {"query": es.groups["query"], "gallery": es.groups["gallery"]}}


def _ref(inp: dict, flip: bool = True, swap: bool = False, metric: str = "cosine", junk: bool = True) -> dict:
    d = inp["flip" if flip else "plain"]
    q, g = inp["groups"]["query"], inp["groups"]["gallery"]
    if swap:
        q, g = g, q
    return reference_metrics(d["feats"], d["pids"], d["cams"], q, g, metric=metric, junk=junk)


def test_planted_answer_through_the_whole_run(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    cfg = _planted_cfg(tmp_path, ["train=false"])
    results = run(cfg)
    inp = _reference_inputs(cfg, torch.ones(12))
    ref = _ref(inp)
    assert results["test"]["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)
    assert results["test"]["rank1"] == pytest.approx(ref["rank1"], abs=1e-9)
    # every fault moves the answer: a run with it could not equal the reference
    faults = {"query/gallery swapped": _ref(inp, swap=True), "no junk rule": _ref(inp, junk=False),
              "euclidean instead of cosine": _ref(inp, metric="euclidean"), "no test-time flip": _ref(inp, flip=False)}
    for name, wrong in faults.items():
        assert abs(wrong["mAP"] - ref["mAP"]) > 1e-3, f"{name} does not move the planted answer"
    # the file the results writer wrote holds the same numbers the runner got in memory
    import json

    assert json.loads((tmp_path / "test_results.json").read_text())["metrics"]["mAP"] == pytest.approx(ref["mAP"])


def test_euclidean_run_gives_the_euclidean_answer(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    cfg = _planted_cfg(tmp_path, ["train=false"])
    with open_dict(cfg):
        cfg.model.evaluation.metric = "euclidean"
    results = run(cfg)
    ref = _ref(_reference_inputs(cfg, torch.ones(12)), metric="euclidean")
    assert results["test"]["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)


def test_a_stage_starts_from_the_previous_stages_weights(tmp_path: Path, veri_world: Path):
    """Stage ``second`` trains nothing: it must test exactly the weights ``first`` trained, not fresh ones."""
    from vreid_lightning.run import run

    cfg = _planted_cfg(tmp_path, ["optimizer.lr=0.5", "trainer.limit_train_batches=2"])
    with open_dict(cfg):
        cfg.stages = OmegaConf.create({
            "first": {"trainer": {"max_epochs": 2, "check_val_every_n_epoch": 1}},
            "second": {"trainer": {"max_epochs": 1, "limit_train_batches": 0, "check_val_every_n_epoch": 1}},
        })
        cfg.trainer.check_val_every_n_epoch = 1
    results = run(cfg)
    first = torch.load(results["stage_checkpoints"]["first"]["path"], map_location="cpu", weights_only=False)
    w = first["state_dict"]["w"]
    assert results["stage_checkpoints"]["first"]["epoch"] == 2  # saved after the last epoch, not one chosen on test images
    inp = _reference_inputs(cfg, w)
    trained = _ref(inp)
    fresh = _ref(_reference_inputs(cfg, torch.ones(12)))
    assert abs(trained["mAP"] - fresh["mAP"]) > 1e-3  # training moved the answer
    for stage in ("first", "second"):
        assert results["stages"][stage]["mAP"] == pytest.approx(trained["mAP"], abs=1e-6), stage


def test_extract_batch_receives_the_evaluation_metadata(tmp_path: Path, veri_world: Path):
    """A method that needs side information at test time gets it: the flipped pass sees the same metadata."""
    from hydra.utils import instantiate

    from tests.planted import PlantedModule

    seen: list[dict] = []

    class SideInfo(PlantedModule):
        def extract_batch(self, batch: dict) -> dict:
            seen.append({k: batch[k] for k in ("camid", "timestamp", "track", "index")})
            return {"planted": planted_feature(batch["image"], self.w) + batch["camid"][:, None].float()}

    cfg = _planted_cfg(tmp_path)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    module = SideInfo(evaluation={"flip": True})
    feats = module.extract_eval_features(batch)["planted"]
    es = dm.eval_set
    assert len(seen) == 2 and torch.equal(seen[0]["camid"], seen[1]["camid"])
    assert torch.equal(seen[0]["camid"], torch.as_tensor(es.split.camids[batch["index"].numpy()]))
    assert torch.equal(seen[0]["timestamp"], torch.as_tensor(es.split.timestamps[batch["index"].numpy()]))
    flipped = (planted_feature(batch["image"], module.w) + planted_feature(torch.flip(batch["image"], dims=[3]),
                                                                           module.w)) / 2
    assert torch.allclose(feats, flipped + batch["camid"][:, None].float(), atol=1e-6)
