"""The ram-caffe importer on caffemodels written here from layer names and shapes (facts of the format).

A ``.caffemodel`` is a binary NetParameter: ``name`` (1) and V2 ``layer`` entries (100), each a
LayerParameter with ``name`` (1), ``type`` (2), ``blobs`` (7); a BlobProto holds packed float ``data`` (5)
and a ``shape`` (7) of packed int64 ``dim`` (1). Caffe stores Convolution blobs as (out, in, kh, kw) + bias,
InnerProduct as (out, in) + bias with ``in`` the C,H,W-flattened input, BatchNorm as (mean * sf, var * sf,
sf), Scale as (gamma, beta). The layer names are those of the authors' train_RAM_finetune.prototxt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vreid_lightning.convert.ram_caffe import RAM_LAYERS, convert, ram_caffe_state_dict
from vreid_lightning.errors import ConfigError

# a reduced authors' network: 1/16 of VGG_CNN_M's widths, small region and attribute FCs
TINY = ["backbone.width_mult=0.0625", "model.net.region_fc_dims=[16,16]", "model.net.attr_dim=8"]
C = (6, 16, 32)  # conv1, conv2, conv3-5 channels at width 1/16
FC6, FC7, REG, ATT, IDS, COLOURS, TYPES = 256, 256, 16, 8, 5, 10, 9
SF = 999.982  # a BatchNorm scale factor as Caffe leaves it after training


def tiny_shapes(ids: int = IDS) -> dict[str, list[tuple[int, ...]]]:
    """Blob shapes of every learnable layer of the reduced authors' net (pool5: 6x6; part rows 3/4/3)."""
    c1, c2, c3 = C
    IDS = ids  # noqa: N806
    shapes = {
        "conv1": [(c1, 3, 7, 7), (c1,)], "conv2": [(c2, c1, 5, 5), (c2,)], "conv3": [(c3, c2, 3, 3), (c3,)],
        "conv4": [(c3, c3, 3, 3), (c3,)], "conv5": [(c3, c3, 3, 3), (c3,)],
        "fc6": [(FC6, c3 * 36), (FC6,)], "fc7": [(FC7, FC6), (FC7,)], "fc8-id": [(IDS, FC7), (IDS,)],
        "conv5-bn": [(c3,), (c3,), (1,)], "conv5-sc": [(c3,), (c3,)],
        "fc6-bn": [(FC6, c3 * 36), (FC6,)], "fc7-bn": [(FC7, FC6), (FC7,)], "fc8-id-bn": [(IDS, FC7), (IDS,)],
        "id-parts": [(IDS, 3 * REG), (IDS,)], "att-branch-fc": [(ATT, FC6), (ATT,)],
        "mod-cls": [(TYPES, ATT), (TYPES,)], "col-cls": [(COLOURS, ATT), (COLOURS,)],
    }
    for n, rows in (("1", 3), ("2", 4), ("3", 3)):
        shapes[f"fc-part-{n}"] = [(REG, c3 * rows * 6), (REG,)]
        shapes[f"fc-fc-part-{n}"] = [(REG, REG), (REG,)]
        shapes[f"id-part-{n}"] = [(IDS, REG), (IDS,)]
    return shapes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:  # length-delimited (wire type 2)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def write_caffemodel(path, layers: dict[str, list[np.ndarray]], extra_types: dict[str, str] | None = None) -> None:
    """A V2 NetParameter with one ``layer`` per entry (plus blob-less layers, as a real snapshot has)."""
    body = _field(1, b"VGG_CNN_M")
    for name, typ in (extra_types or {}).items():
        body += _field(100, _field(1, name.encode()) + _field(2, typ.encode()))
    for name, blobs in layers.items():
        msg = _field(1, name.encode()) + _field(2, b"InnerProduct")
        for a in blobs:
            a = np.ascontiguousarray(a, dtype="<f4")
            shape = _field(1, b"".join(_varint(d) for d in a.shape))
            msg += _field(7, _field(5, a.tobytes()) + _field(7, shape))
        body += _field(100, msg)
    path.write_bytes(body)


def tiny_blobs(seed: int = 0, ids: int = IDS) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    blobs = {n: [rng.standard_normal(s).astype(np.float32) * 0.1 for s in shp] for n, shp in tiny_shapes(ids).items()}
    c3 = C[2]
    blobs["conv5-bn"] = [rng.standard_normal(c3).astype(np.float32) * SF,
                         (rng.random(c3) + 0.5).astype(np.float32) * SF,
                         np.array([SF], np.float32)]
    return blobs


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("ramcaffe")
    blobs = tiny_blobs()
    write_caffemodel(d / "tiny.caffemodel", blobs, {"data": "CarcontImageData", "relu1": "ReLU"})
    info = convert(d / "tiny.caffemodel", d / "tiny.ckpt", num_classes=IDS, overrides=TINY)
    return blobs, torch.load(d / "tiny.ckpt", map_location="cpu", weights_only=False), info, d


