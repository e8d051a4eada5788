"""VehicleNet: the network, per-group learning rates, the stage-II classifier swap, the multi-source
merge (disjoint labels, the target's test images kept out), bad sources, the two stages on tiny worlds
and a 2-job Table II sweep. Every vehiclenet_* experiment's own tiny run is tests/test_experiments.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FIGURES, TINY, compose, run_cli
from vreid_lightning.errors import ConfigError

SMALL_BACKBONE = {"name": "vgg_cnn_m", "width_mult": 0.125, "norm": "bn"}
OPT = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.02, "momentum": 0.9}
# tiny worlds in the four layouts, seeds apart (other vehicles)
WORLDS = {
    "cityflow": {"layout": "cityflow", "ids": 24, "seed": 10, "image_size": 48, "images_per_id": 14},
    "veri": {"layout": "veri", "ids": 8, "seed": 11, "image_size": 48, "images_per_id": 8},
    "vehicleid": {"layout": "vehicleid", "ids": 30, "seed": 12, "image_size": 48, "images_per_id": 4},
    "compcars": {"layout": "compcars", "ids": 12, "seed": 13, "image_size": 48, "images_per_id": 3},
}


@pytest.fixture(scope="module")
def worlds(cache_dir: Path) -> dict[str, Path]:
    from vreid_lightning.data.synthetic import ensure_synthetic_world

    return {k: ensure_synthetic_world(cache_dir, dict(v), progress=False) for k, v in WORLDS.items()}


def _module(num_classes: int = 7, **kw):
    from vreid_lightning.methods.vehiclenet import VehicleNetModule

    kw["net"] = {"_target_": "vreid_lightning.models.vehiclenet.VehicleNet", **kw.get("net", {})}
    return VehicleNetModule(num_classes=num_classes, backbone=SMALL_BACKBONE, **{"optimizer": OPT, "loss": {"_target_": "vreid_lightning.losses.CrossEntropyLoss"}, **kw})


# ---------------------------------------------------------------------------------------- network
def test_network_outputs_init_and_gradients():
    from vreid_lightning.models.backbones import build_backbone
    from vreid_lightning.models.vehiclenet import FEATURE, VehicleNet

    torch.manual_seed(0)
    net = VehicleNet(build_backbone(**SMALL_BACKBONE), num_classes=2000, embed_dim=512, dropout=0.2)
    assert net.feature_dims == {FEATURE: 512}
    # the authors' initialisation: BN ~ N(1, 0.02), fc2 ~ N(0, 0.001), zero biases
    assert abs(net.bn.weight.mean().item() - 1.0) < 0.01 and 0.01 < net.bn.weight.std().item() < 0.03
    assert 0.0008 < net.classifier.weight.std().item() < 0.0012
    assert not net.bn.bias.any() and not net.classifier.bias.any() and not net.fc1.bias.any()
    x = torch.randn(4, 3, 64, 64)
    out = net(x)
    assert out.logits.shape == (4, 2000) and out.features[FEATURE].shape == (4, 512)
    assert out.feature_map.dim() == 4 and out.feature_map.shape[1] == net.backbone.out_channels
    # the feature is the BN output of fc1 (in eval mode: the running-statistics affine map of fc1)
    net.eval()
    pooled = net(x).feature_map.mean(dim=(2, 3))
    assert torch.allclose(net(x).features[FEATURE], net.bn(net.fc1(pooled)), atol=1e-5)
    net.train()
    torch.nn.functional.cross_entropy(net(x).logits, torch.tensor([0, 1, 2, 3])).backward()
    # every parameter learns (fc1's bias only through BN's batch mean, which cancels it in training mode)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n != "fc1.bias")


def test_param_groups_put_the_backbone_at_a_tenth_of_the_learning_rate():
    m = _module()
    opt = m.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": pytest.approx(0.002), "new_layers": pytest.approx(0.02)}
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())  # every parameter once
    backbone_ids = {id(p) for p in m.net.backbone.parameters()}
    assert {id(p) for p in opt.param_groups[0]["params"]} == backbone_ids
    with pytest.raises(ConfigError, match="optimizer.lr"):
        _module(optimizer={"_target_": "torch.optim.SGD", "_partial_": True}).param_groups()


def test_stage_two_gets_a_new_classifier_and_keeps_everything_else(tmp_path: Path):
    torch.manual_seed(0)
    stage1 = _module(num_classes=50)
    with torch.no_grad():  # as after training: weights and BN statistics away from their init
        for p in stage1.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        stage1.net.bn.running_mean.add_(1.5)
    ckpt = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict()}, ckpt)
    torch.manual_seed(1)
    stage2 = _module(num_classes=9, net={"dropout": 0.2})
    fresh = stage2.net.classifier.weight.detach().clone()
    report = stage2.load_previous_stage(ckpt)
    assert report["new"] == ["net.classifier.bias", "net.classifier.weight"]
    s1, s2 = stage1.state_dict(), stage2.state_dict()
    carried = [k for k in s1 if k.startswith("net.") and not k.startswith("net.classifier.")]
    assert sorted(report["loaded"]) == sorted(carried) and any(k.startswith("net.backbone.") for k in carried)
    for k in carried:  # backbone, fc1 and BN (with its running statistics) bit for bit
        assert torch.equal(s1[k], s2[k]), k
    w = stage2.net.classifier.weight
    assert w.shape == (9, 512)  # the target's classes
    assert torch.equal(w, fresh) and not stage2.net.classifier.bias.any()  # re-initialised, not copied
    assert 0.0005 < w.std().item() < 0.0015
    assert not torch.allclose(w, s1["net.classifier.weight"][:9])
    with pytest.raises(ConfigError, match="does not exist"):
        stage2.load_previous_stage(tmp_path / "none.ckpt")


# ---------------------------------------------------------------------------------------- data
def test_merged_label_space_is_disjoint_and_the_targets_test_images_stay_out(worlds: dict[str, Path]):
    from vreid_lightning.data.datamodule import ReIDDataModule
    from vreid_lightning.data.datasets import load_dataset

    dm = ReIDDataModule(dataset="cityflow", root=str(worlds["cityflow"]), num_workers=0, attributes=[],
                        extra_sources=[{"dataset": k, "root": str(worlds[k])} for k in ("veri", "vehicleid", "compcars")])
    dm.setup("fit")
    train, source = dm.train_split, dm.train_split.attributes["source"]
    ranges = [(dm.train_pids[source == i].min(), dm.train_pids[source == i].max()) for i in range(4)]
    assert all(hi < lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))  # disjoint, in order
    assert dm.num_classes == sum(s["ids"] for s in dm.source_summary)
    assert np.array_equal(np.unique(dm.train_pids), np.arange(dm.num_classes))
    # the target's queries and held-out identities are never trained on
    target = dm.dataset
    held = set(target.validation["held_out_ids"])
    assert not set(target.query.paths) & set(train.paths)
    assert not held & set(target.train.pids.tolist())
    assert sum(source == 0) == len(target.train)
    # a source gives every labelled image once: VeRi train + gallery (its queries are gallery copies)
    veri = load_dataset("veri", worlds["veri"])
    assert sum(source == 1) == len(veri.train) + len(veri.gallery)
    names = [Path(p).name for p, s in zip(train.paths, source) if s == 1]
    assert len(names) == len(set(names))
    s = dm.sources
    assert list(s) == ["0:cityflow", "1:veri", "2:vehicleid", "3:compcars", "total"]
    assert s["total"] == {"images": len(train), "ids": dm.num_classes}
    assert s["1:veri"]["splits"] == "all" and s["0:cityflow"]["splits"] == "train"
    only = ReIDDataModule(dataset="cityflow", root=str(worlds["cityflow"]), num_workers=0, attributes=[],
                          source_splits="train", extra_sources=[{"dataset": "veri", "root": str(worlds["veri"])}])
    only.setup("fit")
    assert [r["name"] for r in only.source_summary] == ["cityflow", "veri"]
    assert only.source_summary[1]["images"] == len(veri.train)


def test_bad_sources_are_named_before_any_training(worlds: dict[str, Path], tmp_path: Path):
    from vreid_lightning.data.datamodule import ReIDDataModule

    def dm(*sources: dict, **kw) -> ReIDDataModule:
        m = ReIDDataModule(dataset="cityflow", root=str(worlds["cityflow"]), num_workers=0, attributes=[],
                           extra_sources=list(sources), **kw)
        m.setup("fit")
        return m

    missing = tmp_path / "no" / "VeRi"
    with pytest.raises(ConfigError, match=rf"extra_sources\[0\] \(veri\).*{missing}"):
        dm({"dataset": "veri", "root": str(missing)})
    broken = tmp_path / "broken"
    (broken / "image_train").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"extra_sources\[1\] \(veri\).*name_train|extra_sources\[1\] \(veri\).*train"):
        dm({"dataset": "vehicleid", "root": str(worlds["vehicleid"])}, {"dataset": "veri", "root": str(broken)})
    with pytest.raises(ConfigError, match=r"extra_sources\[0\] \(cityflow\).*also the target"):
        dm({"dataset": "cityflow", "root": str(worlds["cityflow"]) + "/"})
    with pytest.raises(ConfigError, match=r"extra_sources\[1\] \(veri\).*also data.extra_sources\[0\]"):
        dm({"dataset": "veri", "root": str(worlds["veri"])}, {"dataset": "veri", "root": str(worlds["veri"])})
    with pytest.raises(ConfigError, match="source_splits"):
        dm({"dataset": "veri", "root": str(worlds["veri"])}, source_splits="test")
    with pytest.raises(ConfigError, match=r"extra_sources\[0\]: expected keys"):
        dm({"dataset": "veri", "path": str(worlds["veri"])})
    with pytest.raises(ConfigError, match=r"extra_sources\[0\] \(veri\): neither root nor synthetic"):
        dm({"dataset": "veri", "root": None})


def test_a_broken_source_stops_the_run_before_training(worlds: dict[str, Path], tmp_path: Path):
    from vreid_lightning.run import run

    missing = tmp_path / "nowhere"
    cfg = compose(["+experiment=vehiclenet_synthetic", *TINY, f"tiny.sources.vehicleid.root={missing}",
                   "tiny.sources.vehicleid.synthetic=null"], tmp_path / "run")
    with pytest.raises(ConfigError, match=rf"extra_sources\[1\] \(vehicleid\).*{missing}"):
        run(cfg)
    assert not (tmp_path / "run" / "stages").exists()  # nothing trained


# ---------------------------------------------------------------------------------------- experiments
def test_stage_one_merges_the_sources_and_stage_two_trains_the_target_alone(tmp_path: Path):
    """Algorithm 1 on the tiny worlds: stage I on the merged sources, stage II on the target alone with a new
    classifier of its classes and its own dropout, from stage I's weights; then stage II alone from a checkpoint."""
    from vreid_lightning.run import run
    from vreid_lightning.runner.stages import stage_config

    cfg = compose(["+experiment=vehiclenet_synthetic", *TINY, FIGURES], tmp_path)
    results = run(cfg)
    data = results["stage_data"]
    assert data["stage1"]["train_ids"] > data["stage2"]["train_ids"]
    hp = {s: torch.load(next((tmp_path / "stages" / s).rglob("*.ckpt")), map_location="cpu",
                        weights_only=False)["hyper_parameters"] for s in ("stage1", "stage2")}
    for stage in ("stage1", "stage2"):  # each stage's own net settings reach its module
        assert hp[stage]["net"]["dropout"] == stage_config(cfg, stage).model.net.dropout
        assert (tmp_path / "stages" / stage / "activation_heatmaps.png").is_file()
        assert (tmp_path / "stages" / stage / "rank_list_viewpoints.png").is_file()
    assert hp["stage1"]["net"]["dropout"] != hp["stage2"]["net"]["dropout"]
    assert hp["stage2"]["num_classes"] == data["stage2"]["train_ids"]
    ckpt = next((tmp_path / "stages" / "stage1").rglob("*.ckpt"))
    alone = run(compose(["+experiment=vehiclenet_synthetic", *TINY, "run_stages=[stage2]", f"init_from={ckpt}"],
                        tmp_path / "alone"))
    assert list(alone["stages"]) == ["stage2"]


def test_sources_sweep_runs_two_jobs(tmp_path: Path, worlds: dict[str, Path]):
    p = run_cli(["-m", "+experiment=vehiclenet_synthetic", "+sweep=vehiclenet_sources", *TINY,
                 "trainer.fast_dev_run=true", "model.figures=null", "source_set=none,veri"], tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted((tmp_path / "outputs" / "vehiclenet_synthetic" / "multiruns").rglob("results.json"))
    assert len(results) == 2
    stage1_ids = sorted(json.loads(r.read_text())["data"]["train_ids"] for r in results)
    # none trains stage I on the target alone; veri adds the VeRi world's identities
    assert stage1_ids[1] > stage1_ids[0]
