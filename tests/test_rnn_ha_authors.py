"""RNN-HA as its authors released it (tzzcl/RNN-HA): each switch changes what it should, the suite's network with
every switch set to their code equals a plain re-expression of their forward (written here from the code's
semantics, float64), and the importer lands every tensor of their state dict (key names and shapes are facts
of their file format) and refuses anything else with one error naming the file."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vreid_lightning.convert.authors_torch import AuthorsCheckpointError, read_state_dict
from vreid_lightning.convert.rnn_ha import build_suite_net, convert_state_dict, gru_rows_to_suite
from vreid_lightning.convert.rnn_ha import main as convert_main
from vreid_lightning.models.backbones import build_backbone
from vreid_lightning.models.rnn_ha import GRUStep, RNNHANet


class _Trunk(nn.Module):
    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.out_channels = c
        self.conv = nn.Conv2d(3, c, 3, stride=4, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def _net(**kw) -> RNNHANet:
    torch.manual_seed(0)
    return RNNHANet(_Trunk(), num_classes=5, num_model_classes=3, hidden_size=8, transformer_dims=[7], **kw).eval()


# ------------------------------------------------------------------ the switches, one at a time
def test_pool5_trunk_end_is_caffe_pool5_on_the_conv5_map():
    torch.manual_seed(0)
    conv5 = build_backbone("vgg_cnn_m_1024", width_mult=0.125, norm="bn").eval()
    pool5 = build_backbone("vgg_cnn_m_1024", width_mult=0.125, norm="bn", trunk_end="pool5").eval()
    pool5.load_state_dict(conv5.state_dict())  # no parameters of its own
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        m5, p5 = conv5(x), pool5(x)
    assert m5.shape[-2:] == (13, 13) and p5.shape[-2:] == (6, 6)  # main:21-28: 6x6 at 224
    # Caffe pool5: max 3x3 / stride 2 with ceil rounding; windows written out
    ref = torch.stack([torch.stack([m5[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].amax(dim=(2, 3)) for j in range(6)], -1)
                       for i in range(6)], -2)
    assert torch.equal(p5, ref)
    with pytest.raises(ValueError, match="trunk_end"):
        build_backbone("vgg_cnn_m_1024", trunk_end="pool4")


def test_repeat_x1_is_the_authors_routing():
    net, rep = _net(), _net(repeat_x1=True)
    rep.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = net(x), rep(x)
        f = net.backbone(x)
        x1 = f.mean(dim=(2, 3))
        o1 = net.gru(x1, torch.zeros(2, 8))
        x2, att = net.attention(f, o1)
        o2 = net.gru(x2, net.gru(x1, o1))  # step 2 starts from the state after [x1, x1]
    # the model-level classifier and the attention read step 1's output: unchanged by the switch
    assert torch.equal(b.o1, a.o1) and torch.equal(b.logits["model"], a.logits["model"])
    assert torch.equal(b.attention, a.attention) and torch.allclose(b.attention, att)
    assert torch.allclose(b.features["o2"], o2, atol=1e-6)
    assert not torch.allclose(b.features["o2"], a.features["o2"], atol=1e-3)
    with pytest.raises(ValueError, match="repeat_x1"):
        _net(hierarchy="fc", repeat_x1=True)


def test_two_gru_biases_equal_nn_gru_and_differ_from_one_only_by_b_hn():
    torch.manual_seed(3)
    ref = nn.GRU(4, 3).double()
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-0.8, 0.8)
    cell = GRUStep(4, 3, biases=2).double()
    with torch.no_grad():
        cell.x2h.weight.copy_(gru_rows_to_suite(ref.weight_ih_l0))
        cell.x2h.bias.copy_(gru_rows_to_suite(ref.bias_ih_l0))
        cell.h2h.weight.copy_(gru_rows_to_suite(ref.weight_hh_l0))
        cell.h2h.bias.copy_(gru_rows_to_suite(ref.bias_hh_l0))
    xs, h0 = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(1, 5, 3, dtype=torch.float64)
    out, _ = ref(xs, h0)
    h1 = cell(xs[0], h0[0])
    assert torch.allclose(h1, out[0], atol=1e-12) and torch.allclose(cell(xs[1], h1), out[1], atol=1e-12)
    # one bias per gate (Eqs. 1-4): b_hz, b_hr fold into the input biases, b_hn cannot
    one = GRUStep(4, 3, biases=1).double()
    b_hz, b_hr, b_hn = gru_rows_to_suite(ref.bias_hh_l0).chunk(3)
    with torch.no_grad():
        one.x2h.weight.copy_(cell.x2h.weight)
        one.h2h.weight.copy_(cell.h2h.weight)
        one.x2h.bias.copy_(cell.x2h.bias + torch.cat([b_hz, b_hr, torch.zeros_like(b_hn)]))
    assert not torch.allclose(one(xs[0], h0[0]), h1, atol=1e-3)
    with torch.no_grad():
        cell.h2h.bias[6:] = 0.0  # b_hn = 0: the two parametrisations agree
    assert torch.allclose(one(xs[0], h0[0]), cell(xs[0], h0[0]), atol=1e-12)
    assert "h2h.bias" not in dict(one.named_parameters()) and "h2h.bias" in dict(cell.named_parameters())
    with pytest.raises(ValueError, match="gru_biases"):
        GRUStep(4, 3, biases=3)


def test_input_without_mean_and_std_is_rgb_in_0_1():
    from PIL import Image

    from vreid_lightning.data.transforms import build_test_transform

    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = build_test_transform((224, 224), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(Image.fromarray(rgb))
    assert torch.allclose(x, torch.from_numpy(rgb).permute(2, 0, 1).double().div(255).float())  # ToTensor only


# ------------------------------------------------------------------ the authors' format (tzzcl/RNN-HA)
def _vgg_shapes(n_vin: int = 7, n_model: int = 3) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of ``Fusion_Net().state_dict()`` (main:30-56): vgg_m_1024_torch's conv layers at
    Sequential indices 0/4/8/10/12, nn.GRU(512, 1024), W1-W4."""
    convs = {0: (96, 3, 7, 7), 4: (256, 96, 5, 5), 8: (512, 256, 3, 3), 10: (512, 512, 3, 3), 12: (512, 512, 3, 3)}
    out: dict[str, tuple[int, ...]] = {}
    for i, shape in convs.items():
        out[f"vgg_m.{i}.weight"], out[f"vgg_m.{i}.bias"] = shape, shape[:1]
    out.update({"rnn.weight_ih_l0": (3072, 512), "rnn.weight_hh_l0": (3072, 1024), "rnn.bias_ih_l0": (3072,),
                "rnn.bias_hh_l0": (3072,), "W1.weight": (n_model, 1024), "W1.bias": (n_model,),
                "W2.weight": (n_vin, 1024), "W2.bias": (n_vin,), "W3.weight": (1024, 1024), "W3.bias": (1024,),
                "W4.weight": (512, 1024), "W4.bias": (512,)})
    return out


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = (2.0 / fan_in) ** 0.5 if len(shape) > 1 else 0.05
        out[k] = torch.randn(shape, generator=g) * scale
    return out


