"""Backbone registry: architectures, shapes, weight loading and its error messages."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from vreid_lightning.errors import ConfigError
from vreid_lightning.models.backbones import BACKBONES, build_backbone
from vreid_lightning.models.backbones.caffe import (
    IMAGENET_RGB_MEAN,
    IMAGENET_RGB_STD,
    caffe_blobs_to_state_dict,
    read_blobproto,
    read_caffemodel,
)
from vreid_lightning.models.backbones.vgg16 import VGG16
from vreid_lightning.models.backbones.weights import load_into

NAMES = {"vgg_cnn_m", "vgg_cnn_m_1024", "vgg16", "resnet50", "densenet121", "se_resnext101_32x4d", "senet154"}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _small_vgg_cnn_m(seed: int, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone("vgg_cnn_m", width_mult=0.125, **kwargs).eval()


# ----------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(BACKBONES) == NAMES


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="Unknown backbone 'vgg19'") as info:
        build_backbone("vgg19")
    for name in NAMES:
        assert name in str(info.value)


# ----------------------------------------------------------------------------- VGG_CNN_M


def _reference_vgg_cnn_m_params(fc7: int) -> int:
    """Chatfield et al. 2014 layer sizes, counted by hand (weights + biases, no fc8)."""
    convs = [(3, 96, 7), (96, 256, 5), (256, 512, 3), (512, 512, 3), (512, 512, 3)]
    n = sum(cin * cout * k * k + cout for cin, cout, k in convs)
    return n + (512 * 6 * 6 * 4096 + 4096) + (4096 * fc7 + fc7)


def test_vgg_cnn_m_1024_parameter_count_matches_scan_table4() -> None:
    with torch.device("meta"):
        model = build_backbone("vgg_cnn_m_1024")
    n = _count(model)
    assert abs(n - 86.2e6) <= 0.1e6  # SCAN, Table 4: VGG_M_1024 has 86.2M parameters
    assert n == _reference_vgg_cnn_m_params(1024)
    with torch.device("meta"):
        assert _count(build_backbone("vgg_cnn_m")) == _reference_vgg_cnn_m_params(4096)


@pytest.mark.parametrize(("name", "head_dim"), [("vgg_cnn_m", 4096), ("vgg_cnn_m_1024", 1024)])
def test_vgg_cnn_m_maps_at_224(name: str, head_dim: int) -> None:
    model = build_backbone(name).eval()
    assert {"conv1", "conv2", "conv3", "conv4", "conv5"} <= {n for n, _ in model.named_children()}
    with torch.no_grad():
        m = model(torch.randn(2, 3, 224, 224))
        assert m.shape == (2, 512, 13, 13)  # RAM Sec. 3.1: M is 13x13x512
        assert model.head.pool5(m).shape == (2, 512, 6, 6)
        assert model.head(m).shape == (2, head_dim)
    assert (model.out_channels, model.head_dim, model.head_pool_size) == (512, head_dim, 6)
    assert isinstance(model.head.fc6, nn.Linear) and model.head.fc7.out_features == head_dim


def test_pool5_equals_caffe_ceil_max_pool() -> None:
    x = torch.randn(2, 8, 13, 13)
    caffe_pool5 = nn.MaxPool2d(3, 2, ceil_mode=True)
    assert torch.equal(build_backbone("vgg_cnn_m", width_mult=0.125).head.pool5(x), caffe_pool5(x))
    x = torch.randn(2, 8, 14, 14)
    with torch.device("meta"):
        vgg_pool5 = VGG16().head.pool5
    assert torch.equal(vgg_pool5(x), nn.MaxPool2d(2, 2)(x))


def test_lrn_matches_caffe_formula() -> None:
    x = torch.randn(2, 11, 4, 4, dtype=torch.float64) * 30
    size, alpha, beta, k = 5, 5e-4, 0.75, 2.0
    sq = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, size // 2, size // 2))
    window = torch.stack([sq[:, c : c + size].sum(1) for c in range(x.shape[1])], 1)
    reference = x / (k + alpha / size * window) ** beta  # Caffe LRNLayer, ACROSS_CHANNELS
    lrn = build_backbone("vgg_cnn_m", width_mult=0.125).norm1
    torch.testing.assert_close(lrn(x), reference)


def test_width_mult_and_fc_dim() -> None:
    model = build_backbone("vgg_cnn_m_1024", width_mult=0.25).eval()
    assert (model.out_channels, model.head_dim, model.head.fc6.out_features) == (128, 256, 1024)
    model = build_backbone("vgg_cnn_m", width_mult=0.25, fc_dim=64, fc6_dim=32).eval()
    with torch.no_grad():
        m = model(torch.randn(1, 3, 112, 112))
        assert m.shape == (1, 128, 6, 6)
        assert model.head(m).shape == (1, 64)
    assert model.head.fc6.out_features == 32
    with pytest.raises(ValueError, match="width_mult"):
        build_backbone("vgg_cnn_m", width_mult=0)


# ----------------------------------------------------------------------------- library backbones


@pytest.mark.parametrize(
    ("name", "channels", "size", "head_dim"),
    [("vgg16", 512, 4, 4096), ("resnet50", 2048, 2, None), ("densenet121", 1024, 2, None)],
)
def test_torchvision_backbone_shapes(name: str, channels: int, size: int, head_dim: int | None) -> None:
    model = build_backbone(name).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
        assert y.shape == (1, channels, size, size)
        assert model.out_channels == channels and model.head_dim == head_dim
        if head_dim is None:
            assert model.head is None
        else:
            assert model.head(y).shape == (1, head_dim) and model.head_pool_size == 7
    if model.head is None:  # feature extractor only: the ImageNet classifier is gone
        assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_resnet50_last_stride_one_doubles_map() -> None:
    x = torch.randn(1, 3, 64, 64)
    model = build_backbone("resnet50", last_stride=1).eval()
    block = model.layer4[0]
    assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    with torch.no_grad():
        assert model(x).shape == (1, 2048, 4, 4)
        assert build_backbone("resnet50").eval()(x).shape == (1, 2048, 2, 2)
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("resnet50", last_stride=3)


def test_densenet121_last_stride_one_is_the_authors_transition3_pool() -> None:
    """VehicleNet authors' stride 1 for DenseNet: transition3's 2x2 average pool slides by 1 (H/16 - 1)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    model = build_backbone("densenet121", last_stride=1).eval()
    assert model.features.transition3.pool.stride == 1
    with torch.no_grad():
        y = model(x)
        f = model.features
        h = x
        for name, layer in f.named_children():  # the reference: the same layers with a plain stride-1 pool
            if name == "transition3":
                h = F.avg_pool2d(layer.conv(layer.relu(layer.norm(h))), kernel_size=2, stride=1)
            else:
                h = layer(h)
    assert y.shape == (1, 1024, 3, 3)
    torch.testing.assert_close(y, F.relu(h))
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("densenet121", last_stride=4)


