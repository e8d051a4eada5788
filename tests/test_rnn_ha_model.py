"""RNN-HA network: Eq. 7 normalisation, Eq. 6 softplus, Eqs. 8-9 pooling, the GRU step against Eqs. 1-4
written out, the ablation switches, paper sizes at 224 and 672 input, ignored model labels, Fig. 4 picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vreid_lightning.models.backbones import build_backbone
from vreid_lightning.models.rnn_ha import GRUStep, GuidedAttention, RNNHANet, attention_weights


class _Trunk(nn.Module):
    """A tiny conv trunk with ``out_channels`` and a VGG-like ``head`` (which RNN-HA must drop)."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.out_channels = c
        self.conv = nn.Conv2d(3, c, 3, stride=4, padding=1)
        self.head = nn.Sequential(nn.Flatten(1), nn.Linear(c, 4))

    def forward(self, x):
        return torch.relu(self.conv(x))


def _net(**kw) -> RNNHANet:
    torch.manual_seed(0)
    return RNNHANet(_Trunk(), num_classes=5, num_model_classes=3, hidden_size=8, transformer_dims=[7], **kw).eval()


# ------------------------------------------------------------------ attention (Eqs. 6-9)
def test_attention_weights_sum_to_one_with_eps_shift():
    s = torch.tensor([[[0.0, 1.0], [2.0, 0.5]]])
    a = attention_weights(s, eps=0.1)
    assert torch.allclose(a.sum(dim=(1, 2)), torch.ones(1))
    expected = (s + 0.1) / (s + 0.1).sum()
    assert torch.allclose(a, expected)
    # all-zero scores: eps keeps the sum positive and gives uniform weights 1/(h w)
    assert torch.allclose(attention_weights(torch.zeros(2, 3, 4), 0.1), torch.full((2, 3, 4), 1 / 12))
    # a larger eps flattens the weights towards uniform
    assert a.max() > attention_weights(s, eps=10.0).max()
    with pytest.raises(ValueError, match="eps must be > 0"):
        attention_weights(s, eps=0.0)


def test_scores_are_softplus_of_w_dot_f_and_x2_is_the_average_pool_of_a_f():
    torch.manual_seed(1)
    att = GuidedAttention(hidden_size=5, channels=4, transformer_dims=[6], eps=0.1, pool="mean")
    f, o1 = torch.randn(2, 4, 3, 2), torch.randn(2, 5)
    x2, a = att(f, o1)
    w = att.transformer[2](torch.relu(att.transformer[0](o1)))  # two FC layers with a ReLU between
    for b in range(2):
        s = torch.empty(3, 2)
        for i in range(3):
            for j in range(2):
                s[i, j] = torch.log(1 + torch.exp(w[b] @ f[b, :, i, j]))  # Eq. 6, g = ln(1 + exp(x))
        a_ref = (s + 0.1) / (s + 0.1).sum()  # Eq. 7
        assert torch.allclose(a[b], a_ref, atol=1e-6)
        x2_ref = sum(a_ref[i, j] * f[b, :, i, j] for i in range(3) for j in range(2)) / (3 * 2)  # Eqs. 8-9
        assert torch.allclose(x2[b], x2_ref, atol=1e-6)
    att.pool = "sum"  # without Eq. 9's 1/(h w): h w times larger
    assert torch.allclose(att(f, o1)[0], x2 * 6, atol=1e-6)


def test_gru_step_equals_eqs_1_to_4():
    torch.manual_seed(2)
    cell = GRUStep(4, 3)
    x, h = torch.randn(2, 4), torch.randn(2, 3)
    Wx, bx, Wh = cell.x2h.weight, cell.x2h.bias, cell.h2h.weight
    W_xz, W_xr, W_xg = Wx[:3], Wx[3:6], Wx[6:]
    b_z, b_r, b_g = bx[:3], bx[3:6], bx[6:]
    W_hz, W_hr, W_hg = Wh[:3], Wh[3:6], Wh[6:]
    z = torch.sigmoid(x @ W_xz.T + h @ W_hz.T + b_z)          # Eq. 1
    r = torch.sigmoid(x @ W_xr.T + h @ W_hr.T + b_r)          # Eq. 2
    n = torch.tanh(x @ W_xg.T + r * (h @ W_hg.T) + b_g)       # Eq. 3
    h_new = (1 - z) * n + z * h                               # Eq. 4
    assert torch.allclose(cell(x, h), h_new, atol=1e-6)
    assert cell.h2h.bias is None  # one bias per gate, as in the equations