def test_every_blob_lands_where_it_should(converted):
    blobs, ckpt, info, _ = converted
    sd = ckpt["state_dict"]
    assert info["layers"] == 26 == len(RAM_LAYERS)
    expect = {  # written out by hand, layer by layer
        "conv1": "backbone.conv1", "conv5": "backbone.conv5", "fc6": "conv.fc1.fc6", "fc7": "conv.fc2.fc7",
        "fc8-id": "conv.classifier", "fc6-bn": "bn.fc1.fc6", "fc7-bn": "bn.fc2.fc7", "fc8-id-bn": "bn.classifier",
        "fc-part-1": "region.fc.t.0.0", "fc-part-2": "region.fc.m.0.0", "fc-part-3": "region.fc.b.0.0",
        "fc-fc-part-1": "region.fc.t.1.0", "fc-fc-part-2": "region.fc.m.1.0", "fc-fc-part-3": "region.fc.b.1.0",
        "id-part-1": "region.classifier.t", "id-part-3": "region.classifier.b", "id-parts": "region.parts",
        "att-branch-fc": "attr.fc.0", "col-cls": "attr.classifier.attr_colour", "mod-cls": "attr.classifier.attr_type",
    }
    for layer, key in expect.items():
        w, b = blobs[layer]
        torch.testing.assert_close(sd[f"net.{key}.weight"], torch.from_numpy(w), rtol=0, atol=0)
        torch.testing.assert_close(sd[f"net.{key}.bias"], torch.from_numpy(b), rtol=0, atol=0)
    mean, var, sf = blobs["conv5-bn"]
    torch.testing.assert_close(sd["net.bn.norm.running_mean"], torch.from_numpy(mean / sf), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sd["net.bn.norm.running_var"], torch.from_numpy(var / sf), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sd["net.bn.norm.weight"], torch.from_numpy(blobs["conv5-sc"][0]), rtol=0, atol=0)
    torch.testing.assert_close(sd["net.bn.norm.bias"], torch.from_numpy(blobs["conv5-sc"][1]), rtol=0, atol=0)
    # every tensor of the file consumed once, every tensor of the network filled
    # (BatchNorm's scale-factor blob is consumed by the division; its num_batches_tracked has no blob)
    assert len(sd) == sum(len(v) for v in blobs.values()) - 1 + 1
    assert info["num_classes"] == IDS and info["colour"] == COLOURS and info["type"] == TYPES


def test_converted_network_computes_the_authors_regions(converted):
    from vreid_lightning.convert.ram_caffe import build_authors_net

    blobs, ckpt, _, _ = converted
    net = build_authors_net("ram_veri_authors", IDS, {"colour": COLOURS, "type": TYPES}, TINY)
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items()})
    net.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 50
    out = net(x)
    pool5 = torch.nn.functional.max_pool2d(net.feature_map(x), 3, 2, ceil_mode=True)  # Caffe pool5 on 13x13
    assert pool5.shape[2:] == (6, 6)
    w1, b1 = (torch.from_numpy(a) for a in blobs["fc-part-2"])
    w2, b2 = (torch.from_numpy(a) for a in blobs["fc-fc-part-2"])
    ref = torch.relu(torch.relu(pool5[:, :, 1:5].flatten(1) @ w1.T + b1) @ w2.T + b2)  # part-2 = pool5 rows 1-4
    torch.testing.assert_close(out.features["f_rm"], ref, rtol=1e-4, atol=1e-5)
    # BN branch: Caffe BatchNorm (stored / sf) + Scale on the pre-ReLU conv5, then ReLU
    mean, var, sf = (torch.from_numpy(a) for a in blobs["conv5-bn"])
    g, beta = (torch.from_numpy(a) for a in blobs["conv5-sc"])
    pre = net.backbone.forward_pre_relu(x)
    bn = (pre - (mean / sf)[:, None, None]) / torch.sqrt((var / sf)[:, None, None] + 1e-5) * g[:, None, None] \
        + beta[:, None, None]
    torch.testing.assert_close(net.bn_feature_map(x), torch.relu(bn), rtol=1e-4, atol=1e-4)


