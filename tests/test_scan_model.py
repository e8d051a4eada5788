"""SCAN attention module, the light VGG networks (Table 4 sizes), the iteration scheduler, the SCAN*
partner ensemble and the Fig. 5 picture."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.ensemble import concat_features
from vreid_lightning.models.backbones import build_backbone
from vreid_lightning.models.light_vgg import LightVGGNet, count_parameters
from vreid_lightning.models.scan import SCAN, ChannelAttention, SpatialAttention
from vreid_lightning.optim import IterationStepLR, scheduler_interval


class TinyTrunk(nn.Module):
    """Backbone contract: (B, 3, H, W) -> (B, 32, H/2, W/2), with a fake VGG head to be dropped."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
        self.out_channels = channels
        self.head = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def feature_map(b: int = 2, c: int = 32, h: int = 13, w: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ Table 4 sizes
def test_light_vgg_m_has_table4_size():
    net = LightVGGNet(build_backbone("vgg_cnn_m_1024"), num_classes=576, attention=False)
    assert abs(net.embedding_parameters() - 6.8e6) <= 0.1e6  # Table 4: light_vgg_m 6.8M
    assert net.embedding_parameters() == 6_791_296  # conv1-conv5 6,528,640 + FC 512x512 262,656
    assert net.backbone.head is None  # VGG_CNN_M_1024's fc6/fc7 are gone (86.2M -> 6.8M)


def test_light_vgg16_count_is_ours_not_table4():
    net = LightVGGNet(build_backbone("vgg16"), num_classes=576, attention=False)
    # Table 4 says 7.9M, less than VGG16's conv layers alone (14,714,688): we count those plus the FC
    assert net.embedding_parameters() == 14_714_688 + 262_656


def test_scan_module_has_table4_size():
    n = count_parameters(SCAN(512, reduction=16))
    assert 32_500 <= n <= 33_500  # Table 4: SCAN 0.033M at c = 512, r = 16
    assert n == (512 * 32 + 32) + (32 * 512 + 512) + 2 + (10 + 2 + 10)  # CAB FCs + CAB scale + SAB
    with_scan = LightVGGNet(build_backbone("vgg_cnn_m_1024"), num_classes=576, attention=True)
    assert with_scan.embedding_parameters() - 6_791_296 == n


# ------------------------------------------------------------------------------------ branches
def test_sab_range_and_shape_after_training_steps():
    sab = SpatialAttention()
    f = feature_map()
    s0 = sab(f)
    assert s0.shape == (2, 1, 13, 11)
    assert torch.allclose(s0, torch.full_like(s0, 0.75))  # the near-uniform start
    opt = torch.optim.Adam(sab.parameters(), lr=0.1)
    target = torch.full((1, 1, 13, 11), 0.4)
    target[..., :6, :] = 1.2  # a top/bottom pattern beyond the range at both ends
    for _ in range(50):
        opt.zero_grad()
        ((sab(f) - target) ** 2).mean().backward()
        opt.step()
    s = sab(f)
    assert s.min() >= 0.5 and s.max() <= 1.0
    assert s.max() - s.min() > 0.2  # it learned a spatial pattern (not constant any more)
    assert s[..., :5, :].mean() > s[..., 8:, :].mean() + 0.2


def test_cab_shape_and_error_for_too_few_channels():
    cab = ChannelAttention(32, reduction=16)
    c = cab(feature_map())
    assert c.shape == (2, 32, 1, 1)
    assert torch.allclose(c, torch.ones_like(c), atol=0.1)  # starts near 1
    with pytest.raises(ConfigError, match=r"model.net.reduction.*8 channels, fewer than r=16"):
        ChannelAttention(8, reduction=16)
    with pytest.raises(ConfigError, match="model.net.reduction"):
        LightVGGNet(TinyTrunk(channels=8), num_classes=3, attention=True, reduction=16)


@pytest.mark.parametrize("fusion", ["product", "mean", "residual"])
def test_fusion(fusion: str):
    torch.manual_seed(0)
    scan = SCAN(32, reduction=4, fusion=fusion)
    for p in scan.parameters():  # a random, non-uniform state
        nn.init.normal_(p, 0.0, 0.5)
    f = feature_map()
    out = scan(f)
    s, c = out.spatial, out.channel
    assert s.shape == (2, 1, 13, 11) and c.shape == (2, 32, 1, 1)
    expected = {"product": f * s * c, "mean": f * (s + c) / 2, "residual": f + f * s * c}[fusion]
    assert out.refined.shape == f.shape
    assert torch.allclose(out.refined, expected, atol=1e-6)


@pytest.mark.parametrize("branches", ["spatial", "channel"])
def test_single_branch(branches: str):
    scan = SCAN(32, reduction=4, branches=branches)
    out = scan(feature_map())
    assert (out.spatial is None) == (branches == "channel")
    assert (out.channel is None) == (branches == "spatial")
    weight = out.spatial if branches == "spatial" else out.channel
    assert torch.allclose(out.refined, feature_map() * weight)
    one = count_parameters(scan)
    assert one < count_parameters(SCAN(32, reduction=4))


def test_bad_switches_name_the_key():
    with pytest.raises(ConfigError, match="model.net.branches"):
        SCAN(32, branches="neither")
    with pytest.raises(ConfigError, match="model.net.fusion"):
        SCAN(32, fusion="concat")
    with pytest.raises(ConfigError, match="model.net.attention"):
        LightVGGNet(TinyTrunk(), num_classes=3, attention="both")


def test_every_parameter_learns():
    torch.manual_seed(0)
    net = LightVGGNet(TinyTrunk(), num_classes=4, attention=True, reduction=4)
    assert net.backbone.head is None
    x = torch.rand(4, 3, 24, 20)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for _ in range(2):  # the SAB's zero deconv passes gradient upstream from the second step on
        opt.zero_grad()
        out = net(x)
        (nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])) + out.features["scan"].pow(2).mean()).backward()
        opt.step()
    moved = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert set(moved) == set(before), sorted(set(before) - set(moved))
    out = net(x)
    assert out.features["scan"].shape == (4, 512) and out.logits.shape == (4, 4)
    assert out.spatial.shape == (4, 1, 12, 10)