# ------------------------------------------------------------------ the network and its switches
def test_forward_is_the_two_step_hierarchy_with_zero_initial_state():
    net = _net()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    f = net.backbone(x)
    x1 = f.mean(dim=(2, 3))
    o1 = net.gru(x1, torch.zeros(2, 8))
    x2, a = net.attention(f, o1)
    o2 = net.gru(x2, o1)
    assert torch.allclose(out.o1, o1) and torch.allclose(out.features["o2"], o2)
    assert torch.allclose(out.attention, a)
    assert torch.allclose(out.logits["model"], net.model_classifier(o1))      # L_model from o1
    assert torch.allclose(out.logits["vehicle"], net.vehicle_classifier(o2))  # L_vehicle from o2
    assert net.backbone.head is None  # sec. 3.1: no FC layers
    assert not any(k.startswith("backbone.head") for k in net.state_dict())


def _keys(net: nn.Module) -> set[str]:
    return set(net.state_dict())


def test_fc_ha_replaces_only_the_gru_by_fc_layers():
    full, fc = _net(), _net(hierarchy="fc")
    assert {k.split(".")[0] for k in _keys(full) ^ _keys(fc)} == {"gru", "step1", "step2"}
    x = torch.randn(2, 3, 32, 32)
    out = fc(x)
    f = fc.backbone(x)
    o1 = torch.relu(fc.step1.fc(f.mean(dim=(2, 3))))  # no recurrence: o_t = relu(W_t x_t + b_t)
    x2, _ = fc.attention(f, o1)                       # attention kept, guided by o1
    assert torch.allclose(out.o1, o1)
    assert torch.allclose(out.features["o2"], torch.relu(fc.step2.fc(x2)))
    assert out.attention is not None


def test_rnn_h_without_attention_feeds_the_gap_twice():
    full, noatt = _net(), _net(attention=False)
    assert {k.split(".")[0] for k in _keys(full) ^ _keys(noatt)} == {"attention"}
    x = torch.randn(2, 3, 32, 32)
    out = noatt(x)
    x1 = noatt.backbone(x).mean(dim=(2, 3))
    o1 = noatt.gru(x1, torch.zeros(2, 8))
    assert torch.allclose(out.features["o2"], noatt.gru(x1, o1))  # x2 = x1: both GAP
    assert out.attention is None


def test_every_parameter_gets_a_gradient():
    net = _net().train()
    out = net(torch.randn(4, 3, 32, 32))
    (out.logits["model"].sum() + out.logits["vehicle"].sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("size,cells", [(224, 13), (672, 41)])
def test_paper_sizes_vgg_cnn_m_1024(size: int, cells: int):
    """sec. 4.2: VGG_CNN_M_1024 conv layers (d = 512), GRU 1024; transformer 1024 -> 1024 -> d."""
    torch.manual_seed(0)
    net = RNNHANet(build_backbone("vgg_cnn_m_1024"), num_classes=576, num_model_classes=9).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.attention.shape == (1, cells, cells)
    assert out.features["o2"].shape == (1, 1024) and out.o1.shape == (1, 1024)
    assert out.logits["model"].shape == (1, 9) and out.logits["vehicle"].shape == (1, 576)
    widths = [(m.in_features, m.out_features) for m in net.attention.transformer if isinstance(m, nn.Linear)]
    assert widths == [(1024, 1024), (1024, 512)]
    assert net.gru.x2h.weight.shape == (3 * 1024, 512)
    assert torch.allclose(out.attention.sum(dim=(1, 2)), torch.ones(1), atol=1e-5)


def test_resnet50_trunk_gives_2048_d_descriptors():
    net = RNNHANet(build_backbone("resnet50"), num_classes=10, num_model_classes=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224))
    assert net.channels == 2048 and out.attention.shape == (1, 7, 7)


# ------------------------------------------------------------------ the method's loss and labels
def _module(**kw):
    from vreid_lightning.methods.rnn_ha import RNNHAModule

    torch.manual_seed(0)
    return RNNHAModule(num_classes=5, attribute_classes={"type": 3, "colour": 4},
                       backbone={"name": "vgg_cnn_m_1024", "width_mult": 0.0625, "norm": "bn"},
                       net={"_target_": "vreid_lightning.models.rnn_ha.RNNHANet", "hidden_size": 8, "transformer_dims": [8]}, **kw)


