"""RNN-HA: the RNN-based Hierarchical Attention model (Wei et al., ACCV 2018), as a pure ``nn.Module``.

Three coupled modules (sec. 3, Fig. 2):

- Representation module: the conv layers of a backbone (VGG_CNN_M_1024, or ResNet-50), no FC layers;
  the last conv map is an array of ``h x w`` descriptors ``f_(i,j)`` in ``R^d`` (sec. 3.1).
- Hierarchical module: a GRU (Eqs. 1-4, hidden size 1024, zero initial state). ``t = 1``: ``x1`` = global
  average pooling (GAP) of the descriptors -> ``o1`` -> model-level classifier. ``t = 2``: ``x2`` -> ``o2``
  -> vehicle-level classifier (sec. 3.2).
- Attention module: a transformer network (FC -> ReLU -> FC) maps ``o1`` to the guidance ``w`` in ``R^d``;
  ``s = softplus(w^T f)`` (Eq. 6), ``a = (s + eps) / sum(s + eps)`` (Eq. 7), ``x2 = GAP(a * f)`` (Eqs. 8-9).

The ablations of Tables 1-2 are switches of the same class: ``hierarchy="fc"`` is FC-HA (w/o RNN), plain
FC layers instead of the GRU, attention kept; ``attention=False`` is RNN-H w/o attention, ``x2 = x1``.
The retrieval feature is ``o2`` (sec. 4.2; the evaluation L2-normalises it and ranks by cosine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.models.backbones.base import take_head
from vreid_lightning.models.layers import Classifier

__all__ = [
    "HIERARCHIES",
    "GRU_BIASES",
    "PARAM_INITS",
    "ATTENDED_POOLS",
    "GRUStep",
    "FCStep",
    "GuidedAttention",
    "RNNHAOutput",
    "RNNHANet",
    "attention_weights",
    "detach_head",
]

HIERARCHIES: tuple[str, ...] = ("rnn", "fc")
GRU_BIASES: tuple[int, ...] = (1, 2)
PARAM_INITS: tuple[str, ...] = ("suite", "authors")
ATTENDED_POOLS: tuple[str, ...] = ("mean", "sum")


def detach_head(backbone: nn.Module) -> nn.Module:
    """Keep only the conv trunk of a backbone: its FC head (VGG fc6/fc7), if any, is taken off and dropped.

    RNN-HA sec. 3.1: "we discard fully connected layers, and utilize convolutional activations".
    """
    take_head(backbone)
    return backbone


class GRUStep(nn.Module):
    """One GRU update exactly as RNN-HA Eqs. 1-4 (Cho et al. 2014)::

        z = sigmoid(W_xz x + W_hz h + b_z)
        r = sigmoid(W_xr x + W_hr h + b_r)
        n = tanh(W_xg x + r * (W_hg h) + b_g)
        h' = (1 - z) * n + z * h

    ``x2h`` holds ``[W_xz; W_xr; W_xg]`` with the biases ``[b_z; b_r; b_g]``; ``h2h`` holds
    ``[W_hz; W_hr; W_hg]``, without bias for ``biases=1`` (the paper). ``biases=2`` gives ``h2h`` its own
    bias, as ``torch.nn.GRU`` has (``b_ih`` and ``b_hh``, the authors' ``nn.GRU``,
    main_GRU_fusion_attention.py:47): ``b_hz``, ``b_hr`` only add to ``b_z``, ``b_r``, but ``b_hg`` sits
    inside the reset product, ``n = tanh(W_xg x + b_g + r * (W_hg h + b_hg))``. Init as torch's GRU:
    ``U(-1/sqrt(H), 1/sqrt(H))``. The gate order here is (z, r, g); ``nn.GRU`` stores (r, z, n).

    Args:
        input_size: width of ``x`` (the descriptor width ``d``).
        hidden_size: width of ``h`` (1024, RNN-HA sec. 4.2).
        biases: 1 (Eqs. 1-4: one bias per gate) or 2 (``nn.GRU``: input and hidden biases).
    """

    def __init__(self, input_size: int, hidden_size: int, biases: int = 1) -> None:
        super().__init__()
        if biases not in GRU_BIASES:
            raise ValueError(f"GRUStep: gru_biases must be one of {GRU_BIASES}, got {biases!r}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.biases = int(biases)
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size, bias=biases == 2)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """``h_t`` from ``x_t`` (B, input_size) and ``h_{t-1}`` (B, hidden_size)."""
        xz, xr, xg = self.x2h(x).chunk(3, dim=1)
        hz, hr, hg = self.h2h(h).chunk(3, dim=1)
        z = torch.sigmoid(xz + hz)
        r = torch.sigmoid(xr + hr)
        n = torch.tanh(xg + r * hg)
        return (1 - z) * n + z * h


class FCStep(nn.Module):
    """FC-HA's "traditional fully-connected layer as direct transformation" for one time step:
    ``o_t = act(W_t x_t + b_t)``, no recurrence (the previous output is not used).

    Args:
        input_size: width of ``x_t``.
        hidden_size: width of ``o_t`` (the GRU's 1024, so both variants give the same feature width).
        activation: ``relu`` or ``tanh`` (the paper does not say; ``tanh`` matches the GRU's range).
    """

    def __init__(self, input_size: int, hidden_size: int, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"FCStep: fc_activation must be 'relu' or 'tanh', got {activation!r}")
        self.fc = nn.Linear(input_size, hidden_size)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)
        self.act = nn.ReLU() if activation == "relu" else nn.Tanh()

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """``o_t`` from ``x_t``; ``h`` is accepted for the GRU's signature and ignored."""
        return self.act(self.fc(x))


def attention_weights(scores: Tensor, eps: float = 0.1) -> Tensor:
    """RNN-HA Eq. 7: ``a = (s + eps) / sum_(i,j) (s + eps)`` per image.

    Args:
        scores: ``(B, h, w)`` non-negative scores ``s`` (softplus outputs, Eq. 6).
        eps: the constant of Eq. 7 (0.1 in the paper); must be > 0 so the sum is never 0.

    Returns:
        ``(B, h, w)`` weights in ``[0, 1]`` summing to 1 over each image.
    """
    if scores.dim() != 3:
        raise ValueError(f"attention_weights: scores must be (B, h, w), got shape {tuple(scores.shape)}")
    if not eps > 0:
        raise ValueError(f"attention_weights: eps must be > 0, got {eps}")
    shifted = scores + eps
    return shifted / shifted.flatten(1).sum(dim=1)[:, None, None]


class GuidedAttention(nn.Module):
    """The attention module (RNN-HA sec. 3.2, Eqs. 6-9).

    ``w = transformer(o1)`` (two FC layers with a ReLU between), ``s = softplus(w^T f)``,
    ``a = (s + eps) / sum(s + eps)``, ``x2 = mean_(i,j)(a * f)`` (Eq. 9 keeps the ``1/(h w)`` of global
    average pooling on top of the normalised weights; ``pool="sum"`` drops it, an attention-weighted sum).

    Args:
        hidden_size: width of ``o1``.
        channels: descriptor width ``d``.
        transformer_dims: hidden widths of the transformer before its ``d``-wide output (authors' code:
            one hidden layer of 1024).
        eps: Eq. 7's constant (0.1).
        pool: ``mean`` (Eq. 9) or ``sum``.
    """

    def __init__(self, hidden_size: int, channels: int, transformer_dims: Sequence[int] = (1024,),
                 eps: float = 0.1, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ATTENDED_POOLS:
            raise ValueError(f"GuidedAttention: attended_pool must be one of {ATTENDED_POOLS}, got {pool!r}")
        if not eps > 0:
            raise ValueError(f"GuidedAttention: eps must be > 0, got {eps}")
        if len(transformer_dims) < 1:
            raise ValueError("GuidedAttention: transformer_dims needs at least one hidden width "
                             "(the paper's transformer has two FC layers with a ReLU between)")
        layers: list[nn.Module] = []
        width = int(hidden_size)
        for dim in transformer_dims:
            layers += [nn.Linear(width, int(dim)), nn.ReLU(inplace=True)]
            width = int(dim)
        layers.append(nn.Linear(width, int(channels)))
        self.transformer = nn.Sequential(*layers)
        for m in self.transformer:
            if isinstance(m, nn.Linear):  # authors' code: kaiming-normal init
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.eps = float(eps)
        self.pool = pool

    def scores(self, f: Tensor, w: Tensor) -> Tensor:
        """Eq. 6: ``s_(i,j) = softplus(w^T f_(i,j))``, ``(B, h, w)``."""
        return F.softplus(torch.einsum("bchw,bc->bhw", f, w))

    def forward(self, f: Tensor, o1: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x2 (B, d), a (B, h, w))`` from the descriptors ``f`` (B, d, h, w) and ``o1``."""
        w = self.transformer(o1)
        a = attention_weights(self.scores(f, w), self.eps)
        attended = f * a[:, None]  # Eq. 8
        x2 = attended.flatten(2).sum(dim=2)
        if self.pool == "mean":  # Eq. 9: global average pooling of the attended descriptors
            x2 = x2 / (f.shape[2] * f.shape[3])
        return x2, a


@dataclass
class RNNHAOutput:
    """Named outputs of :class:`RNNHANet`.

    Attributes:
        features: ``{"o2": (B, hidden)}``, the retrieval feature.
        logits: ``{"model": (B, C_model), "vehicle": (B, C_vehicle)}``.
        o1: the output at ``t = 1`` (B, hidden).
        attention: ``a`` (B, h, w) of Eq. 7, or None without the attention module.
    """

    features: dict[str, Tensor]
    logits: dict[str, Tensor]
    o1: Tensor
    attention: Tensor | None = None


class RNNHANet(nn.Module):
    """RNN-HA and its two ablations (Tables 1-2) in one network.

    Args:
        backbone: conv trunk with ``out_channels`` (its FC head, if any, is dropped: sec. 3.1).
        num_classes: vehicle-level classes (training identities).
        num_model_classes: model-level classes (VeRi types, VehicleID car models).
        hidden_size: GRU hidden units (1024, sec. 4.2).
        hierarchy: ``rnn`` (RNN-HA's GRU) or ``fc`` (FC-HA w/o RNN).
        attention: True (RNN-HA, FC-HA) or False (RNN-H w/o attention: ``x2 = x1``, both GAP).
        transformer_dims: hidden widths of the attention transformer (authors' code: [1024]).
        eps: Eq. 7's constant (0.1).
        attended_pool: ``mean`` (Eq. 9) or ``sum``.
        repeat_x1: the routing of the authors' VGG code (main_GRU_fusion_attention.py:62-64,82): the
            sequence ``[x1, x1]`` goes through the GRU from ``h0``; the model-level classifier and the
            attention read the first output ``o1``, and step 2 starts from the state after both
            (``h = GRU(x1, o1)``, ``o2 = GRU(x2, h)``). Off by default (the paper: one step per level).
        gru_biases: 1 (Eqs. 1-4) or 2 (``nn.GRU``'s input and hidden biases, the authors' code).
        param_init: ``suite`` (classifiers N(0, 0.001) with zero bias, transformer kaiming-normal with zero
            bias) or ``authors`` (main:48-56: kaiming-normal weights of W1-W4, torch's default bias init).
        fc_activation: FC-HA's activation (``relu`` or ``tanh``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        num_model_classes: int,
        hidden_size: int = 1024,
        hierarchy: str = "rnn",
        attention: bool = True,
        transformer_dims: Sequence[int] = (1024,),
        eps: float = 0.1,
        attended_pool: str = "mean",
        repeat_x1: bool = False,
        fc_activation: str = "relu",
        gru_biases: int = 1,
        param_init: str = "suite",
    ) -> None:
        super().__init__()
        if hierarchy not in HIERARCHIES:
            raise ValueError(f"RNNHANet: hierarchy must be one of {HIERARCHIES}, got {hierarchy!r}")
        if repeat_x1 and hierarchy != "rnn":
            raise ValueError("RNNHANet: repeat_x1 feeds x1 twice into the GRU; it has no meaning with hierarchy='fc'")
        if gru_biases != 1 and hierarchy != "rnn":
            raise ValueError("RNNHANet: gru_biases sets the GRU's biases; no meaning with hierarchy='fc'")
        if num_classes < 1 or num_model_classes < 1:
            raise ValueError(f"RNNHANet: class counts must be >= 1, got vehicle={num_classes}, model={num_model_classes}")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("RNNHANet: backbone must expose 'out_channels' (channels of its last conv map)")
        self.backbone = detach_head(backbone)
        d = int(backbone.out_channels)
        self.channels = d
        self.hidden_size = int(hidden_size)
        self.hierarchy = hierarchy
        self.repeat_x1 = bool(repeat_x1)
        if hierarchy == "rnn":
            self.gru = GRUStep(d, hidden_size, gru_biases)  # one GRU, weights shared over the time steps
            self.step1: nn.Module | None = None
            self.step2: nn.Module | None = None
        else:
            self.gru = None
            self.step1 = FCStep(d, hidden_size, fc_activation)
            self.step2 = FCStep(d, hidden_size, fc_activation)
        self.attention = GuidedAttention(hidden_size, d, transformer_dims, eps, attended_pool) if attention else None
        self.model_classifier = Classifier(hidden_size, num_model_classes)
        self.vehicle_classifier = Classifier(hidden_size, num_classes)
        if param_init not in PARAM_INITS:
            raise ValueError(f"RNNHANet: param_init must be one of {PARAM_INITS}, got {param_init!r}")
        if param_init == "authors":  # main:48-56: init.kaiming_normal(W.weight); the biases keep nn.Linear's init
            heads = [self.model_classifier, self.vehicle_classifier]
            if self.attention is not None:
                heads += [m for m in self.attention.transformer if isinstance(m, nn.Linear)]
            for layer in heads:
                nn.init.kaiming_normal_(layer.weight)
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound)

    @property
    def feature_dims(self) -> dict[str, int]:
        """Width of each retrieval feature."""
        return {"o2": self.hidden_size}

    def _step(self, t: int, x: Tensor, h: Tensor) -> Tensor:
        if self.gru is not None:
            return self.gru(x, h)
        return (self.step1 if t == 1 else self.step2)(x, h)

    def forward(self, x: Tensor) -> RNNHAOutput:
        f = self.backbone(x)                               # (B, d, h, w) descriptors
        x1 = f.mean(dim=(2, 3))                            # image embedding vector (GAP)
        h0 = f.new_zeros(f.shape[0], self.hidden_size)     # zero initial state (sec. 4.2)
        o1 = self._step(1, x1, h0)
        # authors' VGG code: x1 a second time; o1 stays the first output, step 2 starts after both
        h1 = self._step(1, x1, o1) if self.repeat_x1 else o1
        if self.attention is not None:
            x2, a = self.attention(f, o1)                  # attention embedding vector
        else:
            x2, a = x1, None                               # RNN-H w/o attention: both GAP
        o2 = self._step(2, x2, h1)
        return RNNHAOutput(
            features={"o2": o2},
            logits={"model": self.model_classifier(o1), "vehicle": self.vehicle_classifier(o2)},
            o1=o1,
            attention=a,
        )
