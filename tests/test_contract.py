"""The method contract: a model config names its classes and declares every argument of its module.

``model.net`` / ``model.loss`` are ``_target_`` configs; the runner passes nothing of its own (``build_model``
fills ``data_info`` from the DataModule and instantiates ``cfg.model``); old-shape hyper-parameters and run
directories are one clear error.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from tests.conftest import CONF, TINY, compose
from vreid_lightning.errors import ConfigError

MODEL_CONFIGS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = SimpleNamespace(num_classes=6, attribute_classes={"colour": 5, "type": 4})


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_names_its_classes_and_declares_its_module_arguments(name: str, tmp_path: Path):
    cfg = compose([f"model={name}"], tmp_path)
    model = OmegaConf.to_container(cfg.model, resolve=False)
    module = get_class(model["_target_"])
    for part in ("net", "loss"):
        if part in model:
            assert issubclass(get_class(model[part]["_target_"]), torch.nn.Module), (name, part)
    assert "_target_" in model["net"]
    params = inspect.signature(module.__init__).parameters
    required = {k for k, p in params.items() if k != "self" and p.default is inspect.Parameter.empty}
    assert required <= set(model), f"{name}: the runner passes nothing, so {sorted(required - set(model))} must be declared"
    assert set(model) - {"_target_"} <= set(params), f"{name}: keys the module does not take"
    for group in ("backbone", "optimizer", "scheduler"):
        if group in params:
            assert OmegaConf.to_container(cfg.model, resolve=True)[group] == \
                (OmegaConf.to_container(cfg[group], resolve=True)), (name, group)


def test_build_model_fills_data_info_and_passes_nothing_else(tmp_path: Path):
    from vreid_lightning.runner.fit import build_model

    cfg = compose(["+experiment=ram_synthetic", *TINY], tmp_path)
    assert cfg.data_info.num_classes is None  # what config_resolved.yaml shows: written before the data setup
    model = build_model(cfg, DATA)
    assert cfg.data_info.num_classes == 6 and model.hparams["num_classes"] == 6
    assert model.hparams["attribute_classes"] == {"colour": 5, "type": 4}
    assert model.hparams["backbone"] == OmegaConf.to_container(cfg.backbone, resolve=True)
    assert type(model.hparams["net"]) is dict and model.hparams["net"]["_target_"].endswith("RAMNet")
    with pytest.raises(ConfigError, match=r"data_info.attribute_classes: the DataModule .* has no attribute"):
        build_model(cfg, SimpleNamespace(num_classes=6))


@pytest.mark.parametrize("experiment", ["ram_synthetic", "scan_synthetic"])
def test_the_network_from_its_target_is_the_network_built_directly(experiment: str, tmp_path: Path):
    """Same seed, same weights: naming the class in the config changes no number."""
    from vreid_lightning.models.backbones import build_backbone
    from vreid_lightning.runner.fit import build_model

    cfg = compose([f"+experiment={experiment}", *TINY], tmp_path)
    torch.manual_seed(0)
    module = build_model(cfg, DATA)
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    cls = get_class(net.pop("_target_"))
    extra = {}
    if experiment.startswith("ram"):
        extra = {"attribute_classes": DATA.attribute_classes, "branches": cls.stage_branches(cfg.model.stage)}
    torch.manual_seed(0)
    direct = cls(build_backbone(**OmegaConf.to_container(cfg.backbone, resolve=True)), num_classes=6, **extra, **net)
    mine, theirs = module.net.state_dict(), direct.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_old_shape_hyper_parameters_are_one_clear_error(tmp_path: Path):
    from vreid_lightning.methods.scan import SCANModule

    hp = {"num_classes": 3, "backbone": {"name": "vgg_cnn_m_1024", "width_mult": 0.125, "norm": "bn"},
          "net": {"attention": False}, "loss": {"_target_": "vreid_lightning.losses.scan.SCANLoss"}}
    torch.save({"state_dict": {}, "hyper_parameters": hp, "pytorch-lightning_version": "2.0.0"}, tmp_path / "old.ckpt")
    with pytest.raises(ConfigError, match=r"model.net: expected a mapping with a _target_.*before model configs "
                                          r"named their classes"):
        SCANModule.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=False)


def test_resume_of_a_run_directory_of_the_old_shape_is_one_clear_error(tmp_path: Path):
    import yaml

    from vreid_lightning.run import run

    over = ["+experiment=baseline_synthetic", *TINY]
    old = OmegaConf.to_container(compose(over, tmp_path / "old"), resolve=True)
    del old["model"]["net"]["_target_"], old["data_info"]
    (tmp_path / "old").mkdir(parents=True, exist_ok=True)
    (tmp_path / "old" / "config_resolved.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="made before model configs named their classes"):
        run(compose([*over, f"resume={tmp_path / 'old'}"], tmp_path / "new"))


@pytest.mark.parametrize("value,ok", [(8, True), (0, True), ({"successes": 8, "failures": 4, "top": 5}, True),
                                      (True, False), (-1, False), ({"successes": 8, "failures": 4}, False),
                                      ({"successes": 8, "failures": 4, "top": 0}, False)])
def test_the_one_rank_list_switch(value, ok: bool):
    from vreid_lightning.callbacks.results import ResultsWriter

    if ok:
        assert ResultsWriter(rank_list=value).rank_list == value
    else:
        with pytest.raises(ConfigError, match="callbacks.results_writer.rank_list"):
            ResultsWriter(rank_list=value)


@pytest.mark.parametrize("experiment", ["ram_synthetic", "scan_synthetic", "rnn_ha_synthetic", "vehiclenet_synthetic",
                                        "camera_synthetic", "bot_synthetic"])
def test_hyper_parameters_are_plain_containers(experiment: str, tmp_path: Path):
    """What a checkpoint keeps of the module loads with ``weights_only=True`` and rebuilds the same module."""
    from vreid_lightning.runner.fit import build_model
    from vreid_lightning.runner.stages import stage_config

    cfg = compose([f"+experiment={experiment}", *TINY], tmp_path)
    if cfg.get("stages"):
        cfg = stage_config(cfg, list(cfg.stages)[-1])
    model = build_model(cfg, SimpleNamespace(num_classes=6, attribute_classes={"colour": 5, "type": 4}))
    torch.save({"hyper_parameters": dict(model.hparams)}, tmp_path / "hp.pt")
    hp = torch.load(tmp_path / "hp.pt", weights_only=True)["hyper_parameters"]
    assert hp == dict(model.hparams)
    again = type(model)(**hp)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