def test_densenet121_final_relu_switch() -> None:
    """final_relu=false returns norm5 itself (the authors pool it without ReLU); true: torchvision's ReLU."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    plain = build_backbone("densenet121", final_relu=False).eval()
    relu = build_backbone("densenet121").eval()
    relu.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(x), relu(x)
    assert (a < 0).any()
    torch.testing.assert_close(b, F.relu(a))


@pytest.mark.parametrize("implementation", ["timm", "cadene"])
def test_se_resnext_last_stride(implementation: str) -> None:
    x = torch.randn(1, 3, 64, 64)
    one = build_backbone("se_resnext101_32x4d", implementation=implementation, last_stride=1).eval()
    block = one.model.layer4[0]
    assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    with torch.no_grad():
        assert one(x).shape == (1, 2048, 4, 4)
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("se_resnext101_32x4d", implementation=implementation, last_stride=3)


def test_se_resnext_cadene_stem_and_keys() -> None:
    """implementation=cadene: Cadene's stem (MaxPool2d(3, 2, ceil_mode=True), no padding) and key names."""
    torch.manual_seed(0)
    cad = build_backbone("se_resnext101_32x4d", implementation="cadene").eval()
    keys = set(cad.state_dict())
    assert {"model.layer0.conv1.weight", "model.layer0.bn1.running_var", "model.layer1.0.se_module.fc1.weight",
            "model.layer4.2.se_module.fc2.bias", "model.layer4.0.downsample.1.weight"} <= keys
    assert not any(k.startswith("model.last_linear") for k in keys)
    x = torch.randn(1, 3, 50, 50)  # 25 after conv1: ceil-mode pooling gives 12, padded floor pooling 13
    with torch.no_grad():
        stem = cad.model.layer0(x)
        pooled = cad.model.pool0(stem)
        torch.testing.assert_close(pooled, F.max_pool2d(stem, 3, 2, padding=0, ceil_mode=True))
        assert pooled.shape[-1] == 12
        timm_stem = build_backbone("se_resnext101_32x4d").model
        assert timm_stem.maxpool(stem).shape[-1] == 13  # timm's stem pads: another map
    with pytest.raises(ConfigError, match="backbone.implementation"):
        build_backbone("se_resnext101_32x4d", implementation="caffe")


@pytest.fixture(scope="module")
def timm_backbones() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {n: build_backbone(n, pretrained=False).eval() for n in ("se_resnext101_32x4d", "senet154")}


