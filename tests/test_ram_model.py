"""RAM network, loss, Table 1 feature study and Fig. 3 response maps (tiny stand-in backbone)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vreid_lightning.losses import CrossEntropyLoss, RAMLoss, cross_entropy
from vreid_lightning.models.ram import (
    STAGES,
    TABLE1_COMBINATIONS,
    RAMNet,
    combine_features,
    load_previous_stage,
    region_bounds,
)
from vreid_lightning.viz.response_maps import branch_response_maps, response_map, save_response_grid

NUM_CLASSES = 7
ATTRS = {"colour": 4, "type": 3}
HEAD_FC6, HEAD_FC7 = 32, 16
REGION_DIM, ATTR_DIM = 12, 10


class TinyBackbone(nn.Module):
    """Follows the backbone contract: 3x26x26 -> M (B, 8, 13, 13), optional fake VGG head."""

    def __init__(self, channels: int = 8, vgg_head: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
        self.out_channels = channels
        if vgg_head:
            self.head = nn.Sequential(
                nn.MaxPool2d(3, 2),
                nn.Flatten(),
                nn.Linear(channels * 36, HEAD_FC6),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(HEAD_FC6, HEAD_FC7),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
            )
            self.head_dim = HEAD_FC7
            self.head_pool_size = 6
        else:
            self.head = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_model(stage: str = "ram", seed: int = 0, vgg_head: bool = True, **kw) -> RAMNet:
    torch.manual_seed(seed)
    kw.setdefault("num_classes", NUM_CLASSES)
    kw.setdefault("region_fc_dims", (REGION_DIM,))
    kw.setdefault("attr_dim", ATTR_DIM)
    return RAMNet(TinyBackbone(vgg_head=vgg_head), attribute_classes=ATTRS, branches=RAMNet.stage_branches(stage), **kw)


def images(b: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, 26, 26, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ regions
def test_region_bounds_paper_layout():
    assert region_bounds(13, 3, 4 / 7) == [(0, 7), (3, 10), (6, 13)]


@pytest.mark.parametrize("height", [7, 13, 14, 26])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 4 / 7])
def test_region_bounds_properties(height, k, overlap):
    bounds = region_bounds(height, k, overlap)
    assert len(bounds) == k
    heights = {e - s for s, e in bounds}
    assert len(heights) == 1 and 1 <= heights.pop() <= height
    assert bounds[0][0] == 0 and bounds[-1][1] == height
    starts = [s for s, _ in bounds]
    assert starts == sorted(starts)
    for (_, end), (next_start, _) in zip(bounds, bounds[1:]):
        assert next_start <= end  # every row covered
        if overlap > 0:
            assert next_start < end  # neighbours share rows
    if k == 1:
        assert bounds == [(0, height)]


@pytest.mark.parametrize(
    "args, match",
    [
        ((13, 0, 0.5), "k"),
        ((13, -2, 0.5), "k"),
        ((13, 3, 1.0), "overlap"),
        ((13, 3, -0.1), "overlap"),
        ((0, 3, 0.5), "height"),
    ],
)
def test_region_bounds_errors(args, match):
    with pytest.raises(ValueError, match=match):
        region_bounds(*args)


# ------------------------------------------------------------------------------------------ network
EXPECTED_KEYS = {
    "baseline": ({"f_c"}, {"conv"}),
    "bn": ({"f_c", "f_b"}, {"conv", "bn"}),
    "bn_r": ({"f_c", "f_b", "f_rt", "f_rm", "f_rb"}, {"conv", "bn", "region_t", "region_m", "region_b"}),
    "ram": (
        {"f_c", "f_b", "f_rt", "f_rm", "f_rb", "f_a"},
        {"conv", "bn", "region_t", "region_m", "region_b", "attr_colour", "attr_type"},
    ),
}


@pytest.mark.parametrize("stage", STAGES)
def test_forward_keys_and_dims_per_stage(stage):
    model = make_model(stage).eval()
    out = model(images())
    feats, logits = EXPECTED_KEYS[stage]
    assert set(out.features) == feats and set(out.logits) == logits
    dims = {"f_c": HEAD_FC7, "f_b": HEAD_FC7, "f_a": ATTR_DIM}
    dims.update({f"f_r{r}": REGION_DIM for r in "tmb"})
    for name, value in out.features.items():
        assert value.shape == (3, dims[name]), name
    assert model.feature_dims == {k: dims[k] for k in feats}
    for name, value in out.logits.items():
        n = ATTRS[name[5:]] if name.startswith("attr_") else NUM_CLASSES
        assert value.shape == (3, n), name


def test_conv_branch_uses_vgg_head_and_pool():
    torch.manual_seed(0)
    backbone = TinyBackbone()
    fc6, fc7 = backbone.head[2], backbone.head[5]
    from vreid_lightning.errors import ConfigError

    for key, value in (("fc_dims", (99, 99)), ("pool_size", 5)):  # keys with no effect beside a VGG head
        with pytest.raises(ConfigError, match=f"model.net.{key}=.*has no effect"):
            RAMNet(backbone, NUM_CLASSES, ATTRS, branches=("conv",), **{key: value})
    model = RAMNet(backbone, NUM_CLASSES, ATTRS, branches=("conv",))
    assert model.conv.fc1[0] is fc6 and model.conv.fc2[0] is fc7
    assert isinstance(model.conv.pool[0], nn.MaxPool2d)
    assert backbone.head is None  # moved, so each parameter has one name
    assert not any(k.startswith("backbone.head") for k in model.state_dict())
    model.eval()
    x = images()
    expected = fc7(fc6(F.max_pool2d(backbone(x), 3, 2).flatten(1)).relu()).relu()
    torch.testing.assert_close(model(x).features["f_c"], expected)
    with pytest.raises(ValueError, match="already belongs"):
        RAMNet(backbone, NUM_CLASSES, ATTRS, branches=("conv",))


def test_no_head_backbone_builds_fresh_fc_layers():
    model = make_model("ram", vgg_head=False, fc_dims=(20, 24), pool_size=6).eval()
    assert model.conv.fc1[0].in_features == 8 * 36 and model.attr.fc[0].in_features == 20
    out = model(images())
    assert out.features["f_c"].shape == (3, 24) and out.features["f_b"].shape == (3, 24)


def test_attribute_branch_reads_first_fc_output():
    model = make_model("ram").eval()
    x = images()
    first = model.conv.fc1(model.conv.pool(model.feature_map(x)))
    torch.testing.assert_close(model(x).features["f_a"], model.attr.fc(first))


def test_bn_branch_normalises_before_pooling():
    model = make_model("bn").eval()
    with torch.no_grad():
        model.bn.norm.running_mean.fill_(0.3)
        model.bn.norm.running_var.fill_(4.0)
    x = images()
    m = model.feature_map(x)
    torch.testing.assert_close(model.bn_feature_map(x), (m - 0.3) / torch.sqrt(torch.tensor(4.0 + 1e-5)))
    expected = model.bn.fc2(model.bn.fc1(F.max_pool2d((m - 0.3) / (4.0 + 1e-5) ** 0.5, 3, 2).flatten(1)))
    torch.testing.assert_close(model(x).features["f_b"], expected)
    with pytest.raises(ValueError, match="BN branch is not active"):
        make_model("baseline").bn_feature_map(x)


def test_region_features_come_from_their_rows_only():
    model = make_model("bn_r").eval()
    x = images(2)
    m = model.feature_map(x)
    base = model.region(m)[0]
    bumped = m.clone()
    bumped[:, :, 10:] += 5.0  # rows 10-12 belong to the bottom region only
    feats = model.region(bumped)[0]
    torch.testing.assert_close(feats["t"], base["t"])
    torch.testing.assert_close(feats["m"], base["m"])
    assert not torch.allclose(feats["b"], base["b"])


def test_other_region_counts_are_numbered():
    model = make_model("ram", num_regions=4).eval()
    out = model(images())
    assert [k for k in out.features if k.startswith("f_r")] == ["f_r1", "f_r2", "f_r3", "f_r4"]
    assert {f"region_{i}" for i in range(1, 5)} <= set(out.logits)


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown branches"):
        RAMNet(TinyBackbone(), NUM_CLASSES, ATTRS, branches=("conv", "nope"))
    with pytest.raises(ValueError, match="include 'conv'"):
        RAMNet(TinyBackbone(), NUM_CLASSES, ATTRS, branches=("bn",))
    with pytest.raises(ValueError, match="attribute_classes"):
        RAMNet(TinyBackbone(), NUM_CLASSES, {}, branches=("conv", "attr"))
    with pytest.raises(ValueError, match="region_pool"):
        RAMNet(TinyBackbone(), NUM_CLASSES, ATTRS, branches=("conv", "region"), region_pool="median")
    with pytest.raises(ValueError, match="unknown stage"):
        RAMNet.stage_branches("bn+r")


def test_bn_fc_init_option():
    model = make_model("bn", bn_fc_init="copy")
    torch.testing.assert_close(model.bn.fc1[0].weight, model.conv.fc1[0].weight)
    assert model.bn.fc1[0].weight.data_ptr() != model.conv.fc1[0].weight.data_ptr()
    fresh = make_model("bn", bn_fc_init="xavier")
    assert not torch.allclose(fresh.bn.fc1[0].weight, fresh.conv.fc1[0].weight)
    bound = (3.0 / fresh.bn.fc1[0].in_features) ** 0.5  # Caffe's xavier: U(-sqrt(3/fan_in), +)
    assert fresh.bn.fc1[0].weight.abs().max() <= bound and fresh.bn.fc1[0].weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(fresh.bn.fc1[0].bias) == 0


# ------------------------------------------------------------------------------------------ stages
def trained(model: RAMNet) -> RAMNet:
    """One SGD step so the weights differ from any fresh initialisation."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = model.train()(images(4))
    attrs = {"colour": torch.tensor([0, 1, -1, 2]), "type": torch.tensor([0, 1, 2, 0])}
    loss, _ = RAMLoss()(out.logits, torch.tensor([0, 1, 2, 3]), attrs)
    loss.backward()
    opt.step()
    return model