def test_loss_is_l_model_plus_l_vehicle_and_unlabelled_model_is_ignored():
    m = _module()
    x = torch.randn(4, 3, 64, 64)
    pid = torch.tensor([0, 1, 2, 3])
    types = torch.tensor([2, -1, 0, -1])
    m.eval()  # BN in eval mode so a second forward gives the same logits
    total, parts, logits = m.training_loss({"image": x, "pid": pid, "attrs": {"type": types, "colour": pid}})
    out = m.net(x)
    keep = types >= 0
    assert torch.allclose(parts["model"], F.cross_entropy(out.logits["model"][keep], types[keep]))  # labelled only
    assert torch.allclose(parts["vehicle"], F.cross_entropy(out.logits["vehicle"], pid))  # every image
    assert torch.allclose(total, parts["model"] + parts["vehicle"])  # Eq. 5, no weights
    none = torch.full((4,), -1)
    m.zero_grad()
    total, parts, _ = m.training_loss({"image": x, "pid": pid, "attrs": {"type": none, "colour": pid}})
    total.backward()
    assert parts["model"] == 0 and parts["vehicle"] > 0
    assert m.net.model_classifier.weight.grad.abs().sum() == 0  # no model-level signal without labels


def test_missing_model_level_label_names_dataset_and_attribute():
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.methods.rnn_ha import RNNHAModule

    with pytest.raises(ConfigError, match=r"dataset 'veri' has no labelled 'type' attribute"):
        RNNHAModule(num_classes=5, attribute_classes={"colour": 4}, backbone={"name": "vgg_cnn_m_1024"},
                    net={"_target_": "vreid_lightning.models.rnn_ha.RNNHANet"}, model_level="type", dataset="veri")


def test_eval_model_labels_use_the_training_class_numbering():
    from vreid_lightning.methods.rnn_ha import eval_model_labels

    train = np.array([7, 3, -1, 9, 3])  # classes 3 -> 0, 7 -> 1, 9 -> 2
    assert eval_model_labels(train, np.array([9, 3, 5, -1, 7])).tolist() == [2, 0, -1, -1, 1]
    assert eval_model_labels(np.array([-1, -1]), np.array([1, 2])).tolist() == [-1, -1]


def test_model_level_accuracy_counts_only_images_with_a_known_label():
    from vreid_lightning.methods.rnn_ha import model_level_accuracy

    train = np.array([7, 3, 9])                      # classes 3 -> 0, 7 -> 1, 9 -> 2
    logits = torch.tensor([[0.0, 1.0, 0.0],          # predicts 7: right
                           [1.0, 0.0, 0.0],          # predicts 3, label 9: wrong
                           [0.0, 0.0, 1.0],          # label unseen in training (5): not counted
                           [1.0, 0.0, 0.0]])         # unlabelled (-1): not counted
    got = model_level_accuracy(logits, train, np.array([7, 9, 5, -1]))
    assert got == {"model_acc": 0.5, "model_acc_images": 2.0}
    assert model_level_accuracy(logits, train, np.array([-1, -1, 5, 5])) == {}


# ------------------------------------------------------------------ Fig. 4 rank lists
def test_select_queries_successes_then_failures_one_per_identity():
    from vreid_lightning.viz.ranklist import select_queries

    g_ids = np.array([1, 2, 3])
    q_ids = np.array([1, 1, 2, 3, 2, 4])
    ranked = np.array([[0, 1], [0, 1], [0, 1], [2, 0], [1, 0], [-1, -1]])  # rank-1 right: q0, q1, q3, q4
    picked = select_queries(ranked, q_ids, g_ids, successes=2, failures=2)
    assert picked.tolist() == [0, 3, 2]  # ids 1 and 3 succeed; id 2 fails (q2); id 1 is not repeated


def test_false_positives_get_a_thicker_red_frame(tmp_path):
    from PIL import Image

    from vreid_lightning.viz.ranklist import FALSE_POSITIVE_RGB, MATCH_RGB, save_rank_list

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 40), (128, 128, 128)).save(p)
        paths.append(str(p))
    out = save_rank_list(paths[:1], [1], paths, [1, 2, 1], np.array([[0, 1]]), tmp_path / "rl.png", size=50,
                         border=3, false_positive_border=7, legend=False)
    img = Image.open(out).convert("RGB")
    x_match, x_fp = 50 + 8, 50 + 8 + 50
    assert img.getpixel((x_match + 5, 25)) != MATCH_RGB       # inside the 3 px green frame
    assert img.getpixel((x_match + 1, 25)) == MATCH_RGB
    assert img.getpixel((x_fp + 5, 25)) == FALSE_POSITIVE_RGB  # still inside the 7 px red frame
