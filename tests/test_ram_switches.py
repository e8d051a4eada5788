"""RAM's switches between the paper's reading and the authors' Caffe code: each changes what it should."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.losses import RAMLoss
from vreid_lightning.models.ram import RAMNet
from tests.test_ram_model import ATTRS, NUM_CLASSES, TinyBackbone, images

AUTHORS_ROWS = [[0, 3], [1, 5], [3, 6]]  # train_RAM_finetune.prototxt:439-465 (pool5 rows)


class PreReluBackbone(TinyBackbone):
    """TinyBackbone with the pre-ReLU map exposed (as VGGCNNM.forward_pre_relu)."""

    def forward_pre_relu(self, x: torch.Tensor) -> torch.Tensor:
        return self.body[0](x)


def net(stage: str = "ram", seed: int = 0, **kw) -> RAMNet:
    torch.manual_seed(seed)
    kw.setdefault("region_fc_dims", (12, 12))
    kw.setdefault("attr_dim", 10)
    return RAMNet(PreReluBackbone(), NUM_CLASSES, ATTRS, branches=RAMNet.stage_branches(stage), **kw).eval()


def l2x10(x: torch.Tensor) -> torch.Tensor:
    return 10 * x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("mode", ["raw", "l2x10"])
def test_classifier_input_switch(mode):
    model = net(classifier_input=mode)
    out = model(images())
    f = (lambda x: x) if mode == "raw" else l2x10
    torch.testing.assert_close(out.logits["conv"], model.conv.classifier(f(out.features["f_c"])))
    torch.testing.assert_close(out.logits["bn"], model.bn.classifier(f(out.features["f_b"])))
    torch.testing.assert_close(out.logits["region_m"], model.region.classifier["m"](f(out.features["f_rm"])))
    torch.testing.assert_close(out.logits["attr_type"], model.attr.classifier["attr_type"](f(out.features["f_a"])))
    # l2x10 logits do not depend on the feature's scale; raw ones do
    scaled = model.conv.classifier(model.conv.cls_input(3 * out.features["f_c"]))
    assert torch.allclose(scaled, out.logits["conv"]) == (mode == "l2x10")


def test_classifier_input_per_branch_mapping():
    model = net(classifier_input={"conv": "raw", "bn": "l2x10", "region": "raw", "attr": "l2x10"})
    out = model(images())
    torch.testing.assert_close(out.logits["conv"], model.conv.classifier(out.features["f_c"]))
    torch.testing.assert_close(out.logits["bn"], model.bn.classifier(l2x10(out.features["f_b"])))
    with pytest.raises(ConfigError, match="classifier_input"):
        net(classifier_input={"conv": "raw"})
    with pytest.raises(ConfigError, match="classifier_input"):
        net(classifier_input="l2")


def test_bn_input_switch_reads_pre_relu_conv5():
    x = images()
    paper, authors = net("bn"), net("bn", bn_input="pre_relu")
    with torch.no_grad():  # BN statistics and affine away from identity, so the ReLU's place matters
        paper.bn.norm.running_mean.uniform_(-0.5, 0.5)
        paper.bn.norm.bias.uniform_(-0.5, 0.5)
        paper.bn.norm.weight.uniform_(0.5, 1.5)
    authors.load_state_dict(paper.state_dict())
    pre = authors.backbone.forward_pre_relu(x)
    assert (pre < 0).any()  # the test is sharp only if the ReLU removes something
    bn = paper.bn.norm
    torch.testing.assert_close(paper.bn_feature_map(x), bn(F.relu(pre)))
    torch.testing.assert_close(authors.bn_feature_map(x), F.relu(bn(pre)))
    assert not torch.allclose(paper.bn_feature_map(x), authors.bn_feature_map(x))
    # the Conv branch reads relu(pre) either way
    torch.testing.assert_close(paper(x).features["f_c"], authors(x).features["f_c"])
    with pytest.raises(ConfigError, match="forward_pre_relu"):
        RAMNet(TinyBackbone(), NUM_CLASSES, ATTRS, branches=("conv", "bn"), bn_input="pre_relu")


def test_region_rows_on_pool5_switch():
    model = net("bn_r", region_source="pool5", region_rows=AUTHORS_ROWS, region_pool_size=None)
    x = images()
    pool5 = model.conv.pool[0](model.feature_map(x))
    assert pool5.shape[2:] == (6, 6)
    c = model.backbone.out_channels
    assert [model.region.fc[n][0][0].in_features for n in "tmb"] == [c * 3 * 6, c * 4 * 6, c * 3 * 6]
    out = model(x)
    for name, (s, e) in zip("tmb", AUTHORS_ROWS):
        torch.testing.assert_close(out.features[f"f_r{name}"], model.region.fc[name](pool5[:, :, s:e].flatten(1)))
    paper = net("bn_r", region_pool_size=(3, 6))
    assert paper.region.bounds(13) == [(0, 7), (3, 10), (6, 13)]  # the paper's 7x13 regions on conv5
    with pytest.raises(ConfigError, match="region_pool_size=null"):
        net("bn_r", region_pool_size=None)
    with pytest.raises(ValueError, match="region_rows"):
        net("bn_r", region_source="pool5", region_rows=[[0, 3], [1, 5]], region_pool_size=None)


def test_two_region_fcs_feature_is_the_second():
    model = net("bn_r", region_fc_dims=(12, 9))
    fc = model.region.fc["t"]
    assert [b[0].out_features for b in fc] == [12, 9]
    m = model.feature_map(images())
    region = model.region.pool(m[:, :, 0:7])
    torch.testing.assert_close(model(images()).features["f_rt"], fc[1](fc[0](region)))
    assert model.feature_dims["f_rt"] == 9


def test_parts_classifier_and_region_loss_weights():
    model = net("bn_r", region_parts_classifier=True)
    out = model(images())
    cat = torch.cat([out.features[f"f_r{n}"] for n in "tmb"], dim=1)
    torch.testing.assert_close(out.logits["parts"], model.region.parts(l2x10(cat)))
    assert "parts" not in net("bn_r").eval()(images()).logits
    pids = torch.tensor([0, 1, 2])
    total, parts = RAMLoss(region_loss_weight=0.5, lambda_parts=1.0)(out.logits, pids)
    ce = {k: F.cross_entropy(v, pids) for k, v in out.logits.items()}
    expect = ce["conv"] + ce["bn"] + 0.5 * (ce["region_t"] + ce["region_m"] + ce["region_b"]) + ce["parts"]
    torch.testing.assert_close(total, expect)
    torch.testing.assert_close(RAMLoss()(out.logits, pids)[0], 2 * expect - ce["conv"] - ce["bn"] - ce["parts"])


def test_attribute_branch_defaults_512_relu_no_dropout():
    torch.manual_seed(0)
    model = RAMNet(PreReluBackbone(), NUM_CLASSES, ATTRS, branches=RAMNet.stage_branches("ram"),
                   region_fc_dims=(12, 12))
    assert model.attr.feat_dim == 512
    dropouts = [m for m in model.attr.fc.modules() if isinstance(m, nn.Dropout)]
    assert all(d.p == 0 for d in dropouts)
    model.train()
    first = torch.randn(4, model.first_dim)
    f1, f2 = model.attr(first)[0], model.attr(first)[0]
    torch.testing.assert_close(f1, f2)  # no dropout in training either
    assert (f1 >= 0).all()
    with_drop = RAMNet(PreReluBackbone(), NUM_CLASSES, ATTRS, branches=RAMNet.stage_branches("ram"),
                       region_fc_dims=(12,), attr_dropout=0.5).train()
    assert not torch.equal(with_drop.attr(first)[0], with_drop.attr(first)[0])


def test_new_layer_init_switch():
    xavier, kaiming = net("ram"), net("ram", new_layer_init="kaiming")
    w = xavier.conv.classifier.weight
    assert w.abs().max() <= (3 / w.shape[1]) ** 0.5 and w.abs().max() > 0.01  # Caffe xavier
    assert kaiming.conv.classifier.weight.std() < 0.002  # N(0, 0.001)


def test_caffe_multipliers_as_param_groups():
    from vreid_lightning.optim import multiplier_groups

    model = net("ram")
    groups = multiplier_groups(model, base_lr=1e-3, base_wd=5e-4, bias_lr_mult=2, bias_decay_mult=0,
                               lr_mult={"attr": 10, "region.fc.t.0": 1, "region": 10})
    by_param = {id(p): g for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(by_param) == len(names)  # every parameter in exactly one group

    def lr_wd(name):
        g = by_param[id(names[name])]
        return round(g["lr"], 9), round(g["weight_decay"], 9)

    assert lr_wd("backbone.body.0.weight") == (1e-3, 5e-4)
    assert lr_wd("backbone.body.0.bias") == (2e-3, 0.0)           # bias: lr x2, no decay
    assert lr_wd("attr.fc.0.weight") == (1e-2, 5e-4)              # new layer x10
    assert lr_wd("attr.fc.0.bias") == (2e-2, 0.0)                 # x10 x2
    assert lr_wd("region.fc.t.1.0.weight") == (1e-2, 5e-4)
    assert lr_wd("region.fc.t.0.0.weight") == (1e-3, 5e-4)        # the longest prefix wins
    assert lr_wd("bn.norm.weight") == lr_wd("bn.norm.bias") == (1e-3, 5e-4)  # Caffe Scale: default param 1/1
    with pytest.raises(ConfigError, match="lr_mult.*no_such"):
        multiplier_groups(model, 1e-3, lr_mult={"no_such": 10})


def test_module_param_groups_follow_model_optim():
    from vreid_lightning.methods.ram import RAMModule

    kw = dict(num_classes=NUM_CLASSES, attribute_classes=ATTRS, stage="bn",
              backbone={"name": "vgg_cnn_m", "width_mult": 0.0625},
              net={"_target_": "vreid_lightning.models.ram.RAMNet", "region_fc_dims": [8, 8], "attr_dim": 8}, loss={"_target_": "vreid_lightning.losses.ram.RAMLoss"},
              optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "weight_decay": 1e-4})
    plain = RAMModule(**kw, optim={"bias_lr_mult": 1, "bias_decay_mult": 1, "lr_mult": []})
    assert not isinstance(plain.param_groups(), list)  # no multiplier: the plain parameter list
    mod = RAMModule(**kw, optim={"bias_lr_mult": 2, "bias_decay_mult": 0, "lr_mult": [["bn.fc2", 10]]})
    opt = mod.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    lrs = {(round(g["lr"], 6), round(g["weight_decay"], 8)) for g in opt.param_groups}
    assert lrs == {(0.01, 1e-4), (0.02, 0.0), (0.1, 1e-4), (0.2, 0.0)}
    with pytest.raises(ConfigError, match="model.optim.lr_mult"):
        RAMModule(**kw, optim={"lr_mult": [["bn.fc2"]]})


RAM_STEPS = ["baseline", "bn", "bn_r", "ram"]  # sec. 3.3: each step starts from the previous step's weights


@pytest.mark.parametrize("name,stages", [
    ("ram_veri", RAM_STEPS), ("ram_vehicleid", RAM_STEPS), ("ram_synthetic", RAM_STEPS),
    # the authors run each step as their train net then their finetune net (train_veri.sh)
    ("ram_veri_authors", [s for step in RAM_STEPS for s in (step, f"{step}_finetune")]),
])
def test_ram_experiments_run_the_steps_in_order(name: str, stages: list[str], tmp_path):
    from tests.conftest import compose

    assert list(compose([f"+experiment={name}"], tmp_path).stages) == stages