def test_load_previous_stage_carries_baseline_into_bn():
    prev = trained(make_model("baseline", seed=0))
    nxt = make_model("bn", seed=1, bn_fc_init="copy")
    report = load_previous_stage(nxt, prev.state_dict())
    prev_sd, nxt_sd = prev.state_dict(), nxt.state_dict()
    shared = [k for k in prev_sd if k.startswith(("backbone.", "conv."))]
    assert shared and set(report["loaded"]) == set(prev_sd)
    for key in shared:
        torch.testing.assert_close(nxt_sd[key], prev_sd[key], rtol=0, atol=0)
    assert set(report["new"]) == {k for k in nxt_sd if k.startswith("bn.")} and report["new"]
    assert set(report["copied"]) == {k for k in nxt_sd if k.startswith(("bn.fc1.", "bn.fc2."))}
    torch.testing.assert_close(nxt.bn.fc1[0].weight, prev.conv.fc1[0].weight, rtol=0, atol=0)
    fresh = make_model("bn", seed=1)  # bn_fc_init="xavier" (the authors'): the BN FCs keep their own init
    before = fresh.bn.fc1[0].weight.detach().clone()
    assert load_previous_stage(fresh, prev.state_dict())["copied"] == {}
    torch.testing.assert_close(fresh.bn.fc1[0].weight, before, rtol=0, atol=0)


