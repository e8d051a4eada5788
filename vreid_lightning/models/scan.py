"""SCAN: the Spatial and Channel Attention Network (Teng, Liu, Zhang, Huang, PCM 2018), as ``nn.Module``s.

The attention module reads a conv feature map ``f`` (B, c, h, w) and returns it refined (sec. 3, Fig. 3):

- Spatial Attention Branch (SAB, sec. 3.1): channel-wise mean (Eq. 1) -> 3x3 conv, stride 2 + ReLU ->
  upsampling back to h x w -> 1x1 conv + ReLU ("an adaptive attention scale") -> deconvolution ->
  sigmoid mapped into [0.5, 1]: one weight per position, ``(B, 1, h, w)``.
- Channel Attention Branch (CAB, sec. 3.2): global average pooling (Eq. 2) -> FC c/r + ReLU -> FC c +
  ReLU -> 1x1 convolution scaling -> deconvolution to a weight map of the input's size, ``(B, c, h, w)``.
- Fusion (Fig. 3): ``f * S * C`` by default (``fusion="product"``); ``"mean"`` gives ``f * (S + C) / 2``
  and ``"residual"`` ``f + f * S * C``.

The paper gives no layer widths beyond the FCs, but Table 4 pins the module at 0.033M parameters for
c = 512, r = 16: the two FCs alone hold 33,312, so every conv/deconv is single-channel (1 -> 1). The
CAB's 1x1 convolution is a learned scale and shift shared by all channels (it "scales the output"),
and its deconvolution, which turns the (c, 1, 1) weights into a (c, h, w) map, is the parameter-free
broadcast (a Caffe Deconvolution with a fixed all-ones kernel); in total 33,336 parameters.

Initialisation (the paper is silent): both branches start near uniform weights, so SCAN at step 0
is the plain network scaled by a constant (SAB: averaging 3x3 kernel, unit 1x1 scale, zero deconv,
so S = 0.75 everywhere; CAB: fc2 ~ N(0, 0.01) with bias 1, unit scale, so C ~= 1). A single-channel
conv followed by a ReLU that starts negative everywhere would be dead for good; this start avoids it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.models.layers import init_fc

__all__ = ["BRANCH_CHOICES", "FUSION_CHOICES", "SCANOutput", "SpatialAttention", "ChannelAttention", "SCAN"]

BRANCH_CHOICES = ("both", "spatial", "channel")
FUSION_CHOICES = ("product", "mean", "residual")
CHANNEL_GATES = ("relu", "sigmoid")


@dataclass
class SCANOutput:
    """What the attention module returns.

    Attributes:
        refined: the refined feature map ``(B, c, h, w)``.
        spatial: SAB weights ``(B, 1, h, w)`` in ``[low, 1]``, or None when the branch is off.
        channel: CAB weights ``(B, c, 1, 1)`` (the map before its broadcast to h x w), or None.
    """

    refined: Tensor
    spatial: Tensor | None
    channel: Tensor | None


class SpatialAttention(nn.Module):
    """The Spatial Attention Branch (SCAN sec. 3.1, Fig. 3(a)).

    Args:
        kernel_size: the strided conv's kernel (sec. 3.1: 3x3).
        stride: its stride (sec. 3.1: 2).
        deconv_kernel: kernel of the final deconvolution (stride 1, same-size output; paper unstated: 3).
        upsample: interpolation mode of the up-sampling layer (paper unstated: ``"bilinear"``).
        low: lower end of the output range (sec. 3.1: "between 0.5 and 1").
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, deconv_kernel: int = 3, upsample: str = "bilinear",
                 low: float = 0.5) -> None:
        super().__init__()
        if deconv_kernel % 2 != 1 or kernel_size % 2 != 1:
            raise ConfigError(f"model.net.spatial: kernel sizes must be odd, got kernel_size={kernel_size}, "
                              f"deconv_kernel={deconv_kernel}")
        if not 0.0 <= low < 1.0:
            raise ConfigError(f"model.net.spatial.low must be in [0, 1), got {low}")
        if upsample not in ("bilinear", "nearest"):
            raise ConfigError(f"model.net.spatial.upsample={upsample!r}; expected 'bilinear' or 'nearest'")
        self.conv = nn.Conv2d(1, 1, kernel_size, stride=stride, padding=kernel_size // 2)
        self.scale = nn.Conv2d(1, 1, 1)
        self.deconv = nn.ConvTranspose2d(1, 1, deconv_kernel, stride=1, padding=deconv_kernel // 2)
        self.upsample = upsample
        self.low = float(low)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Near-uniform start: averaging conv, unit scale, zero deconv (output ``(1 + low) / 2``)."""
        nn.init.constant_(self.conv.weight, 1.0 / self.conv.weight.numel())
        nn.init.zeros_(self.conv.bias)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.scale.bias)
        nn.init.zeros_(self.deconv.weight)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, f: Tensor) -> Tensor:
        """``(B, c, h, w)`` -> spatial weights ``(B, 1, h, w)`` in ``[low, 1]``."""
        s = f.mean(dim=1, keepdim=True)  # Eq. 1: channel-wise average
        x = F.relu(self.conv(s))
        kw = {"align_corners": False} if self.upsample == "bilinear" else {}
        x = F.interpolate(x, size=f.shape[-2:], mode=self.upsample, **kw)
        x = F.relu(self.scale(x))
        x = self.deconv(x)
        return self.low + (1.0 - self.low) * torch.sigmoid(x)


class ChannelAttention(nn.Module):
    """The Channel Attention Branch (SCAN sec. 3.2, Fig. 3(b)).

    Args:
        channels: c, the input map's channels.
        reduction: r; the first FC has ``c // r`` outputs (sec. 3.2: r = 16).
        gate: activation after the second FC: ``"relu"`` (Fig. 3(b)) or ``"sigmoid"`` (SE-Net's).
    """

    def __init__(self, channels: int, reduction: int = 16, gate: str = "relu") -> None:
        super().__init__()
        if reduction < 1:
            raise ConfigError(f"model.net.reduction must be >= 1, got {reduction}")
        if channels < reduction:
            raise ConfigError(f"model.net.reduction: the feature map has {channels} channels, fewer than "
                              f"r={reduction}, so the CAB's first FC (c/r outputs) would be empty; "
                              f"lower model.net.reduction or widen the backbone")
        if gate not in CHANNEL_GATES:
            raise ConfigError(f"model.net.channel_gate={gate!r}; expected one of {list(CHANNEL_GATES)}")
        self.channels = int(channels)
        self.fc1 = init_fc(nn.Linear(channels, channels // reduction))
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.scale = nn.Conv2d(1, 1, 1)  # one learned scale + shift, shared by the channels
        self.gate = gate
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Near-uniform start: fc2 ~ N(0, 0.01) with bias 1 (sigmoid gate: bias 0), unit scale."""
        init_fc(self.fc1)
        nn.init.normal_(self.fc2.weight, 0.0, 0.01)
        nn.init.constant_(self.fc2.bias, 1.0 if self.gate == "relu" else 0.0)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.scale.bias)

    def forward(self, f: Tensor) -> Tensor:
        """``(B, c, h, w)`` -> channel weights ``(B, c, 1, 1)`` (broadcast to h x w when fused)."""
        b, c = f.shape[:2]
        if c != self.channels:
            raise ValueError(f"ChannelAttention: built for {self.channels} channels, got a map of shape {tuple(f.shape)}")
        z = f.mean(dim=(2, 3))  # Eq. 2: global average pooling
        z = F.relu(self.fc1(z))
        z = self.fc2(z)
        z = F.relu(z) if self.gate == "relu" else torch.sigmoid(z)
        return self.scale(z.view(b, 1, c, 1)).view(b, c, 1, 1)


class SCAN(nn.Module):
    """The SCAN attention module: SAB and/or CAB weights fused with the feature map.

    Args:
        channels: c of the input map.
        reduction: CAB's r (sec. 3.2: 16).
        branches: ``"both"`` (the paper), ``"spatial"`` (SAB only) or ``"channel"`` (CAB only).
        fusion: ``"product"`` (Fig. 3: f * S * C), ``"mean"`` (f * (S + C) / 2) or ``"residual"``
            (f + f * S * C). With one branch, the missing weight is 1 (``mean``: the present one alone).
        channel_gate: CAB's activation after the second FC (``"relu"``, Fig. 3(b); or ``"sigmoid"``).
        spatial: keyword arguments of :class:`SpatialAttention`.
    """

    def __init__(self, channels: int, reduction: int = 16, branches: str = "both", fusion: str = "product",
                 channel_gate: str = "relu", spatial: dict | None = None) -> None:
        super().__init__()
        if branches not in BRANCH_CHOICES:
            raise ConfigError(f"model.net.branches={branches!r}; expected one of {list(BRANCH_CHOICES)}")
        if fusion not in FUSION_CHOICES:
            raise ConfigError(f"model.net.fusion={fusion!r}; expected one of {list(FUSION_CHOICES)}")
        self.branches = branches
        self.fusion = fusion
        self.spatial = SpatialAttention(**dict(spatial or {})) if branches in ("both", "spatial") else None
        self.channel = ChannelAttention(channels, reduction, channel_gate) if branches in ("both", "channel") else None

    def forward(self, f: Tensor) -> SCANOutput:
        """Refine ``f`` (B, c, h, w); returns the refined map and both branches' weights."""
        if f.dim() != 4:
            raise ValueError(f"SCAN: expected a feature map (B, c, h, w), got shape {tuple(f.shape)}")
        s = self.spatial(f) if self.spatial is not None else None
        c = self.channel(f) if self.channel is not None else None
        weights = [w for w in (s, c) if w is not None]
        if self.fusion == "mean":
            w = sum(weights) / len(weights)
        else:
            w = weights[0] if len(weights) == 1 else s * c  # broadcast: (B,1,h,w) * (B,c,1,1) -> (B,c,h,w)
        refined = f * w if self.fusion != "residual" else f + f * w
        return SCANOutput(refined=refined, spatial=s, channel=c)