# ------------------------------------------------------------------------------------ scheduler
def test_iteration_scheduler_steps_per_iteration():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.001)
    sched = IterationStepLR(opt, step_size=2000, gamma=0.8)
    assert scheduler_interval(sched) == "step"
    assert scheduler_interval(torch.optim.lr_scheduler.StepLR(opt, 10)) == "epoch"
    lrs = []
    for _ in range(6001):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[1999] == pytest.approx(0.001)
    assert lrs[2000] == pytest.approx(0.0008)
    assert lrs[4000] == pytest.approx(0.00064)
    assert lrs[6000] == pytest.approx(0.000512)
    with pytest.raises(ValueError, match="step_size"):
        IterationStepLR(opt, step_size=0)


def test_base_module_steps_the_iteration_scheduler_per_batch():
    from vreid_lightning.methods.scan import SCANModule

    m = SCANModule(num_classes=3, backbone={"name": "vgg_cnn_m_1024", "width_mult": 0.125, "norm": "bn"},
                   optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
                   scheduler={"_target_": "vreid_lightning.optim.IterationStepLR", "_partial_": True,
                              "step_size": 5, "gamma": 0.5}, net={"_target_": "vreid_lightning.models.light_vgg.LightVGGNet", "reduction": 4}, loss={"_target_": "vreid_lightning.losses.scan.SCANLoss"})
    conf = m.configure_optimizers()
    assert conf["lr_scheduler"]["interval"] == "step"


def test_attention_lr_mult_gives_the_scan_module_its_own_group():
    from vreid_lightning.methods.scan import SCANModule

    kw = dict(num_classes=3, backbone={"name": "vgg_cnn_m_1024", "width_mult": 0.125, "norm": "bn"},
              optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}, net={"_target_": "vreid_lightning.models.light_vgg.LightVGGNet", "reduction": 4},
              loss={"_target_": "vreid_lightning.losses.scan.SCANLoss"})
    plain = SCANModule(**kw).configure_optimizers()
    opt = plain["optimizer"] if isinstance(plain, dict) else plain
    assert len(opt.param_groups) == 1  # factor 1 (the default): one group, as before
    m = SCANModule(**kw, attention_lr_mult=10.0)
    conf = m.configure_optimizers()
    groups = {g["name"]: g for g in (conf["optimizer"] if isinstance(conf, dict) else conf).param_groups}
    assert groups["network"]["lr"] == pytest.approx(0.1) and groups["attention"]["lr"] == pytest.approx(1.0)
    att = {id(p) for p in m.net.attention.parameters()}
    assert {id(p) for p in groups["attention"]["params"]} == att
    assert not att & {id(p) for p in groups["network"]["params"]}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(m.parameters()))
    with pytest.raises(ConfigError, match="model.attention_lr_mult"):
        SCANModule(**kw, attention_lr_mult=0.0)