def _lrn(x: torch.Tensor, n: int = 5, alpha: float = 5e-4, beta: float = 0.75, k: float = 2.0) -> torch.Tensor:
    """Caffe's across-channel LRN (the authors' SpatialCrossMapLRN(5, 0.0005, 0.75, 2)): channels c-2..c+2."""
    sq = F.pad(x * x, (0, 0, 0, 0, n // 2, n // 2))
    window = sum(sq[:, i:i + x.shape[1]] for i in range(n))
    return x / (k + alpha / n * window) ** beta


def _authors_vgg_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fusion_Net.forward of main:57-87 re-expressed from the state dict, float64."""
    h = _lrn(F.relu(F.conv2d(x, sd["vgg_m.0.weight"], sd["vgg_m.0.bias"], stride=2)))
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    h = _lrn(F.relu(F.conv2d(h, sd["vgg_m.4.weight"], sd["vgg_m.4.bias"], stride=2, padding=1)))
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    for i in (8, 10, 12):
        h = F.relu(F.conv2d(h, sd[f"vgg_m.{i}.weight"], sd[f"vgg_m.{i}.bias"], padding=1))
    f = F.max_pool2d(h, 3, 2, ceil_mode=True)                     # vgg_m[14], pool5: 6x6
    x1 = f.mean(dim=(2, 3))                                      # first_gap, AvgPool 6x6
    gru = nn.GRU(512, 1024).double()
    gru.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
    out, hn = gru(torch.stack([x1, x1]), torch.zeros(1, x.shape[0], 1024, dtype=x.dtype))
    o_model = out[0]                                             # output[0] of the two-step [x1, x1]
    w = F.linear(F.relu(F.linear(o_model, sd["W3.weight"], sd["W3.bias"])), sd["W4.weight"], sd["W4.bias"])
    s = F.softplus((f * w[:, :, None, None]).sum(dim=1)) + 0.1   # Eqs. 6-7 with epsilon 0.1
    a = s / s.sum(dim=(1, 2), keepdim=True)
    x2 = (f * a[:, None]).mean(dim=(2, 3))                       # second_gap, AvgPool 6x6
    out2, _ = gru(x2[None], hn)
    o_vin = out2[0]
    return {"o_model": o_model, "o_vin": o_vin, "pred_model": F.linear(o_model, sd["W1.weight"], sd["W1.bias"]),
            "pred_vin": F.linear(o_vin, sd["W2.weight"], sd["W2.bias"]), "a": a}


def test_authors_switches_reproduce_the_authors_forward():
    sd = {k: v.double() for k, v in _random_state(_vgg_shapes()).items()}
    net = build_suite_net("rnn-ha-vgg", 7, 3).double().eval()
    net.load_state_dict(convert_state_dict("rnn-ha-vgg", sd))
    x = torch.rand(2, 3, 224, 224, dtype=torch.float64)          # RGB in [0, 1], as dataset.py:47-55 leaves it
    with torch.no_grad():
        ours, ref = net(x), _authors_vgg_forward(sd, x)
    assert ref["o_vin"].abs().mean() > 0.05                       # not a saturated / dead regime
    assert torch.allclose(ours.o1, ref["o_model"], atol=1e-10)
    assert torch.allclose(ours.features["o2"], ref["o_vin"], atol=1e-10)   # the test feature, o_vin
    assert torch.allclose(ours.logits["model"], ref["pred_model"], atol=1e-10)
    assert torch.allclose(ours.logits["vehicle"], ref["pred_vin"], atol=1e-10)
    assert torch.allclose(ours.attention, ref["a"], atol=1e-10)
    # each switch back to the paper's reading moves o_vin
    for change in ({"repeat_x1": False}, {"gru_biases": 1}):
        other = RNNHANet(build_backbone("vgg_cnn_m_1024", trunk_end="pool5"), 7, 3,
                         **{"hidden_size": 1024, "transformer_dims": [1024], "repeat_x1": True, "gru_biases": 2,
                            **change}).double().eval()
        other.load_state_dict(net.state_dict(), strict=False)
        with torch.no_grad():
            assert not torch.allclose(other(x[:1]).features["o2"], ref["o_vin"][:1], atol=1e-4), change


_VGG_LANDING = {"vgg_m.0": "backbone.conv1", "vgg_m.4": "backbone.conv2", "vgg_m.8": "backbone.conv3",
                "vgg_m.10": "backbone.conv4", "vgg_m.12": "backbone.conv5", "W1": "model_classifier",
                "W2": "vehicle_classifier", "W3": "attention.transformer.0", "W4": "attention.transformer.2"}
_GRU_LANDING = {"rnn.weight_ih_l0": "gru.x2h.weight", "rnn.bias_ih_l0": "gru.x2h.bias",
                "rnn.weight_hh_l0": "gru.h2h.weight", "rnn.bias_hh_l0": "gru.h2h.bias"}


def test_vgg_keys_land_one_by_one():
    sd = _random_state(_vgg_shapes())
    out = convert_state_dict("rnn-ha-vgg", sd)
    assert len(out) == len(sd) == 22
    for key, value in sd.items():
        if key in _GRU_LANDING:  # nn.GRU's (r, z, n) rows -> (z, r, n)
            h = value.shape[0] // 3
            got = out[_GRU_LANDING[key]]
            assert torch.equal(got[:h], value[h:2 * h]) and torch.equal(got[h:2 * h], value[:h])
            assert torch.equal(got[2 * h:], value[2 * h:])
        else:
            prefix, leaf = key.rsplit(".", 1)
            assert torch.equal(out[f"{_VGG_LANDING[prefix]}.{leaf}"], value), key


def _resnet_shapes() -> dict[str, tuple[int, ...]]:
    """``Fusion_Net().state_dict()`` of main_GRU_fusion_attention_resnet.py:69-95 under PyTorch 0.3.1: torchvision
    ResNet-50's children()[:-2] as ``resnet.{0,1,4,5,6,7}`` (no num_batches_tracked), nn.GRU(2048, 2048), W1-W4."""
    from torchvision.models import resnet50

    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    out = {}
    for k, v in resnet50(weights=None).state_dict().items():
        head, _, rest = k.partition(".")
        if head in names and not k.endswith("num_batches_tracked"):
            out[f"resnet.{names[head]}.{rest}"] = tuple(v.shape)
    out.update({"rnn.weight_ih_l0": (6144, 2048), "rnn.weight_hh_l0": (6144, 2048), "rnn.bias_ih_l0": (6144,),
                "rnn.bias_hh_l0": (6144,), "W1.weight": (3, 2048), "W1.bias": (3,), "W2.weight": (7, 2048),
                "W2.bias": (7,), "W3.weight": (2048, 2048), "W3.bias": (2048,), "W4.weight": (2048, 2048),
                "W4.bias": (2048,)})
    return out


def test_resnet_keys_land_one_by_one_and_batch_counters_are_filled():
    sd = _random_state(_resnet_shapes(), seed=1)
    out = convert_state_dict("rnn-ha-resnet50", sd)
    children = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    for key, value in sd.items():
        if key.startswith("resnet."):
            _, idx, rest = key.split(".", 2)
            assert torch.equal(out[f"backbone.{children[idx]}.{rest}"], value), key
        elif key in _GRU_LANDING:
            assert torch.equal(out[_GRU_LANDING[key]][2 * 2048:], value[2 * 2048:])
    counters = [k for k in out if k.endswith("num_batches_tracked")]
    assert len(counters) == 53 and all(int(out[k]) == 0 for k in counters)
    assert out["attention.transformer.2.weight"].shape == (2048, 2048)  # W4 2048 -> 2048 (resnet:94)


# ------------------------------------------------------------------ the file: legacy pickle, CUDA tags, errors
_CUDA_TAGS = {"on": False}


def _save_like_pytorch_0_3(obj, path: Path) -> None:
    """torch.save's legacy (non-zip) format with storages tagged 'cuda:0', as a model saved after .cuda() is."""
    if not getattr(_save_like_pytorch_0_3, "registered", False):
        torch.serialization.register_package(-50, lambda s: "cuda:0" if _CUDA_TAGS["on"] else None,
                                             lambda s, loc: None)
        _save_like_pytorch_0_3.registered = True
    _CUDA_TAGS["on"] = True
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    finally:
        _CUDA_TAGS["on"] = False


def test_legacy_cuda_tagged_dataparallel_file_converts_to_a_loadable_checkpoint(tmp_path: Path):
    from vreid_lightning.methods.rnn_ha import RNNHAModule

    sd = _random_state(_vgg_shapes())
    src = tmp_path / "model_epoch_19"
    _save_like_pytorch_0_3(OrderedDict((f"module.{k}", v) for k, v in sd.items()), src)
    assert b"cuda:0" in src.read_bytes() and not src.read_bytes().startswith(b"PK")  # legacy pickle, CUDA tags
    out = tmp_path / "out.ckpt"
    assert convert_main("rnn-ha-vgg", [str(src), str(out)]) == 0
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert torch.equal(ckpt["state_dict"]["net.backbone.conv3.weight"], sd["vgg_m.8.weight"])
    module = RNNHAModule(num_classes=7, attribute_classes={"type": 3},
                         backbone={"name": "vgg_cnn_m_1024", "trunk_end": "pool5"},
                         net={"_target_": "vreid_lightning.models.rnn_ha.RNNHANet", "hidden_size": 1024, "transformer_dims": [1024], "repeat_x1": True, "gru_biases": 2})
    module.load_state_dict(ckpt["state_dict"], strict=True)  # what train=false ckpt_path=OUT does


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.update({"W5.weight": torch.zeros(3, 1024)}), r"does not have: W5\.weight"),
    (lambda sd: sd.pop("W3.bias"), r"not in the file: attention\.transformer\.0\.bias"),
    (lambda sd: sd.update({"W4.weight": torch.zeros(256, 1024)}), r"W4\.weight \(256, 1024\) \(expected \(512, 1024\)"),
    (lambda sd: sd.update({"rnn.weight_hh_l0": torch.zeros(3072, 512)}), r"rnn\.weight_hh_l0"),
])
def test_bad_state_dict_is_one_error_naming_file_and_key(tmp_path: Path, edit, message: str):
    sd = _random_state(_vgg_shapes())
    edit(sd)
    src = tmp_path / "model_epoch_19"
    torch.save(sd, src)
    with pytest.raises(AuthorsCheckpointError, match=rf"{src}: not a RNN-HA rnn-ha-vgg checkpoint: .*{message}"):
        convert_state_dict("rnn-ha-vgg", read_state_dict(src), src)


