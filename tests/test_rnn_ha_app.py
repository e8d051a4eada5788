"""RNN-HA experiments end to end: every rnn_ha_* experiment's fast_dev_run (results.json with the
model-level accuracy, Fig. 3 and Fig. 4 PNGs), the paper's settings, the ablation model configs, the
missing-label error, and a 2-job ``-m +sweep=rnn_ha_ablation`` run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CONF, TINY_WORLD_OVERRIDES, compose, run_cli

RNN_HA_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("rnn_ha_*.yaml"))

# the conftest's TINY world and loader sizes, without RAM's model keys
RNN_HA_TINY = [
    *TINY_WORLD_OVERRIDES,
    "data.image_size=[64,64]",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.num_workers=0",
    "backbone.width_mult=0.125",
    "model.net.hidden_size=16",
    "model.net.transformer_dims=[16]",
    "model.figures.images=2",
    "callbacks.results_writer.rank_list={successes:2,failures:1,top:5}",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def _overrides(name: str, veri_world: Path, vehicleid_world: Path) -> list[str]:
    keep = [o for o in RNN_HA_TINY if not o.startswith("data")]
    loader = ["data.image_size=[64,64]", "data.batch_size=8", "data.num_workers=0", "data.eval_batch_size=32"]
    if "resnet" in name:  # ResNet-50 has no width/norm switches
        keep = [o for o in keep if not o.startswith("backbone.")] + ["backbone.pretrained=false"]
    else:
        keep.append("backbone.norm=bn")
    if name.endswith("_authors"):  # the fine-tuning stage's own batch (fine_tune.py: 128) would not fit the tiny world
        keep.append("stages.finetune.data.batch_size=8")
    if name.startswith("rnn_ha_veri"):
        return keep + loader + [f"data.root={veri_world}"]
    if "vehicleid" in name:
        from vreid_lightning.data.datasets import load_dataset

        sizes = sorted(load_dataset("vehicleid", vehicleid_world).test_lists, key=int)[:2]
        return keep + loader + [f"data.root={vehicleid_world}", "data.synthetic=null", f"data.test_sizes=[{','.join(sizes)}]",
                                "data.protocol_options.repeats=2"]
    return RNN_HA_TINY + ["backbone.norm=bn"]


def test_rnn_ha_experiments_exist():
    assert {"rnn_ha_synthetic", "rnn_ha_veri", "rnn_ha_vehicleid", "rnn_ha_vehicleid_672",
            "rnn_ha_veri_resnet", "rnn_ha_vehicleid_resnet672"} <= set(RNN_HA_EXPERIMENTS)


@pytest.mark.parametrize("name", RNN_HA_EXPERIMENTS)
def test_fast_dev_run(name: str, tmp_path: Path, veri_world: Path, vehicleid_world: Path):
    from vreid_lightning.run import run

    cfg = compose([f"+experiment={name}", *_overrides(name, veri_world, vehicleid_world),
                   "trainer.fast_dev_run=true"], tmp_path)
    assert cfg.model._target_ == "vreid_lightning.methods.rnn_ha.RNNHAModule"
    run(cfg)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["main_feature"] == "o2"
    assert {k: v for k, v in saved["partial_test"].items() if not k.startswith("model_acc")} == saved["features"]["o2"]
    if "vehicleid" in name:
        assert "rank1_std" in saved["partial_test"]
    else:  # VeRi layout: every test image has a type
        assert saved["partial_test"]["model_acc_images"] > 0
    assert len(list(tmp_path.rglob("attention_maps.png"))) == 1   # Fig. 3
    # Fig. 4: the results writer's outcome layout, in the run's (or each stage's) directory
    assert len(list(tmp_path.rglob("rank_list.png"))) == max(len(cfg.get("stages") or {}), 1)


def test_paper_settings_compose(tmp_path: Path):
    cfg = compose(["+experiment=rnn_ha_veri"], tmp_path)
    assert cfg.backbone.name == "vgg_cnn_m_1024"                                   # sec. 4.2
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.optimizer.lr == 0.001
    assert (cfg.optimizer.alpha, cfg.optimizer.eps, cfg.optimizer.momentum) == (0.99, 1e-8, 0.0)  # defaults
    assert list(cfg.scheduler.milestones) == [5] and cfg.scheduler.gamma == 0.1     # 0.0001 after 5 epochs
    assert cfg.data.batch_size == 64 and list(cfg.data.image_size) == [224, 224]
    net = cfg.model.net
    assert (net.hidden_size, net.hierarchy, net.attention, net.eps) == (1024, "rnn", True, 0.1)
    assert list(net.transformer_dims) == [1024] and net.attended_pool == "mean" and not net.repeat_x1
    assert cfg.model.model_level == "type" and cfg.model.evaluation.metric == "cosine"
    vid = compose(["+experiment=rnn_ha_vehicleid"], tmp_path)
    assert vid.model.model_level == "model" and list(vid.data.test_sizes) == [800, 1600, 2400]
    assert list(compose(["+experiment=rnn_ha_vehicleid_672"], tmp_path).data.image_size) == [672, 672]
    r672 = compose(["+experiment=rnn_ha_vehicleid_resnet672"], tmp_path)
    assert r672.backbone.name == "resnet50" and list(r672.data.image_size) == [672, 672]
    assert compose(["+experiment=rnn_ha_veri_resnet"], tmp_path).backbone.name == "resnet50"


@pytest.mark.parametrize("model,hierarchy,attention", [
    ("rnn_ha", "rnn", True), ("rnn_ha_fc", "fc", True), ("rnn_ha_noatt", "rnn", False)])
def test_ablation_model_configs_switch_one_thing(tmp_path: Path, model: str, hierarchy: str, attention: bool):
    cfg = compose(["+experiment=rnn_ha_synthetic", f"model={model}"], tmp_path)
    assert (cfg.model.net.hierarchy, cfg.model.net.attention) == (hierarchy, attention)
    base = compose(["+experiment=rnn_ha_synthetic"], tmp_path)
    same = {k: v for k, v in cfg.model.net.items() if k not in ("hierarchy", "attention")}
    assert same == {k: v for k, v in base.model.net.items() if k not in ("hierarchy", "attention")}


def test_dataset_without_the_model_level_label_is_one_clear_error(tmp_path: Path, veri_world: Path):
    from hydra.errors import InstantiationException

    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    # Hydra's instantiate wraps the module's ConfigError; the CLI prints either as one line (exit code 2)
    with pytest.raises((ConfigError, InstantiationException), match=r"dataset 'veri' has no labelled 'type' attribute"):
        run(compose(["+experiment=rnn_ha_synthetic", *RNN_HA_TINY, "backbone.norm=bn", "data.attributes=[colour]",
                     "trainer.fast_dev_run=true"], tmp_path))


def test_ablation_sweep_two_jobs(tmp_path: Path, veri_world: Path):
    """The Tables 1-2 sweep with -m; naming two of its three models leaves a 2-job sweep."""
    p = run_cli(["-m", "+experiment=rnn_ha_synthetic", "+sweep=rnn_ha_ablation", *RNN_HA_TINY, "backbone.norm=bn",
                 "trainer.fast_dev_run=true", "model=rnn_ha_fc,rnn_ha"], tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = sorted((tmp_path / "outputs" / "rnn_ha_synthetic" / "multiruns").rglob("results.json"))
    assert len(results) == 2
    hierarchies = set()
    for r in results:
        cfg = (r.parent / "config_resolved.yaml").read_text()
        hierarchies.add(next(ln.split(":")[1].strip() for ln in cfg.splitlines() if "hierarchy:" in ln))
        assert "model_acc" in json.loads(r.read_text())["partial_test"]  # fast_dev_run: a cut-short test (issue 24)
    assert hierarchies == {"fc", "rnn"}