# ------------------------------------------------------------------------------------ SCAN* partner
def _tiny_module(attention: bool, seed: int):
    from vreid_lightning.methods.scan import SCANModule

    torch.manual_seed(seed)
    return SCANModule(num_classes=3, backbone={"name": "vgg_cnn_m_1024", "width_mult": 0.125, "norm": "bn"},
                      net={"_target_": "vreid_lightning.models.light_vgg.LightVGGNet", "attention": attention, "reduction": 4, "feat_dim": 16}, loss={"_target_": "vreid_lightning.losses.scan.SCANLoss"},
                      optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})


def _saved_plain_module(tmp_path):
    """A tiny light network (no attention) and its Lightning checkpoint, as a previous stage leaves it."""
    import lightning as L

    plain = _tiny_module(False, 0)
    ckpt = tmp_path / "plain.ckpt"
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(plain)
    trainer.save_checkpoint(ckpt)
    return plain, ckpt


def test_partner_features_and_scan_star_combination(tmp_path):
    plain, ckpt = _saved_plain_module(tmp_path)
    scan = _tiny_module(True, 1)
    scan.load_previous_stage(ckpt)  # previous_stage: partner (the default)
    x = torch.rand(3, 3, 64, 64)
    scan.eval()
    feats = scan.extract(x)
    assert set(feats) == {"scan", "plain"}
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(feats["plain"], plain.extract(x)["plain"])
    combos = scan.feature_combinations(feats)
    assert list(combos) == ["scan", "plain", "scan+plain"]
    assert torch.allclose(combos["scan+plain"], concat_features([feats["scan"], feats["plain"]]))
    assert torch.allclose(combos["scan+plain"][:, :16].norm(dim=1), torch.ones(3))
    assert scan.main_feature == "scan"
    assert list(scan.feature_combinations(feats, study=False)) == ["scan"]
    # the partner is neither trained nor saved with the model
    assert not any(k.startswith("_partner") for k in scan.state_dict())
    assert sum(p.numel() for p in scan.parameters()) == sum(p.numel() for p in _tiny_module(True, 1).parameters())
    with pytest.raises(ConfigError, match="model.partner"):
        scan.set_partner(tmp_path / "missing.ckpt")
    # a bare state dict (a staged run's final.ckpt): the partner's switches are read off its keys
    bare = tmp_path / "final.ckpt"
    torch.save({"state_dict": plain.state_dict()}, bare)
    scan.set_partner(bare)
    with torch.no_grad():
        assert torch.allclose(scan.extract(x)["plain"], plain.extract(x)["plain"])


def test_previous_stage_init_copies_matching_weights(tmp_path):
    plain, ckpt = _saved_plain_module(tmp_path)
    from vreid_lightning.methods.scan import SCANModule

    scan = SCANModule(num_classes=3, backbone={"name": "vgg_cnn_m_1024", "width_mult": 0.125, "norm": "bn"},
                      net={"_target_": "vreid_lightning.models.light_vgg.LightVGGNet", "attention": True, "reduction": 4, "feat_dim": 16}, loss={"_target_": "vreid_lightning.losses.scan.SCANLoss"},
                      previous_stage="init",
                      optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    report = scan.load_previous_stage(ckpt)
    assert all(not k.startswith("attention") for k in report["loaded"])
    assert any(k.startswith("attention") for k in report["new"])
    assert torch.equal(scan.net.fc.weight, plain.net.fc.weight)
    with pytest.raises(ConfigError, match="model.previous_stage"):
        SCANModule(num_classes=3, backbone={"name": "vgg_cnn_m_1024"}, net={"_target_": "vreid_lightning.models.light_vgg.LightVGGNet"}, loss={"_target_": "vreid_lightning.losses.scan.SCANLoss"}, previous_stage="copy")


def test_concat_ensemble_rejects_different_row_counts():
    with pytest.raises(ValueError, match=r"different row counts.*\(3, 4\).*\(2, 4\)"):
        concat_features([torch.zeros(3, 4), torch.zeros(2, 4)])


# ------------------------------------------------------------------------------------ Fig. 5
def test_fig5_interleaved_layout(tmp_path):
    from vreid_lightning.viz.response_maps import save_response_grid

    images = torch.rand(6, 3, 32, 24)
    maps = torch.rand(6, 7, 5)
    path = save_response_grid(images, {"SAB": maps}, tmp_path / "fig5.png", layout="interleaved", columns=3,
                              cell_inches=1.0, dpi=50)
    with Image.open(path) as im:
        w, h = im.size
    assert (w, h) == (150, 200)  # 3 columns x (2 image rows + 2 map rows), 50 px per cell
    with pytest.raises(ValueError, match="layout"):
        save_response_grid(images, {"SAB": maps}, tmp_path / "x.png", layout="columns")