def test_converted_checkpoint_is_tested_by_the_cli(tmp_path):
    """``+experiment=ram_veri_authors train=false ckpt_path=OUT`` tests the file: the authors' 11776-d feature
    layout (here reduced: fc7, fc7-bn, three region features, att-branch-fc) in features.npz."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from vreid_lightning.data.datasets import load_dataset
    from vreid_lightning.synth import generate

    world = tmp_path / "world"  # enough identities for VeRi's 10 colours and 9 types among the training ids
    generate("veri", world, ids=200, seed=0, image_size=48, images_per_id=2, workers=0, progress=False,
             image_format="png", square=True)
    train = load_dataset("veri", world).train
    assert [np.unique(train.attributes[a][train.attributes[a] >= 0]).size for a in ("colour", "type")] == [10, 9]
    ids = int(np.unique(train.pids).size)
    write_caffemodel(tmp_path / "m.caffemodel", tiny_blobs(ids=ids))
    convert(tmp_path / "m.caffemodel", tmp_path / "m.ckpt", overrides=TINY)
    cmd = [sys.executable, "-m", "vreid_lightning", "+experiment=ram_veri_authors", f"data.root={world}",
           "train=false", f"ckpt_path={tmp_path / 'm.ckpt'}", "trainer=cpu", "data.num_workers=0",
           "data.image_size=[48,48]", "model.evaluation.feature_study=false",
           f"paths.log_dir={tmp_path / 'runs'}", "trainer.enable_progress_bar=false", *TINY]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    npz = list((tmp_path / "runs").rglob("features.npz"))
    assert len(npz) == 1 and npz[0].parent.name == "ram_finetune"  # the last stage only
    with np.load(npz[0]) as z:
        assert z["query_feats"].shape[1] == FC7 + FC7 + 3 * REG + ATT


def test_another_net_is_one_error_naming_file_and_layers(tmp_path):
    rng = np.random.default_rng(0)
    vgg = {n: [rng.standard_normal(s).astype(np.float32) for s in shp] for n, shp in tiny_shapes().items()
           if n.startswith(("conv", "fc6", "fc7")) and "-" not in n}
    vgg["fc8"] = [np.zeros((10, FC7), np.float32), np.zeros(10, np.float32)]  # the ImageNet classifier
    path = tmp_path / "VGG_CNN_M.caffemodel"
    write_caffemodel(path, vgg)
    with pytest.raises(ConfigError) as e:
        convert(path, tmp_path / "out.ckpt", overrides=TINY)
    msg = str(e.value)
    assert str(path) in msg and "['fc8']" in msg and "fc8-id" in msg and "conv5-bn" in msg
    assert not (tmp_path / "out.ckpt").exists()


def test_truncated_file_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, tiny_blobs())
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(ConfigError, match=r"cut\.caffemodel.*(truncated|not a readable)"):
        convert(cut, tmp_path / "out.ckpt", overrides=TINY)
    with pytest.raises(ConfigError, match="missing.caffemodel"):
        convert(tmp_path / "missing.caffemodel", tmp_path / "out.ckpt", overrides=TINY)


def test_shape_mismatch_and_class_count_errors(tmp_path):
    blobs = tiny_blobs()
    blobs["fc-fc-part-2"][0] = np.zeros((REG, REG + 1), np.float32)
    path = tmp_path / "bad.caffemodel"
    write_caffemodel(path, blobs)
    with pytest.raises(ConfigError, match=r"bad\.caffemodel.*region\.fc\.m\.1\.0\.weight"):
        convert(path, tmp_path / "out.ckpt", overrides=TINY)
    blobs = tiny_blobs()
    blobs["id-parts"] = [np.zeros((IDS + 1, 3 * REG), np.float32), np.zeros(IDS + 1, np.float32)]
    with pytest.raises(ConfigError, match="disagree"):
        ram_caffe_state_dict(blobs, "x.caffemodel")
    write_caffemodel(path, tiny_blobs())
    with pytest.raises(ConfigError, match="--num-classes says 7"):
        convert(path, tmp_path / "out.ckpt", num_classes=7, overrides=TINY)


def test_cli_exit_codes(tmp_path, capsys):
    from vreid_lightning.convert.__main__ import main

    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, tiny_blobs())
    assert main(["ram-caffe", str(path), str(tmp_path / "a.ckpt"), "--num-classes", str(IDS),
                 *[x for o in TINY for x in ("--set", o)]]) == 0
    assert "26 layers" in capsys.readouterr().out
    path.write_bytes(b"\x0a\x05VGG")  # a name field cut short
    assert main(["ram-caffe", str(path), str(tmp_path / "b.ckpt")]) == 2
    assert "tiny.caffemodel" in capsys.readouterr().err
