"""RNN-HA end to end: a tiny run's model-level accuracy and Fig. 3 / Fig. 4 PNGs, the paper's settings, the
ablation model configs, the missing-label error, and a 2-job ``-m +sweep=rnn_ha_ablation`` run. Every
rnn_ha_* experiment's own tiny run is tests/test_experiments.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIGURES, TINY, compose, run_cli


def test_tiny_run_reports_the_model_level_accuracy_and_draws_figs_3_and_4(tmp_path: Path, veri_world: Path):
    from vreid_lightning.run import run

    results = run(compose(["+experiment=rnn_ha_synthetic", *TINY, FIGURES,
                           "callbacks.results_writer.rank_list={successes:2,failures:1,top:5}"], tmp_path))
    assert results["main_feature"] == "o2"  # sec. 3.3: the vehicle-level representation is the test feature
    assert results["test"]["model_acc_images"] > 0  # VeRi layout: test images carry the type (the model level)
    assert len(list(tmp_path.rglob("attention_maps.png"))) == 1   # Fig. 3
    assert len(list(tmp_path.rglob("rank_list.png"))) == 1   # Fig. 4: the results writer's outcome layout


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
        run(compose(["+experiment=rnn_ha_synthetic", *TINY, "data.attributes=[colour]",
                     "trainer.fast_dev_run=true"], tmp_path))


def test_ablation_sweep_two_jobs(tmp_path: Path, veri_world: Path):
    """The Tables 1-2 sweep with -m; naming two of its three models leaves a 2-job sweep."""
    p = run_cli(["-m", "+experiment=rnn_ha_synthetic", "+sweep=rnn_ha_ablation", *TINY,
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