def test_truncated_file_and_other_models_checkpoint_name_the_file(tmp_path: Path, capsys):
    sd = _random_state(_vgg_shapes())
    good = tmp_path / "model_epoch_19"
    _save_like_pytorch_0_3(sd, good)
    cut = tmp_path / "truncated"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AuthorsCheckpointError, match=rf"{cut}: not a readable torch checkpoint"):
        read_state_dict(cut)
    assert convert_main("rnn-ha-vgg", [str(cut), str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cut) in err[0] and not (tmp_path / "x.ckpt").exists()
    other = tmp_path / "net_last.pth"  # a VehicleNet (ft_net) state dict
    torch.save({"model.conv1.weight": torch.zeros(64, 3, 7, 7),
                "classifier.add_block.0.weight": torch.zeros(512, 2048)}, other)
    with pytest.raises(AuthorsCheckpointError, match=rf"{other}: not an RNN-HA \(rnn-ha-vgg\) state dict"):
        convert_state_dict("rnn-ha-vgg", read_state_dict(other), other)
    vgg_as_resnet = rf"{good}: not a RNN-HA rnn-ha-resnet50 checkpoint: .*vgg_m\.0\.bias"
    with pytest.raises(AuthorsCheckpointError, match=vgg_as_resnet):  # the VGG file as the ResNet format
        convert_state_dict("rnn-ha-resnet50", read_state_dict(good), good)


# ------------------------------------------------------------------ the data switches of the authors' experiments
def test_train_labelled_keeps_only_the_images_with_a_model_label(vehicleid_world: Path):
    from vreid_lightning.data.datamodule import ReIDDataModule
    from vreid_lightning.errors import ConfigError

    def dm(**kw):
        m = ReIDDataModule(dataset="vehicleid", root=str(vehicleid_world), attributes=["model"], num_workers=0, **kw)
        m.setup("fit")
        return m

    full, kept = dm(), dm(train_labelled=["model"])
    labels = np.asarray(full.train_split.attributes["model"])
    assert 0 < len(kept.train_split) == int((labels >= 0).sum()) < len(full.train_split)
    assert (np.asarray(kept.train_split.attributes["model"]) >= 0).all()
    with pytest.raises(ConfigError, match=r"data.train_labelled: 'make' is not an attribute"):
        dm(train_labelled=["make"])
    with pytest.raises(ConfigError, match=r"data.test_transform=\{'flip': 0.5\}: .*flip"):
        ReIDDataModule(dataset="vehicleid", root=str(vehicleid_world), test_transform={"flip": 0.5})


def test_param_init_switch_changes_only_the_init_of_w1_to_w4():
    torch.manual_seed(0)
    suite = RNNHANet(_Trunk(), 50, 30, hidden_size=400, transformer_dims=[300], param_init="suite")
    torch.manual_seed(0)
    authors = RNNHANet(_Trunk(), 50, 30, hidden_size=400, transformer_dims=[300], param_init="authors")
    assert abs(float(suite.vehicle_classifier.weight.std()) - 0.001) < 1e-4 and not suite.vehicle_classifier.bias.any()
    for layer in (authors.vehicle_classifier, authors.model_classifier, authors.attention.transformer[0]):
        fan_in = layer.in_features  # main:48-56 init.kaiming_normal: std sqrt(2 / fan_in); bias U(+-1/sqrt(fan_in))
        assert abs(float(layer.weight.std()) / (2.0 / fan_in) ** 0.5 - 1) < 0.05
        assert 0 < float(layer.bias.abs().max()) <= fan_in ** -0.5
    assert torch.equal(suite.gru.x2h.weight, authors.gru.x2h.weight)  # the GRU keeps torch's init in both
    with pytest.raises(ValueError, match="param_init"):
        RNNHANet(_Trunk(), 5, 3, hidden_size=8, transformer_dims=[7], param_init="xavier")