@pytest.mark.parametrize("name", ["se_resnext101_32x4d", "senet154"])
def test_timm_backbone_shapes(timm_backbones: dict[str, nn.Module], name: str) -> None:
    model = timm_backbones[name]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2048, 1, 1)
    assert model.out_channels == 2048 and model.head is None and model.head_dim is None
    native = model.model.state_dict()
    converted = model.convert_state_dict({**native, "fc.weight": torch.zeros(1000, 2048)})
    assert converted.keys() == model.state_dict().keys()  # timm-native checkpoints load


# ----------------------------------------------------------------------------- weights files


@pytest.mark.parametrize("layout", ["plain", "nested_module"])
def test_weights_round_trip(tmp_path: Path, layout: str) -> None:
    source = _small_vgg_cnn_m(seed=1)
    state = source.state_dict()
    if layout == "nested_module":
        state = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    loaded = _small_vgg_cnn_m(seed=2, weights=str(path))
    fresh = _small_vgg_cnn_m(seed=2)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert torch.equal(loaded.head(loaded(x)), source.head(source(x)))
        assert not torch.equal(fresh(x), source(x))


def test_weights_take_precedence_over_pretrained(tmp_path: Path) -> None:
    source = _small_vgg_cnn_m(seed=1)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = _small_vgg_cnn_m(seed=2, pretrained=True, weights=tmp_path / "w.pt")
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)


