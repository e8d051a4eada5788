"""BoT (Luo et al., CVPRW 2019): the network, the objective, the warm-up schedule and the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vreid_lightning.errors import ConfigError
from vreid_lightning.losses.bot import BoTLoss
from vreid_lightning.models.bot import IBN, BoTNet, GeneralizedMeanPooling, make_ibn_a
from vreid_lightning.optim.warmup import WarmupMultiStepLR

SMALL = {"name": "vgg_cnn_m", "width_mult": 0.125, "norm": "bn"}


def _net(**kw) -> BoTNet:
    torch.manual_seed(0)
    return BoTNet(SMALL, num_classes=5, **kw)


def test_bnneck_head_outputs_and_the_test_feature():
    net = _net().train()
    x = torch.randn(4, 3, 64, 64)
    out = net(x)
    d = net.feature_dim
    assert out.logits["id"].shape == (4, 5) and out.embeddings["global"].shape == (4, d)
    assert net.classifier.bias is None and not net.bnneck.bias.requires_grad  # BNNeck: no shift, bias-free classifier
    net.eval()
    out = net(x)
    after = F.batch_norm(out.embeddings["global"], net.bnneck.running_mean, net.bnneck.running_var,
                         net.bnneck.weight, net.bnneck.bias, False)
    assert torch.allclose(out.features["bnneck"], after, atol=1e-6)
    before = _net(neck_feat="before").eval()
    before.load_state_dict(net.state_dict())
    assert torch.equal(before(x).features["global"], out.embeddings["global"])
    with pytest.raises(ConfigError, match="neck_feat"):
        _net(neck_feat="middle")


def test_gem_pooling_is_the_generalised_mean():
    x = torch.rand(2, 3, 4, 5) + 0.1
    p = 3.0
    ref = (x ** p).mean(dim=(2, 3)) ** (1 / p)
    assert torch.allclose(GeneralizedMeanPooling(p)(x), ref, atol=1e-6)
    assert isinstance(_net(gem_p=3.0).pool, GeneralizedMeanPooling)
    with pytest.raises(ConfigError, match="gem_p"):
        _net(gem_p=-1)


def test_ibn_a_normalises_half_the_channels_per_instance():
    ibn = IBN(8).eval()
    x = torch.randn(2, 8, 5, 5) * 3 + 1
    y = ibn(x)
    inst = y[:, :4].flatten(2)
    assert torch.allclose(inst.mean(-1), torch.zeros(2, 4), atol=1e-5)  # InstanceNorm half: per-image zero mean
    assert torch.allclose(y[:, 4:], ibn.BN(x[:, 4:]))


def test_ibn_a_weights_switch_builds_and_loads(tmp_path: Path):
    from vreid_lightning.models.backbones import build_backbone

    ref = make_ibn_a(build_backbone("resnet50", last_stride=1))
    assert sum(isinstance(m, IBN) for m in ref.modules()) == 3 + 4 + 6  # bn1 of layer1-3's bottlenecks
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)  # the release's classifier is dropped
    path = tmp_path / "resnet50_ibn_a.pth"
    torch.save(state, path)
    net = BoTNet({"name": "resnet50", "last_stride": 1}, num_classes=3, ibn_a_weights=str(path))
    got = net.backbone.state_dict()
    assert torch.equal(got["layer1.0.bn1.IN.weight"], state["layer1.0.bn1.IN.weight"])
    assert torch.equal(got["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    with pytest.raises(ConfigError, match="ibn_a_weights"):
        BoTNet({"name": "resnet50", "pretrained": True}, num_classes=3, ibn_a_weights=str(path))


def _batch_hard_reference(f: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    losses = []
    for i in range(len(y)):
        d = torch.linalg.norm(f[i] - f, dim=1)
        pos = [d[j] for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [d[j] for j in range(len(y)) if y[j] != y[i]]
        losses.append(torch.clamp(max(pos) - min(neg) + margin, min=0))
    return torch.stack(losses).mean()


def test_bot_loss_is_smoothed_ce_plus_triplet_plus_weighted_center():
    torch.manual_seed(0)
    net = _net().train()
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    out = net(torch.randn(6, 3, 64, 64))
    loss = BoTLoss(num_classes=5, feature_dim=net.feature_dim, center_weight=0.5)
    total, parts = loss(out, {"pid": y})
    emb = out.embeddings["global"]
    ce = F.cross_entropy(out.logits["id"], y, label_smoothing=0.1)
    tri = _batch_hard_reference(emb, y, 0.3)
    center = 0.5 * ((emb - loss.center.centers[y]) ** 2).sum(1).mean()
    assert torch.allclose(parts["ce"], ce, atol=1e-5) and torch.allclose(parts["triplet"], tri, atol=1e-4)
    assert torch.allclose(total, ce + tri + 0.5 * center, atol=1e-4)
    plain = BoTLoss(num_classes=5, feature_dim=net.feature_dim, center_weight=0.0)
    assert plain.center is None and set(plain(out, {"pid": y})[1]) == {"ce", "triplet"}


def test_warmup_schedule_is_the_papers():
    """'Warmup Learning Rate': 3.5e-5 at the first epoch, linear to 3.5e-4 over 10 epochs, x0.1 at 40 and 70."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=3.5e-4)
    sched = WarmupMultiStepLR(opt, milestones=[40, 70], gamma=0.1, warmup_epochs=10, warmup_factor=0.1)
    lrs = []
    for _ in range(120):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(3.5e-5) and lrs[5] == pytest.approx(3.5e-4 * 0.55)
    assert lrs[10] == pytest.approx(3.5e-4) and lrs[39] == pytest.approx(3.5e-4)
    assert lrs[40] == pytest.approx(3.5e-5) and lrs[70] == pytest.approx(3.5e-6) and lrs[119] == pytest.approx(3.5e-6)


def test_bot_configs_build_the_generic_module(tmp_path: Path):
    from types import SimpleNamespace

    from tests.conftest import compose
    from vreid_lightning.methods.generic import GenericReIDModule
    from vreid_lightning.runner.fit import build_model

    for name in ("bot_veri", "bot_vehicleid"):
        cfg = compose([f"+experiment={name}", "backbone.pretrained=false"], tmp_path)
        assert cfg.backbone.name == "resnet50" and cfg.backbone.last_stride == 1
        assert list(cfg.data.image_size) == [256, 256] and cfg.data.train_transform.random_erasing == 0.5
    cfg = compose(["+experiment=bot_synthetic"], tmp_path)
    model = build_model(cfg, SimpleNamespace(num_classes=7, attribute_classes={}))  # the runner's way
    assert isinstance(model, GenericReIDModule) and isinstance(model.net, BoTNet)
    assert model.criterion.center.centers.shape == (7, model.net.feature_dim)
    batch = {"image": torch.randn(8, 3, 64, 64), "pid": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
    total, parts, logits = model.training_loss(batch)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad and set(parts) == {"ce", "triplet", "center"} and logits.shape == (8, 7)
