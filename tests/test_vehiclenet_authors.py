"""VehicleNet as its authors released it: the net_last.pth importer (key by key, strict, bad input), the checkpoint
checks of the module, the authors' multi-scale test, test resize and warm-up."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.nn import functional as F

from vreid_lightning.convert import vehiclenet as VC
from vreid_lightning.data.transforms import build_test_transform, build_train_transform
from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.tta import multi_scale_features
from vreid_lightning.methods.vehiclenet import VehicleNetModule

CLASSES = 7


def _authors_state(fmt: str) -> dict[str, torch.Tensor]:
    """An authors' state dict built from their key names and shapes (not through the importer's mapping): the
    backbone as the library the authors build it from saves it under ``model.``, then the ClassBlock; every
    tensor holds one distinct constant (its index), so where it lands can be read back."""
    if fmt == "vehiclenet-resnet50":  # ft_net: torchvision resnet50 incl. its unused fc
        trunk, width = torchvision.models.resnet50().state_dict(), 2048
    elif fmt == "vehiclenet-densenet121":  # ft_net_dense: torchvision densenet121 (features.*, classifier.*)
        trunk, width = torchvision.models.densenet121().state_dict(), 1024
    else:  # ft_net_SE: Cadene's pretrainedmodels se_resnext101_32x4d without last_linear (timm's legacy port)
        import timm

        trunk, width = timm.create_model("legacy_seresnext101_32x4d", num_classes=0).state_dict(), 2048
    state = {f"model.{k}": v for k, v in trunk.items()}
    # ClassBlock (model.py): add_block = [Linear(C, 512), BatchNorm1d(512)], classifier = [Linear(512, classes)]
    state.update({"classifier.add_block.0.weight": torch.empty(512, width), "classifier.add_block.0.bias": torch.empty(512),
                  "classifier.add_block.1.weight": torch.empty(512), "classifier.add_block.1.bias": torch.empty(512),
                  "classifier.add_block.1.running_mean": torch.empty(512),
                  "classifier.add_block.1.running_var": torch.empty(512),
                  "classifier.add_block.1.num_batches_tracked": torch.tensor(0),
                  "classifier.classifier.0.weight": torch.empty(CLASSES, 512),
                  "classifier.classifier.0.bias": torch.empty(CLASSES)})
    return {k: torch.full_like(v, i, dtype=v.dtype) for i, (k, v) in enumerate(state.items())}


#: authors' key -> our key, written out for each format (the importer's mapping must agree with these)
EXPECTED = {
    "vehiclenet-resnet50": {"model.conv1.weight": "net.backbone.conv1.weight",
                            "model.layer4.0.downsample.1.running_var": "net.backbone.layer4.0.downsample.1.running_var",
                            "model.layer3.5.bn3.num_batches_tracked": "net.backbone.layer3.5.bn3.num_batches_tracked"},
    "vehiclenet-densenet121": {"model.features.conv0.weight": "net.backbone.features.conv0.weight",
                               "model.features.norm5.running_mean": "net.backbone.features.norm5.running_mean",
                               "model.features.denseblock4.denselayer16.conv2.weight":
                                   "net.backbone.features.denseblock4.denselayer16.conv2.weight"},
    "vehiclenet-seresnext101": {"model.layer0.conv1.weight": "net.backbone.model.layer0.conv1.weight",
                                "model.layer1.0.se_module.fc1.weight": "net.backbone.model.layer1.0.se_module.fc1.weight",
                                "model.layer4.2.se_module.fc2.bias": "net.backbone.model.layer4.2.se_module.fc2.bias"},
}
HEAD = {"classifier.add_block.0.weight": "net.fc1.weight", "classifier.add_block.0.bias": "net.fc1.bias",
        "classifier.add_block.1.weight": "net.bn.weight", "classifier.add_block.1.running_var": "net.bn.running_var",
        "classifier.classifier.0.weight": "net.classifier.weight", "classifier.classifier.0.bias": "net.classifier.bias"}


def _module(fmt: str, stride: int = 1, classes: int = CLASSES) -> VehicleNetModule:
    backbone = {**VC.BACKBONE[fmt], "pretrained": False, "weights": None, "last_stride": stride}
    return VehicleNetModule(num_classes=classes, backbone=backbone, net={"_target_": "vreid_lightning.models.vehiclenet.VehicleNet"}, loss={"_target_": "vreid_lightning.losses.CrossEntropyLoss"})


@pytest.fixture(scope="module")
def modules() -> dict[str, VehicleNetModule]:
    torch.manual_seed(0)
    return {fmt: _module(fmt) for fmt in VC.BACKBONE}


@pytest.mark.parametrize("fmt", list(VC.BACKBONE))
@pytest.mark.parametrize("prefix", ["", "module."])
def test_every_authors_tensor_lands_once(modules: dict[str, VehicleNetModule], fmt: str, prefix: str) -> None:
    state = _authors_state(fmt)
    own = modules[fmt].state_dict()
    out = VC.convert_state_dict(fmt, {prefix + k: v for k, v in state.items()}, own, "net_last.pth")
    assert set(out) == set(own)
    for theirs, ours in {**EXPECTED[fmt], **HEAD}.items():
        assert torch.equal(out[ours], state[theirs]), (theirs, ours)
    used = [i for i, k in enumerate(state) if not (VC.UNUSED[fmt] and k.startswith(VC.UNUSED[fmt]))]
    landed = sorted(int(v.flatten()[0]) for v in out.values())
    assert landed == used  # a bijection: every used tensor once, nothing else
    unused = [k for k in state if VC.UNUSED[fmt] and k.startswith(VC.UNUSED[fmt])]
    assert unused == {"vehiclenet-resnet50": ["model.fc.weight", "model.fc.bias"],
                      "vehiclenet-densenet121": ["model.classifier.weight", "model.classifier.bias"],
                      "vehiclenet-seresnext101": []}[fmt]


def test_strict_errors_name_file_and_keys(modules: dict[str, VehicleNetModule]) -> None:
    own = modules["vehiclenet-resnet50"].state_dict()
    state = _authors_state("vehiclenet-resnet50")
    with pytest.raises(ConfigError, match=r"a\.pth: .*not consumed: model\.extra\.weight"):
        VC.convert_state_dict("vehiclenet-resnet50", {**state, "model.extra.weight": torch.zeros(1)}, own, "a.pth")
    short = {k: v for k, v in state.items() if k != "model.layer2.0.conv1.weight"}
    with pytest.raises(ConfigError, match=r"a\.pth: .*not in the file: net\.backbone\.layer2\.0\.conv1\.weight"):
        VC.convert_state_dict("vehiclenet-resnet50", short, own, "a.pth")
    bad = {**state, "classifier.add_block.0.weight": torch.zeros(512, 1024)}
    with pytest.raises(ConfigError, match=r"shape mismatch.*classifier\.add_block\.0\.weight \(512, 1024\)"):
        VC.convert_state_dict("vehiclenet-resnet50", bad, own, "a.pth")


def test_checkpoint_of_another_model_is_refused(modules: dict[str, VehicleNetModule]) -> None:
    own = modules["vehiclenet-resnet50"].state_dict()
    with pytest.raises(ConfigError, match=r"dense\.pth: not a vehiclenet-resnet50 checkpoint.*not consumed"):
        VC.convert_state_dict("vehiclenet-resnet50", _authors_state("vehiclenet-densenet121"), own, "dense.pth")


def _write(tmp_path: Path, fmt: str, stride: int = 1) -> tuple[Path, Path]:
    src = tmp_path / "net_last.pth"
    torch.save(_authors_state(fmt), src)
    opts = tmp_path / "opts.yaml"
    opts.write_text(f"inputsize: 256\nstride: {stride}\npool: avg\nuse_dense: {fmt.endswith('densenet121')}\n"
                    f"use_SE: false\nPCB: false\nh: 256\nw: 256\nnclasses: {CLASSES}\n")
    return src, opts


def test_command_line_writes_a_checkpoint_the_module_tests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, opts = _write(tmp_path, "vehiclenet-resnet50")
    out = tmp_path / "imported.ckpt"
    assert VC.main("vehiclenet-resnet50", [str(src), str(out), "--opts", str(opts)]) == 0
    assert "282x282" in capsys.readouterr().out  # round(1.1 x 256): the test input the authors use
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["authors_import"]["opts"]["stride"] == 1 and ckpt["hyper_parameters"]["backbone"]["last_stride"] == 1
    assert torch.equal(ckpt["state_dict"]["net.fc1.weight"], _authors_state("vehiclenet-resnet50")[
        "classifier.add_block.0.weight"])
    # tested on data of another class count: fc2 is taken over (it is not part of the feature)
    model = _module("vehiclenet-resnet50", stride=1, classes=3)
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    assert model.net.num_classes == CLASSES
    # built with another stride: refused, naming the option
    with pytest.raises(ConfigError, match=r"backbone\.last_stride=1.*this run has 2"):
        _module("vehiclenet-resnet50", stride=2).on_load_checkpoint(ckpt)
    # a converted stage-I model starts stage II: everything but fc2 carried over
    stage2 = _module("vehiclenet-resnet50", stride=1, classes=3)
    report = stage2.load_previous_stage(out)
    assert report["new"] == ["net.classifier.bias", "net.classifier.weight"]
    assert torch.equal(stage2.net.bn.running_var, ckpt["state_dict"]["net.bn.running_var"])
    with pytest.raises(ConfigError, match=r"init_from: .*imported\.ckpt was built with backbone\.last_stride=1"):
        _module("vehiclenet-resnet50", stride=2, classes=3).load_previous_stage(out)


def test_command_line_bad_input_is_one_error_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, opts = _write(tmp_path, "vehiclenet-resnet50")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert VC.main("vehiclenet-resnet50", [str(truncated), str(tmp_path / "o.ckpt"), "--opts", str(opts)]) == 2
    err = capsys.readouterr().err
    assert f"{truncated}: not a readable torch checkpoint" in err and "Traceback" not in err
    assert VC.main("vehiclenet-densenet121", [str(src), str(tmp_path / "o.ckpt"), "--stride", "2",
                                              "--inputsize", "256"]) == 2
    assert f"{src}: not a vehiclenet-densenet121 checkpoint" in capsys.readouterr().err
    assert VC.main("vehiclenet-densenet121", [str(src), str(tmp_path / "o.ckpt"), "--opts", str(opts)]) == 2
    assert f"{opts} describes another model" in capsys.readouterr().err
    assert VC.main("vehiclenet-resnet50", [str(src), str(tmp_path / "o.ckpt")]) == 2
    assert "give --opts" in capsys.readouterr().err
    assert not (tmp_path / "o.ckpt").exists()


# ----------------------------------------------------------------------------- test-time pieces


def test_authors_multi_scale_is_sqrt_compounded_and_summed() -> None:
    """test_2020.py:119-123,213-216, written plainly: per flip, x <- interpolate(x, sqrt(s)) for each s != 1."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 40, 40)

    def extract(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"f": torch.stack([x.mean((1, 2, 3)), x.shape[-1] * x.std((1, 2, 3))], 1)}

    got = multi_scale_features(extract, images, [1.0, 0.9, 0.8], flip=True, mode="authors")["f"]
    ref = torch.zeros(2, 2)
    for view in (images, images.flip(3)):
        x = view
        for s in (1.0, math.sqrt(0.9), math.sqrt(0.8)):
            if s != 1:
                x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
            ref += extract(x)["f"]
    torch.testing.assert_close(got * 6, ref)
    sizes = []
    multi_scale_features(lambda x: sizes.append(x.shape[-1]) or {"f": x.mean((1, 2, 3))}, images, [1, 0.9, 0.8],
                         flip=False, mode="authors")
    assert sizes == [40, 37, 33]  # floor(40 sqrt .9) = 37, floor(37 sqrt .8) = 33: compounded, not from 40
    original = multi_scale_features(extract, images, [1.0, 0.9, 0.8], flip=True)["f"]
    assert not torch.allclose(original * 6, ref)
    with pytest.raises(ConfigError, match="scale_mode"):
        multi_scale_features(extract, images, [1.0, 0.9], mode="paper")