def test_load_previous_stage_keeps_fresh_branches_and_prefix():
    prev = trained(make_model("bn", seed=0))
    nxt = make_model("bn_r", seed=1)
    fresh_region = {k: v.clone() for k, v in nxt.state_dict().items() if k.startswith("region.")}
    ckpt = {f"model.{k}": v for k, v in prev.state_dict().items()}
    report = load_previous_stage(nxt, ckpt, prefix="model.")
    assert set(report["new"]) == set(fresh_region) and report["copied"] == {}
    for key, value in fresh_region.items():
        torch.testing.assert_close(nxt.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(nxt.bn.fc1[0].weight, prev.bn.fc1[0].weight, rtol=0, atol=0)


def test_load_previous_stage_errors_name_the_key():
    prev = make_model("baseline", num_classes=5)
    with pytest.raises(ValueError, match=r"conv\.classifier\.weight.*\(5, 16\).*\(6, 16\)"):
        load_previous_stage(make_model("bn", num_classes=6), prev.state_dict())
    with pytest.raises(ValueError, match="bn.norm"):
        load_previous_stage(make_model("baseline"), make_model("bn").state_dict())
    with pytest.raises(ValueError, match="no key"):
        load_previous_stage(make_model("bn"), make_model("baseline").state_dict(), prefix="model.")


def test_every_parameter_gets_a_gradient_in_ram_stage():
    model = make_model("ram")
    out = model(images(4))
    attrs = {"colour": torch.tensor([0, 1, 2, 3]), "type": torch.tensor([0, 1, 2, 0])}
    loss, _ = RAMLoss()(out.logits, torch.tensor([0, 1, 2, 3]), attrs)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing  # no unused parameters (DDP-safe)


# ------------------------------------------------------------------------------------------ losses
def hand_logits(b: int = 5, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ["conv", "bn", "region_t", "region_m", "region_b"]
    logits = {n: torch.randn(b, NUM_CLASSES, generator=g) for n in names}
    logits.update({f"attr_{n}": torch.randn(b, c, generator=g) for n, c in ATTRS.items()})
    return logits


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ram_loss_weighting(reduction):
    logits, pids = hand_logits(), torch.tensor([0, 1, 2, 3, 6])
    attrs = {"colour": torch.tensor([0, 3, 1, 2, 0]), "type": torch.tensor([2, 1, 0, 0, 1])}
    l1, l2, l3 = 0.5, 2.0, 0.25
    total, parts = RAMLoss(l1, l2, l3, region_reduction=reduction)(logits, pids, attrs)
    ce = {k: F.cross_entropy(v, pids) for k, v in logits.items() if not k.startswith("attr_")}
    regions = ce["region_t"] + ce["region_m"] + ce["region_b"]
    l_re = regions / 3 if reduction == "mean" else regions
    l_att = sum(F.cross_entropy(logits[f"attr_{n}"], attrs[n]) for n in ("colour", "type"))
    torch.testing.assert_close(total, ce["conv"] + l1 * ce["bn"] + l2 * l_re + l3 * l_att)
    torch.testing.assert_close(parts["region"], l_re)
    torch.testing.assert_close(parts["attr"], l_att)
    assert {"conv", "bn", "region", "attr", "region_t", "attr_type"} <= set(parts)


def test_ram_loss_only_active_terms_and_errors():
    logits, pids = hand_logits(), torch.tensor([0, 1, 2, 3, 6])
    total, parts = RAMLoss(lambda_bn=3.0)({"conv": logits["conv"], "bn": logits["bn"]}, pids)
    assert set(parts) == {"conv", "bn"}
    torch.testing.assert_close(total, F.cross_entropy(logits["conv"], pids) + 3 * F.cross_entropy(logits["bn"], pids))
    with pytest.raises(KeyError, match="attr_colour"):
        RAMLoss()({"attr_colour": logits["attr_colour"]}, pids, {"type": pids})
    with pytest.raises(ValueError, match="region_reduction"):
        RAMLoss(region_reduction="max")


def test_ignored_attribute_labels():
    logits, pids = hand_logits(), torch.tensor([0, 1, 2, 3, 6])
    colour = torch.tensor([0, 3, -1, 2, 0])
    loss = RAMLoss()
    _, parts = loss(logits, pids, {"colour": colour, "type": torch.tensor([2, 1, 0, 0, 1])})
    keep = colour >= 0
    torch.testing.assert_close(parts["attr_colour"], F.cross_entropy(logits["attr_colour"][keep], colour[keep]))
    changed = dict(logits)
    changed["attr_colour"] = logits["attr_colour"].clone()
    changed["attr_colour"][2] += 100.0  # the ignored sample
    _, parts2 = loss(changed, pids, {"colour": colour, "type": torch.tensor([2, 1, 0, 0, 1])})
    torch.testing.assert_close(parts2["attr_colour"], parts["attr_colour"])


def test_all_ignored_attribute_batch_is_zero_with_finite_gradients():
    logits = {k: v.requires_grad_() for k, v in hand_logits().items()}
    none = torch.full((5,), -1)
    total, parts = RAMLoss()(logits, torch.tensor([0, 1, 2, 3, 6]), {"colour": none, "type": none})
    assert parts["attr"].item() == 0.0 and torch.isfinite(total)
    total.backward()
    for key, value in logits.items():
        assert torch.isfinite(value.grad).all(), key
    assert logits["attr_colour"].grad.abs().sum() == 0


def test_cross_entropy_matches_torch_with_smoothing_and_ignore():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g)
    targets = torch.tensor([0, -1, 4, 2, -1, 1])
    for eps in (0.0, 0.1):
        expected = F.cross_entropy(logits, targets, label_smoothing=eps, ignore_index=-1)
        torch.testing.assert_close(CrossEntropyLoss(eps)(logits, targets), expected)
    assert cross_entropy(logits, torch.full((6,), -1), 0.1).item() == 0.0
    with pytest.raises(ValueError, match="target 5 is outside"):
        cross_entropy(logits, torch.tensor([0, 5, 1, 1, 1, 1]))


# ------------------------------------------------------------------------------------------ Table 1
@pytest.mark.parametrize("stage", STAGES)
def test_combine_features_per_stage(stage):
    feats = make_model(stage).eval()(images()).features
    combos = combine_features(feats)
    expected = {
        "baseline": TABLE1_COMBINATIONS[:1],
        "bn": TABLE1_COMBINATIONS[:3],
        "bn_r": TABLE1_COMBINATIONS[:7],
        "ram": TABLE1_COMBINATIONS,
    }[stage]
    assert tuple(combos) == expected
    widths = {"f_c": HEAD_FC7, "f_b": HEAD_FC7, "f_rt": REGION_DIM, "f_rm": REGION_DIM, "f_rb": REGION_DIM,
              "f_r": 3 * REGION_DIM, "f_a": ATTR_DIM}
    for name, value in combos.items():
        assert value.shape == (3, sum(widths[p] for p in name.split("+"))), name


def test_combine_features_normalisation():
    feats = make_model("ram").eval()(images()).features
    full = combine_features(feats)["f_c+f_b+f_r+f_a"]
    order = ["f_c", "f_b", "f_rt", "f_rm", "f_rb", "f_a"]
    start = 0
    for key in order:
        width = feats[key].shape[1]
        part = full[:, start:start + width]
        torch.testing.assert_close(part.norm(dim=1), torch.ones(3))
        torch.testing.assert_close(part, F.normalize(feats[key], dim=1))
        start += width
    raw = combine_features(feats, ["f_c+f_a"], normalize="none")["f_c+f_a"]
    torch.testing.assert_close(raw, torch.cat([feats["f_c"], feats["f_a"]], 1))
    with pytest.raises(ValueError, match="unknown parts"):
        combine_features(feats, ["f_c+f_x"])
    with pytest.raises(ValueError, match="normalize"):
        combine_features(feats, normalize="l1")


def test_combine_features_generalises_regions():
    feats = make_model("ram", num_regions=4).eval()(images()).features
    combos = combine_features(feats)
    assert [c for c in combos if c.count("+") == 2 and "f_r" in c and not c.endswith("f_r")] == [
        f"f_c+f_b+f_r{i}" for i in range(1, 5)
    ]
    assert combos["f_c+f_b+f_r+f_a"].shape[1] == 2 * HEAD_FC7 + 4 * REGION_DIM + ATTR_DIM


# ------------------------------------------------------------------------------------------ Fig. 3
def test_response_map_range():
    fmap = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    r = response_map(fmap)
    assert r.shape == (2, 5, 6)
    for i in range(2):
        assert r[i].min().item() == 0.0 and abs(r[i].max().item() - 1.0) < 1e-6
    mean = fmap[0].relu().mean(0)
    torch.testing.assert_close(r[0], (mean - mean.min()) / (mean.max() - mean.min()))
    assert response_map(torch.ones(1, 3, 4, 4)).abs().sum() == 0


def test_save_response_grid_png(tmp_path):
    baseline, bn_r = make_model("baseline", seed=0), make_model("bn_r", seed=1).train()
    x = images(2)
    maps = branch_response_maps(x, conv_model=baseline, bn_model=bn_r, region_model=bn_r)
    assert list(maps) == ["Conv branch (M)", "BN branch (BN(M))", "Region branch (M)"]
    assert bn_r.training  # mode restored
    path = save_response_grid(x, maps, tmp_path / "fig3" / "grid.png",
                              region_bounds={"Region branch (M)": bn_r.region.bounds(13)})
    assert path.exists()
    with Image.open(path) as im:
        w, h = im.size
        pixels = torch.tensor(list(im.convert("L").getdata()), dtype=torch.float32)
    assert 700 <= w <= 900 and 350 <= h <= 450  # 4 columns x 2 rows of 200-px cells
    assert pixels.std() > 10  # something was drawn
    with pytest.raises(ValueError, match="maps\\['bad'\\]"):
        save_response_grid(x, {"bad": torch.rand(3, 13, 13)}, tmp_path / "x.png")