def test_mismatched_state_dict_names_keys(tmp_path: Path) -> None:
    state = _small_vgg_cnn_m(seed=1).state_dict()
    state["conv3_renamed.weight"] = state.pop("conv3.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="missing keys: conv3.weight") as info:
        _small_vgg_cnn_m(seed=2, weights=tmp_path / "bad.pth")
    assert "unexpected keys: conv3_renamed.weight" in str(info.value)
    with pytest.warns(UserWarning, match="conv3.weight"):
        loose = _small_vgg_cnn_m(seed=2, weights=tmp_path / "bad.pth", strict=False)
    assert torch.equal(loose.conv4.weight, state["conv4.weight"])

    torch.save(_small_vgg_cnn_m(seed=1).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(RuntimeError, match=r"size mismatch for conv1.weight: file \(12, 3, 7, 7\)"):
        build_backbone("vgg_cnn_m", width_mult=0.25, weights=tmp_path / "narrow.pth")


def test_missing_weights_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "vgg_cnn_m.pth"
    with pytest.raises(FileNotFoundError, match=str(path)):
        build_backbone("vgg_cnn_m", width_mult=0.125, weights=path)


def test_weights_file_without_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match=r"x\.pth holds no state dict.*epoch, lr"):
        build_backbone("vgg_cnn_m", width_mult=0.125, weights=tmp_path / "x.pth")


# ----------------------------------------------------------------------------- library weights


@pytest.mark.parametrize("name", ["vgg_cnn_m", "vgg_cnn_m_1024"])
def test_no_library_weights_for_vgg_cnn_m(name: str) -> None:
    with pytest.raises(RuntimeError, match=f"'{name}' has no library ImageNet weights.*docs/weights.md"):
        build_backbone(name, pretrained=True)


def test_resnet50_pretrained_without_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, **kwargs: object) -> dict:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as info:
        build_backbone("resnet50", pretrained=True)
    message = str(info.value)
    for part in ("'resnet50'", "resnet50-0676ba61.pth", "backbone.weights=PATH", "pretrained=false", "URLError"):
        assert part in message


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_pretrained_loads_library_checkpoint(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A torchvision-format checkpoint (classifier, legacy DenseNet keys) loads into the backbone."""
    reference = getattr(torchvision.models, name)(weights=None).eval()
    # Like the published files (pre-2018): no BatchNorm num_batches_tracked buffers.
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    if name == "densenet121":  # the published file still uses 'norm.1'-style names
        state = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()}
        assert any(".norm.1." in k for k in state)
    urls: list[str] = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: urls.append(url) or dict(state))
    model = build_backbone(name, pretrained=True).eval()
    assert urls and urls[0].startswith("https://download.pytorch.org/models/")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        if name == "resnet50":
            expected = nn.Sequential(*list(reference.children())[:-2])(x)
        else:
            expected = torch.relu(reference.features(x))
        torch.testing.assert_close(model(x), expected)


def test_vgg16_converts_torchvision_checkpoint() -> None:
    with torch.device("meta"):
        reference = torchvision.models.vgg16(weights=None).state_dict()
        model = VGG16()
    converted = model.convert_state_dict(reference)
    own = model.state_dict()
    assert converted.keys() == own.keys()
    assert all(converted[k].shape == own[k].shape for k in own)
    assert converted["head.fc6.weight"].shape == (4096, 512 * 7 * 7)


def test_timm_pretrained_without_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as builder

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    with pytest.raises(RuntimeError, match="'se_resnext101_32x4d'.*timm/seresnext101_32x4d.*backbone.weights=PATH"):
        build_backbone("se_resnext101_32x4d", pretrained=True)


# ----------------------------------------------------------------------------- Caffe conversion


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited field (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob_new(a: np.ndarray) -> bytes:  # BlobProto with a BlobShape (current Caffe)
    dims = b"".join(_varint(d) for d in a.shape)
    return _field(7, _field(1, dims)) + _field(5, a.astype("<f4").tobytes())


def _blob_v1(a: np.ndarray) -> bytes:  # BlobProto with num/channels/height/width (2014 Caffe)
    shape = (1,) * (4 - a.ndim) + a.shape
    legacy = b"".join(_varint(f << 3) + _varint(d) for f, d in zip((1, 2, 3, 4), shape))
    return legacy + _field(5, a.astype("<f4").tobytes())


def _write_caffemodel(path: Path, params: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A NetParameter mixing V1 'layers' (field 2) and current 'layer' (field 100) messages."""
    data = _field(1, b"VGG_CNN_M_1024") + _field(2, _field(4, b"relu1") + _varint(5 << 3) + _varint(18))
    for i, (name, (w, b)) in enumerate(params.items()):
        if i % 2:
            data += _field(100, _field(1, name.encode()) + _field(2, b"Convolution") + _field(7, _blob_new(w)) + _field(7, _blob_new(b)))
        else:
            data += _field(2, _field(4, name.encode()) + _varint(5 << 3) + _varint(4) + _field(6, _blob_v1(w)) + _field(6, _blob_v1(b)))
    path.write_bytes(data)


def _caffe_params(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    params = {}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(model, name, None) or getattr(model.head, name, None) or nn.Linear(model.head_dim, 10)
        scale = 0.01 if name == "conv1" else 0.1
        params[name] = (rng.normal(0, scale, layer.weight.shape).astype(np.float32),
                        rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    return params


def test_read_caffemodel_and_convert(tmp_path: Path) -> None:
    model = build_backbone("vgg_cnn_m_1024", width_mult=0.125).eval()
    params = _caffe_params(model)
    _write_caffemodel(tmp_path / "m.caffemodel", params)
    blobs = read_caffemodel(tmp_path / "m.caffemodel")
    assert set(blobs) == set(params)  # relu1 has no blobs
    for name, (w, b) in params.items():
        np.testing.assert_array_equal(blobs[name][0].reshape(w.shape), w)
        np.testing.assert_array_equal(blobs[name][1].reshape(b.shape), b)

    mean_bgr = (104.0, 117.0, 123.0)
    folded = build_backbone("vgg_cnn_m_1024", width_mult=0.125).eval()
    load_into(folded, caffe_blobs_to_state_dict(blobs, mean_bgr=mean_bgr))
    load_into(model, caffe_blobs_to_state_dict(blobs, fold_preprocessing=False))
    assert torch.equal(model.head.fc6.weight, torch.from_numpy(params["fc6"][0]))

    x = torch.randn(2, 3, 96, 96)  # torchvision-normalised RGB
    mean, std = torch.tensor(IMAGENET_RGB_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_RGB_STD).view(1, 3, 1, 1)
    x_caffe = (255 * (x * std + mean)).flip(1) - torch.tensor(mean_bgr).view(1, 3, 1, 1)  # BGR, 0-255, mean-free
    with torch.no_grad():
        torch.testing.assert_close(folded.conv1(x), model.conv1(x_caffe), rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(folded(x), model(x_caffe), rtol=1e-4, atol=1e-3)


def test_read_blobproto_mean_and_errors(tmp_path: Path) -> None:
    mean = np.arange(3 * 4 * 4, dtype=np.float32).reshape(1, 3, 4, 4)
    (tmp_path / "mean.binaryproto").write_bytes(_blob_v1(mean))
    np.testing.assert_array_equal(read_blobproto(tmp_path / "mean.binaryproto"), mean)
    with pytest.raises(FileNotFoundError, match="absent.caffemodel"):
        read_caffemodel(tmp_path / "absent.caffemodel")
    with pytest.raises(KeyError, match=r"lack layers \['fc7'\]"):
        caffe_blobs_to_state_dict({k: v for k, v in _caffe_params(_small_vgg_cnn_m(0)).items() if k != "fc7"})


def test_vgg_cnn_m_bn_variant_replaces_lrn_with_batchnorm():
    import torch.nn as nn

    lrn = build_backbone("vgg_cnn_m", width_mult=0.125)
    bn = build_backbone("vgg_cnn_m", width_mult=0.125, norm="bn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in lrn.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in bn.modules())
    x = torch.randn(2, 3, 96, 96)
    assert bn(x).shape == lrn(x).shape
    with pytest.raises(ValueError, match="backbone.norm"):
        build_backbone("vgg_cnn_m", norm="gn")