def test_authors_test_resize_is_pil_bicubic_at_1_1() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    tf = build_test_transform((256, 256), scale=1.1, interpolation="bicubic", mean=(0, 0, 0), std=(1, 1, 1))
    out = tf(img)
    assert out.shape == (3, 282, 282)
    ref = torch.from_numpy(np.asarray(img.resize((282, 282), Image.BICUBIC))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(out, ref)
    same = Image.fromarray(rng.integers(0, 256, (282, 282, 3), dtype=np.uint8))
    torch.testing.assert_close(tf(same), torch.from_numpy(np.asarray(same)).permute(2, 0, 1).float() / 255)


def test_authors_train_transform_pads_then_resized_crop() -> None:
    tf = build_train_transform((64, 64), pad=15, interpolation="bicubic", random_erasing=0.5,
                               resized_crop={"scale": [0.75, 1.0], "ratio": [0.75, 1.3333]})
    names = [type(t).__name__ for t in tf.transforms]
    assert names[:5] == ["RGB", "Resize", "Pad", "RandomResizedCrop", "RandomHorizontalFlip"]
    crop = tf.transforms[3]
    assert crop.scale == (0.75, 1.0) and crop.ratio == (0.75, 1.3333) and tf.transforms[2].padding == 15
    assert tf(Image.new("RGB", (50, 80))).shape == (3, 64, 64)
    with pytest.raises(ValueError, match="resized_crop"):
        build_train_transform((64, 64), resized_crop={"scale": [0.75, 1.0]})


def test_loss_warmup_factor_follows_the_authors() -> None:
    """train_2020.py: warm_up = 0.1, then += 0.9 / (round(images / batch) x warm epochs) before each step."""
    module = _module("vehiclenet-resnet50")
    module.loss_warmup_epochs = 5

    class DM:
        train_split = range(1000)
        batch_size = 48

    class Trainer:
        datamodule = DM()
        global_step = 0

    module._trainer = Trainer()  # type: ignore[assignment]
    per_epoch = round(1000 / 48)
    for step, want in ((0, 0.1 + 0.9 / (5 * per_epoch)), (5 * per_epoch - 1, 1.0), (10 * per_epoch, 1.0)):
        Trainer.global_step = step
        assert module.warmup_factor() == pytest.approx(min(1.0, want))


def test_datamodule_refuses_a_bad_test_transform_up_front() -> None:
    from vreid_lightning.data.datamodule import ReIDDataModule

    dm = ReIDDataModule(root="/nowhere", image_size=(256, 256), test_transform={"scale": 1.1, "interpolation": "bicubic"})
    assert dm.test_transform_options == {"scale": 1.1, "interpolation": "bicubic"}
    with pytest.raises(ConfigError, match=r"data\.test_transform=.*interpolation must be one of"):
        ReIDDataModule(root="/nowhere", test_transform={"interpolation": "lanczos"})
    with pytest.raises(ConfigError, match=r"data\.test_transform=.*'size'"):
        ReIDDataModule(root="/nowhere", test_transform={"size": [282, 282]})


def test_authors_key_names() -> None:
    """Legacy torchvision DenseNet names ('norm.1') and unknown keys."""
    assert VC.authors_key("vehiclenet-densenet121", "model.features.denseblock1.denselayer1.norm.1.weight") == \
        "net.backbone.features.denseblock1.denselayer1.norm1.weight"
    assert VC.authors_key("vehiclenet-resnet50", "classifier.add_block.1.running_mean") == "net.bn.running_mean"
    assert VC.authors_key("vehiclenet-resnet50", "new_dropout.weight") is None


def test_datamodule_refuses_a_bad_train_transform_up_front() -> None:
    from vreid_lightning.data.datamodule import ReIDDataModule

    with pytest.raises(ConfigError, match=r"data\.train_transform=.*autoaugment must be one of \['none', 'imagenet'\]"):
        ReIDDataModule(root="/nowhere", train_transform={"autoaugment": "cifar10"})


@pytest.mark.parametrize(("experiment", "stage1", "stage2"), [
    ("vehiclenet_cityflow_authors", "imagenet", "none"),   # pytorch/README.md:12 --autoaug; :22 fine-tune without
    ("vehiclenet_veri_authors", "none", "none"),           # the released VeRi model's name has no '+aug'
    ("vehiclenet_cityflow", "none", "none"),               # paper silent; the authors' flag is off by default
    ("vehiclenet_veri", "none", "none"),
    ("vehiclenet_vehicleid", "none", "none"),
])
def test_autoaugment_per_experiment_and_stage(tmp_path: Path, experiment: str, stage1: str, stage2: str) -> None:
    from conftest import compose
    from vreid_lightning.runner.stages import stage_config

    cfg = compose([f"+experiment={experiment}"], tmp_path)
    got = [stage_config(cfg, s).data.train_transform.get("autoaugment", "none") for s in ("stage1", "stage2")]
    assert got == [stage1, stage2]
