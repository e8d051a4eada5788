"""RAMNet: the shared conv layers (the backbone) and the four branches assembled (RAM sec. 2, Fig. 2)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.models.backbones.base import take_head
from vreid_lightning.models.layers import FCBlock, fc_stack, reset_linear_layers
from vreid_lightning.models.ram.branches import CLASSIFIER_INPUTS, AttributeBranch, GlobalBranch, RegionBranch

__all__ = ["BRANCHES", "STAGES", "STAGE_BRANCHES", "BN_INPUTS", "REGION_SOURCES", "RAMOutput", "RAMNet", "BNReLU"]

BN_INPUTS = ("post_relu", "pre_relu")
REGION_SOURCES = ("conv5", "pool5")

BRANCHES: tuple[str, ...] = ("conv", "bn", "region", "attr")
STAGES: tuple[str, ...] = ("baseline", "bn", "bn_r", "ram")  # RAM sec. 3.3, steps 1-4
STAGE_BRANCHES: dict[str, tuple[str, ...]] = {
    "baseline": ("conv",),
    "bn": ("conv", "bn"),
    "bn_r": ("conv", "bn", "region"),
    "ram": ("conv", "bn", "region", "attr"),
}


@dataclass
class RAMOutput:
    """Named outputs of :class:`RAMNet` (only the active branches' entries are present).

    Attributes:
        features: ``f_c``, ``f_b``, ``f_rt``/``f_rm``/``f_rb`` (``f_r1..f_rk``), ``f_a``.
        logits: ``conv``, ``bn``, ``region_t``/``region_m``/``region_b`` (``region_1..k``),
            ``parts`` (with the parts classifier), ``attr_<name>``.
    """

    features: dict[str, Tensor] = field(default_factory=dict)
    logits: dict[str, Tensor] = field(default_factory=dict)


def _split_vgg_head(head: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, int, int]:
    """Cut ``pool5 -> Flatten -> fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> Dropout`` at its Linears."""
    linears = [i for i, mod in enumerate(head) if isinstance(mod, nn.Linear)]
    if len(linears) < 2:
        raise ValueError(
            "RAMNet: backbone.head must be nn.Sequential(pool5, Flatten, fc6, ReLU, Dropout, fc7, ReLU, "
            f"Dropout) with at least two nn.Linear layers, got {len(linears)} in {head!r}"
        )
    items = list(head.named_children())  # keeps the head's names (fc6, relu6, ...) in the state dict
    i1, i2 = linears[0], linears[1]
    first_dim = items[i1][1].out_features
    feat_dim = items[linears[-1]][1].out_features
    pool, fc1, fc2 = (nn.Sequential(OrderedDict(part)) for part in (items[:i1], items[i1:i2], items[i2:]))
    return pool, fc1, fc2, first_dim, feat_dim


class BNReLU(nn.BatchNorm2d):
    """BatchNorm (with its affine, = Caffe BatchNorm + Scale) then ReLU: the authors' BN branch on the
    pre-ReLU conv5 (train_RAM_finetune.prototxt:295-315). Same state-dict keys as ``BatchNorm2d``."""

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return F.relu(super().forward(x))


def _classifier_inputs(value: str | Mapping[str, str]) -> dict[str, str]:
    """``classifier_input`` as one mode for every branch, or a mapping branch -> mode."""
    if isinstance(value, str):
        modes = {b: value for b in BRANCHES}
    else:
        modes = {str(k): str(v) for k, v in dict(value).items()}
        missing, unknown = [b for b in BRANCHES if b not in modes], [k for k in modes if k not in BRANCHES]
        if missing or unknown:
            raise ConfigError(f"model.net.classifier_input: expected a mode for each of {list(BRANCHES)}, "
                              f"missing {missing}, unknown {unknown}")
    bad = {k: v for k, v in modes.items() if v not in CLASSIFIER_INPUTS}
    if bad:
        raise ConfigError(f"model.net.classifier_input: {bad}; each must be one of {list(CLASSIFIER_INPUTS)}")
    return modes


def _int_tuple(values: Iterable[int], name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"RAMNet: {name} must be a sequence of ints, got {values!r}") from err


class RAMNet(nn.Module):
    """The Region-Aware deep Model (RAM sec. 2, Fig. 2).

    Conv branch: when the backbone has a VGG ``head`` (``pool5 -> fc6 -> fc7``), the Conv branch IS that
    head (pretrained fc6/fc7 and its pool5); the backbone hands it over (``take_head``) into ``self.conv`` and ``backbone.head``
    becomes ``None`` so every parameter has one name (build one backbone per RAMNet). ``fc_dims`` and
    ``pool_size`` then do not apply. Without a head the Conv branch is an adaptive max-pool to
    ``pool_size`` and new FC blocks of widths ``fc_dims``.

    BN branch: ``BatchNorm2d(M)`` (``bn_input="post_relu"``, the paper) or BatchNorm + ReLU on the pre-ReLU
    conv5 (``"pre_relu"``, the authors' code), then a copy of the Conv branch's pool and FC blocks. The paper
    is silent on their initial weights: ``bn_fc_init="xavier"`` (the authors') initialises them fresh,
    ``"copy"`` starts them as a copy of the Conv branch's FC weights (here at construction, and again in
    :func:`load_previous_stage` when the branch is added to a trained previous stage).

    Args:
        backbone: module with ``backbone(x) -> M`` (B, C, H, W), ``out_channels`` and ``head``
            (VGG ``nn.Sequential`` or ``None``).
        num_classes: number of training identities.
        attribute_classes: attribute name -> number of classes (VeRi: colour, type; VehicleID:
            model, colour). Required when ``"attr"`` is active.
        branches: active branches among ``conv``, ``bn``, ``region``, ``attr`` (``conv`` always).
        num_regions: ``k`` regions (3, RAM sec. 2.2).
        region_overlap: neighbour overlap fraction (4 of 7 rows, RAM sec. 3.2).
        region_pool: ``"max"`` or ``"avg"`` pooling of each region.
        region_pool_size: ``(rows, cols)`` each region is pooled to (3x6: 7x13 regions through a
            3x3/2 pool as in VGG_CNN_M's pool5).
        region_fc_dims: widths of each region's FC blocks; the region feature is the last one's output.
        fc_dims: Conv/BN FC widths when the backbone has no head (fc6, fc7 = 4096, VGG_CNN_M).
        attr_dim: width of ``f_a``.
        dropout: dropout after every FC layer (0.5, as VGG).
        pool_size: Conv/BN pooled map size when the backbone has no head (6x6, RAM sec. 2.1).
        bn_fc_init: ``"xavier"`` (fresh BN-branch FCs, Caffe xavier) or ``"copy"`` (from the Conv branch).
        classifier_input: ``"raw"`` / ``"l2x10"`` for every classifier, or a mapping branch -> mode.
        bn_input: ``"post_relu"`` (BN on M) or ``"pre_relu"`` (BN + ReLU on the pre-ReLU conv5; the
            backbone must offer ``forward_pre_relu``).
        region_source: ``"conv5"`` (regions of M) or ``"pool5"`` (regions of the Conv branch's pooled map).
        region_rows: fixed region rows ``[[start, end], ...]`` on the region source, or ``None``
            (:func:`region_bounds` with ``region_overlap``).
        region_parts_classifier: an extra ID classifier on the concatenated region features.
        attr_dropout: dropout of the attribute FC (``None``: ``dropout``).
        new_layer_init: ``"xavier"`` (Caffe's filler, zero bias) or ``"kaiming"`` (Kaiming FCs, N(0, 0.001)
            classifiers) for every layer the network creates (not the backbone's head).
        bn_momentum: momentum of the BN branch's running statistics (``None``: PyTorch's 0.1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        attribute_classes: Mapping[str, int] | None = None,
        branches: Sequence[str] = BRANCHES,
        num_regions: int = 3,  # RAM sec. 2.2
        region_overlap: float = 4 / 7,  # RAM sec. 3.2: 7-row regions sharing 4 rows on a 13-row map
        region_pool: str = "max",
        region_pool_size: Sequence[int] = (3, 6),
        region_fc_dims: Sequence[int] = (1024, 1024),  # authors' code: fc-part-N, fc-fc-part-N
        fc_dims: Sequence[int] | None = None,  # no VGG head: (4096, 4096) as VGG_CNN_M fc6/fc7
        attr_dim: int = 512,  # authors' code: att-branch-fc 512
        dropout: float = 0.5,
        pool_size: int | None = None,  # no VGG head: 6, RAM sec. 2.1: M pooled to 6x6x512
        bn_fc_init: str = "xavier",
        classifier_input: str | Mapping[str, str] = "l2x10",
        bn_input: str = "post_relu",
        region_source: str = "conv5",
        region_rows: Sequence[Sequence[int]] | None = None,
        region_parts_classifier: bool = False,
        attr_dropout: float | None = 0.0,  # authors' code: no dropout after att-branch-fc
        new_layer_init: str = "xavier",
        bn_momentum: float | None = None,
    ):
        super().__init__()
        branches = tuple(str(b) for b in branches)
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown:
            raise ValueError(f"RAMNet: unknown branches {unknown}; expected a subset of {BRANCHES}")
        if "conv" not in branches:
            raise ValueError(f"RAMNet: branches must include 'conv' (BN and Attribute build on it), got {branches}")
        if int(num_classes) < 1:
            raise ValueError(f"RAMNet: num_classes must be >= 1, got {num_classes}")
        attribute_classes = {str(k): int(v) for k, v in (attribute_classes or {}).items()}
        for name, count in attribute_classes.items():
            if not name or "." in name or count < 1:
                raise ValueError(
                    f"RAMNet: attribute_classes entry {name!r}: {count} must be a non-empty name without '.' "
                    "and a class count >= 1"
                )
        if "attr" in branches and not attribute_classes:
            raise ValueError("RAMNet: the 'attr' branch needs attribute_classes, e.g. {'colour': 10, 'type': 9}")
        head = getattr(backbone, "head", None)
        if head is not None:  # a key with no effect is an error, not a silent no-op
            for key, value in (("fc_dims", fc_dims), ("pool_size", pool_size)):
                if value is not None:
                    raise ConfigError(
                        f"model.net.{key}={list(value) if isinstance(value, (list, tuple)) else value}: this backbone "
                        f"has a VGG head (pool5 -> fc6 -> fc7), which is the Conv branch, so {key} has no effect; "
                        f"remove it (it applies to backbones without a head)")
        fc_dims = _int_tuple((4096, 4096) if fc_dims is None else fc_dims, "fc_dims")
        pool_size = 6 if pool_size is None else int(pool_size)
        if not fc_dims:
            raise ValueError("RAMNet: fc_dims must hold at least one width (fc6)")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("RAMNet: backbone must expose 'out_channels' (channels of its last conv map)")

        if bn_fc_init not in ("xavier", "copy"):
            raise ConfigError(f"model.net.bn_fc_init={bn_fc_init!r}; expected 'xavier' or 'copy'")
        if bn_input not in BN_INPUTS:
            raise ConfigError(f"model.net.bn_input={bn_input!r}; expected one of {list(BN_INPUTS)}")
        if region_source not in REGION_SOURCES:
            raise ConfigError(f"model.net.region_source={region_source!r}; expected one of {list(REGION_SOURCES)}")
        if new_layer_init not in ("xavier", "kaiming"):
            raise ConfigError(f"model.net.new_layer_init={new_layer_init!r}; expected 'xavier' or 'kaiming'")
        if bn_input == "pre_relu" and not hasattr(backbone, "forward_pre_relu"):
            raise ConfigError(f"model.net.bn_input=pre_relu needs a backbone with forward_pre_relu (the conv map "
                              f"before its last ReLU); {type(backbone).__name__} has none")
        cls_inputs = _classifier_inputs(classifier_input)
        self.branches = tuple(b for b in BRANCHES if b in branches)
        self.num_classes = int(num_classes)
        self.attribute_classes = attribute_classes
        self.bn_fc_init = bn_fc_init
        self.bn_input = bn_input
        self.region_source = region_source
        self.backbone = backbone
        in_channels = int(backbone.out_channels)

        head = take_head(backbone)  # the backbone hands its head over (raises if another model took it)
        if head is not None:
            pool, fc1, fc2, first_dim, feat_dim = _split_vgg_head(head)
            head_dim = getattr(backbone, "head_dim", feat_dim)
            if int(head_dim) != feat_dim:
                raise ValueError(f"RAMNet: backbone.head_dim={head_dim} but the head's last Linear gives {feat_dim}")
        else:
            pool = nn.Sequential(nn.AdaptiveMaxPool2d(int(pool_size)), nn.Flatten(1))
            fc1 = FCBlock(in_channels * int(pool_size) ** 2, fc_dims[0], dropout)
            fc2 = fc_stack(fc_dims[0], fc_dims[1:], dropout)
            first_dim, feat_dim = fc_dims[0], fc_dims[-1]
        self.conv = GlobalBranch(pool, fc1, fc2, feat_dim, self.num_classes, cls_input=cls_inputs["conv"])
        self.first_dim = first_dim
        fresh: list[nn.Module] = [self.conv.classifier] + ([] if head is not None else [fc1, fc2])

        self.bn: GlobalBranch | None = None
        if "bn" in self.branches:
            bn_fc1, bn_fc2 = copy.deepcopy(fc1), copy.deepcopy(fc2)
            if self.bn_fc_init != "copy":
                reset_linear_layers(bn_fc1, "xavier")
                reset_linear_layers(bn_fc2, "xavier")
            norm_cls = BNReLU if bn_input == "pre_relu" else nn.BatchNorm2d
            norm = norm_cls(in_channels, momentum=0.1 if bn_momentum is None else float(bn_momentum))
            self.bn = GlobalBranch(copy.deepcopy(pool), bn_fc1, bn_fc2, feat_dim, self.num_classes, norm=norm,
                                   cls_input=cls_inputs["bn"])
            fresh.append(self.bn.classifier)
        self.region: RegionBranch | None = None
        if "region" in self.branches:
            map_size = None
            if region_source == "pool5":
                if not (isinstance(pool, nn.Sequential) and len(pool) == 2 and isinstance(pool[1], nn.Flatten)):
                    raise ConfigError("model.net.region_source=pool5: the Conv branch's pool must be (pool5, Flatten)")
                side = int(getattr(backbone, "head_pool_size", pool_size) if head is not None else pool_size)
                map_size = (side, side)
            rps = None if region_pool_size is None else _int_tuple(region_pool_size, "region_pool_size")
            if rps is None and map_size is None:
                raise ConfigError("model.net.region_pool_size=null (no region pooling) needs region_source=pool5")
            self.region = RegionBranch(
                in_channels,
                self.num_classes,
                int(num_regions),
                float(region_overlap),
                str(region_pool),
                rps,
                _int_tuple(region_fc_dims, "region_fc_dims"),
                dropout,
                rows=region_rows,
                map_size=map_size,
                parts_classifier=bool(region_parts_classifier),
                cls_input=cls_inputs["region"],
            )
            fresh.append(self.region)
        self.attr: AttributeBranch | None = None
        if "attr" in self.branches:
            a_drop = dropout if attr_dropout is None else float(attr_dropout)
            self.attr = AttributeBranch(first_dim, int(attr_dim), attribute_classes, a_drop,
                                        cls_input=cls_inputs["attr"])
            fresh.append(self.attr)
        if new_layer_init == "xavier":  # the authors' fillers (xavier weights, constant 0 bias) on every new layer
            for module in fresh:
                reset_linear_layers(module, "xavier")

    @property
    def bn_init_from_conv(self) -> bool:
        """Whether the BN branch's FCs start as a copy of the Conv branch's (``bn_fc_init="copy"``)."""
        return self.bn_fc_init == "copy"

    @staticmethod
    def stage_branches(stage: str) -> tuple[str, ...]:
        """Branches of a training stage: ``baseline``, ``bn``, ``bn_r`` or ``ram`` (RAM sec. 3.3)."""
        if stage not in STAGE_BRANCHES:
            raise ValueError(f"RAMNet: unknown stage {stage!r}; expected one of {STAGES}")
        return STAGE_BRANCHES[stage]

    @property
    def feature_dims(self) -> dict[str, int]:
        """Width of every feature the active branches produce, by feature name."""
        dims = {"f_c": self.conv.feat_dim}
        if self.bn is not None:
            dims["f_b"] = self.bn.feat_dim
        if self.region is not None:
            dims.update({f"f_r{n}": self.region.feat_dim for n in self.region.names})
        if self.attr is not None:
            dims["f_a"] = self.attr.feat_dim
        return dims

    def feature_map(self, x: Tensor) -> Tensor:
        """The shared conv map ``M`` (B, C, H, W)."""
        return self.backbone(x)

    def _maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(M, the BN branch's input)``: M itself, or the pre-ReLU conv5 with ``bn_input="pre_relu"``."""
        if self.bn_input == "pre_relu":
            pre = self.backbone.forward_pre_relu(x)
            return F.relu(pre), pre
        m = self.backbone(x)
        return m, m

    def bn_feature_map(self, x: Tensor) -> Tensor:
        """``M_b = BN(M)``, the BN branch's map before pooling (RAM Fig. 3b)."""
        if self.bn is None:
            raise ValueError(f"RAMNet.bn_feature_map: the BN branch is not active (branches={self.branches})")
        return self.bn.norm(self._maps(x)[1])

    def forward(self, x: Tensor) -> RAMOutput:
        """Run all active branches on a batch of images ``(B, 3, H, W)``."""
        m, bn_in = self._maps(x) if self.bn is not None else (self.backbone(x), None)
        out = RAMOutput()
        first, out.features["f_c"], out.logits["conv"] = self.conv(m)
        if self.bn is not None:
            _, out.features["f_b"], out.logits["bn"] = self.bn(bn_in)
        if self.region is not None:
            feats, logits = self.region(self.conv.pool[0](m) if self.region_source == "pool5" else m)
            for name in self.region.names:
                out.features[f"f_r{name}"] = feats[name]
                out.logits[f"region_{name}"] = logits[name]
            if "parts" in logits:
                out.logits["parts"] = logits["parts"]
        if self.attr is not None:
            out.features["f_a"], logits = self.attr(first)
            for name, value in logits.items():
                out.logits[f"attr_{name}"] = value
        return out

    @torch.no_grad()
    def init_bn_from_conv(self) -> dict[str, str]:
        """Copy the Conv branch's FC weights into the BN branch's FCs; return ``{bn_key: conv_key}``."""
        if self.bn is None:
            raise ValueError(f"RAMNet.init_bn_from_conv: the BN branch is not active (branches={self.branches})")
        copied = {}
        for part in ("fc1", "fc2"):
            src, dst = getattr(self.conv, part), getattr(self.bn, part)
            dst.load_state_dict(src.state_dict())
            copied.update({f"bn.{part}.{k}": f"conv.{part}.{k}" for k in src.state_dict()})
        return copied
