"""RAM: the Region-Aware deep Model (Liu et al., ICME 2018), as a pure ``nn.Module``.

Shared conv layers (the backbone) give the map ``M``; four branches read it (RAM sec. 2, Fig. 2):

- Conv branch: pool ``M`` to 6x6, two FC layers -> ``f_c``, ID classifier (sec. 2.1).
- BN branch: ``BatchNorm2d(M)`` before the same pooling, two FC layers -> ``f_b``, ID classifier.
- Region branch: ``k`` overlapping horizontal regions of ``M``, each pooled and sent through its own
  FC layers -> ``f_rt``, ``f_rm``, ``f_rb`` (``f_r1..f_rk`` when ``k != 3``), each with its own ID
  classifier (sec. 2.2).
- Attribute branch: the Conv branch's first FC output (fc6) -> one FC layer -> ``f_a``, one classifier
  per attribute (sec. 2.3).

Training is staged (sec. 2.4, 3.3): ``baseline`` (Conv) -> ``bn`` (+BN) -> ``bn_r`` (+Region) -> ``ram``
(+Attribute); :func:`load_previous_stage` carries a trained stage into the next one.
The feature study of Table 1 is :func:`combine_features` over one feature extraction.
"""

from __future__ import annotations

import copy
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.models.layers import Classifier, FCBlock, fc_stack, reset_linear_layers

__all__ = [
    "BRANCHES",
    "STAGES",
    "STAGE_BRANCHES",
    "TABLE1_COMBINATIONS",
    "RAMOutput",
    "RAMNet",
    "GlobalBranch",
    "RegionBranch",
    "AttributeBranch",
    "region_bounds",
    "region_names",
    "load_previous_stage",
    "table1_combinations",
    "combine_features",
]

BRANCHES: tuple[str, ...] = ("conv", "bn", "region", "attr")
STAGES: tuple[str, ...] = ("baseline", "bn", "bn_r", "ram")  # RAM sec. 3.3, steps 1-4
STAGE_BRANCHES: dict[str, tuple[str, ...]] = {
    "baseline": ("conv",),
    "bn": ("conv", "bn"),
    "bn_r": ("conv", "bn", "region"),
    "ram": ("conv", "bn", "region", "attr"),
}
_HEAD_TAKEN = "_ram_head_taken"


# --------------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------------
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@lru_cache(maxsize=256)
def _region_bounds(height: int, k: int, overlap: float) -> tuple[tuple[int, int], ...]:
    h = min(max(_round_half_up(height / (k - (k - 1) * overlap)), 1), height)
    while True:
        if k == 1:
            starts = [0]
        else:
            starts = [_round_half_up(i * (height - h) / (k - 1)) for i in range(k)]
        steps = [b - a for a, b in zip(starts, starts[1:])]
        covered = all(s <= h for s in steps)
        overlapping = overlap == 0 or all(s < h for s in steps)
        if (covered and overlapping) or h == height:
            return tuple((s, s + h) for s in starts)
        h += 1


def region_bounds(height: int, k: int, overlap: float) -> list[tuple[int, int]]:
    """Rows of ``k`` equal-height, evenly spaced, overlapping horizontal regions of a map.

    The region height is ``h = round(H / (k - (k - 1) * overlap))`` clamped to ``[1, H]``; starts
    are evenly spaced from ``0`` to ``H - h`` (rounded half up), so the regions are ordered top to
    bottom and the first starts at row 0 and the last ends at row ``H``. When rounding would leave
    rows uncovered (or, with ``overlap > 0``, neighbours that merely touch), ``h`` grows by the fewest
    rows that avoid it. ``H=13, k=3, overlap=4/7`` gives ``[(0, 7), (3, 10), (6, 13)]``: 7-row regions
    whose neighbours share 4 rows (RAM sec. 3.2).

    Args:
        height: map height ``H`` (rows).
        k: number of regions (``k=1`` gives the whole map).
        overlap: fraction of a region shared with its neighbour, in ``[0, 1)``.

    Returns:
        ``[(start, end), ...]`` with ``start`` inclusive and ``end`` exclusive, top to bottom.
    """
    if int(height) != height or height < 1:
        raise ValueError(f"region_bounds: height must be a positive int, got {height!r}")
    if int(k) != k or k < 1:
        raise ValueError(f"region_bounds: k (number of regions) must be an int >= 1, got {k!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"region_bounds: overlap must be in [0, 1), got {overlap!r}")
    return list(_region_bounds(int(height), int(k), float(overlap)))


def region_names(k: int) -> tuple[str, ...]:
    """Region suffixes: ``("t", "m", "b")`` for the paper's ``k=3``, else ``("1", ..., "k")``."""
    if k < 1:
        raise ValueError(f"region_names: k must be >= 1, got {k}")
    return ("t", "m", "b") if k == 3 else tuple(str(i) for i in range(1, k + 1))


# --------------------------------------------------------------------------------------------------
# Branches
# --------------------------------------------------------------------------------------------------
class GlobalBranch(nn.Module):
    """``[norm] -> pool (+flatten) -> fc1 -> fc2 -> feature -> ID classifier`` (Conv / BN branch).

    Args:
        pool: module mapping ``(B, C, H, W)`` to a flat ``(B, D)`` vector.
        fc1: first FC block (fc6); its output also feeds the Attribute branch.
        fc2: the remaining FC blocks (fc7); may be an empty ``nn.Sequential``.
        feat_dim: width of the output of ``fc2``.
        num_classes: number of training identities.
        norm: optional module applied to the map before pooling (``BatchNorm2d`` for the BN branch).
    """

    def __init__(
        self,
        pool: nn.Module,
        fc1: nn.Module,
        fc2: nn.Module,
        feat_dim: int,
        num_classes: int,
        norm: nn.Module | None = None,
    ):
        super().__init__()
        self.norm = norm if norm is not None else nn.Identity()
        self.pool = pool
        self.fc1 = fc1
        self.fc2 = fc2
        self.feat_dim = feat_dim
        self.classifier = Classifier(feat_dim, num_classes)

    def forward(self, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(first FC output, feature, ID logits)``."""
        first = self.fc1(self.pool(self.norm(m)))
        feat = self.fc2(first)
        return first, feat, self.classifier(feat)


class RegionBranch(nn.Module):
    """``k`` overlapping horizontal regions of ``M``, each pooled, FC'd and classified (sec. 2.2).

    Region rows come from :func:`region_bounds` on the actual map height at each call, so any input
    size works; the pooling is adaptive to ``pool_size`` so the FC input width is fixed.

    Args:
        in_channels: channels of ``M``.
        num_classes: number of training identities.
        num_regions: ``k``.
        overlap: neighbour overlap fraction (see :func:`region_bounds`).
        pool: ``"max"`` or ``"avg"``.
        pool_size: ``(rows, cols)`` each region is pooled to.
        fc_dims: widths of each region's FC blocks.
        dropout: dropout of the FC blocks.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_regions: int = 3,
        overlap: float = 4 / 7,
        pool: str = "max",
        pool_size: tuple[int, int] = (3, 6),
        fc_dims: Sequence[int] = (1024,),
        dropout: float = 0.5,
    ):
        super().__init__()
        region_bounds(max(num_regions, 1), num_regions, overlap)  # validates k and overlap
        if pool not in ("max", "avg"):
            raise ValueError(f"RegionBranch: region_pool must be 'max' or 'avg', got {pool!r}")
        if len(pool_size) != 2 or min(pool_size) < 1:
            raise ValueError(f"RegionBranch: region_pool_size must be (rows, cols) >= 1, got {pool_size!r}")
        self.num_regions = num_regions
        self.overlap = float(overlap)
        self.names = region_names(num_regions)
        pool_cls = nn.AdaptiveMaxPool2d if pool == "max" else nn.AdaptiveAvgPool2d
        self.pool = nn.Sequential(pool_cls(tuple(pool_size)), nn.Flatten(1))
        in_features = in_channels * pool_size[0] * pool_size[1]
        self.feat_dim = int(fc_dims[-1]) if len(fc_dims) else in_features
        self.fc = nn.ModuleDict({n: fc_stack(in_features, fc_dims, dropout) for n in self.names})
        self.classifier = nn.ModuleDict({n: Classifier(self.feat_dim, num_classes) for n in self.names})

    def bounds(self, height: int) -> list[tuple[int, int]]:
        """Region rows for a map of the given height."""
        return region_bounds(height, self.num_regions, self.overlap)

    def forward(self, m: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return ``({suffix: feature}, {suffix: logits})`` for every region, top to bottom."""
        feats, logits = {}, {}
        for name, (start, end) in zip(self.names, self.bounds(m.shape[2])):
            f = self.fc[name](self.pool(m[:, :, start:end]))
            feats[name] = f
            logits[name] = self.classifier[name](f)
        return feats, logits


class AttributeBranch(nn.Module):
    """fc6 of the Conv branch -> one FC layer -> ``f_a`` -> one classifier per attribute (sec. 2.3).

    Args:
        in_features: width of the Conv branch's first FC output.
        attr_dim: width of ``f_a``.
        attribute_classes: attribute name -> number of classes.
        dropout: dropout of the FC block.
    """

    def __init__(self, in_features: int, attr_dim: int, attribute_classes: Mapping[str, int], dropout: float = 0.5):
        super().__init__()
        self.fc = FCBlock(in_features, attr_dim, dropout)
        self.feat_dim = attr_dim
        self.names = tuple(attribute_classes)
        # keyed "attr_<name>": a bare name such as "type" would clash with nn.Module attributes
        self.classifier = nn.ModuleDict({f"attr_{n}": Classifier(attr_dim, c) for n, c in attribute_classes.items()})

    def forward(self, first: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(f_a, {attribute: logits})``."""
        f_a = self.fc(first)
        return f_a, {n: self.classifier[f"attr_{n}"](f_a) for n in self.names}


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
@dataclass
class RAMOutput:
    """Named outputs of :class:`RAMNet` (only the active branches' entries are present).

    Attributes:
        features: ``f_c``, ``f_b``, ``f_rt``/``f_rm``/``f_rb`` (``f_r1..f_rk``), ``f_a``.
        logits: ``conv``, ``bn``, ``region_t``/``region_m``/``region_b`` (``region_1..k``),
            ``attr_<name>``.
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


def _int_tuple(values: Iterable[int], name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"RAMNet: {name} must be a sequence of ints, got {values!r}") from err


class RAMNet(nn.Module):
    """The Region-Aware deep Model (RAM sec. 2, Fig. 2).

    Conv branch: when the backbone has a VGG ``head`` (``pool5 -> fc6 -> fc7``), the Conv branch IS that
    head (pretrained fc6/fc7 and its pool5); the head moves into ``self.conv`` and ``backbone.head``
    becomes ``None`` so every parameter has one name (build one backbone per RAMNet). ``fc_dims`` and
    ``pool_size`` then do not apply. Without a head the Conv branch is an adaptive max-pool to
    ``pool_size`` and new FC blocks of widths ``fc_dims``.

    BN branch: ``BatchNorm2d(M)``, then a copy of the Conv branch's pool and FC blocks. The paper is
    silent on their initial weights; with ``bn_init_from_conv`` (default) they start as a copy of the
    Conv branch's FC weights (here at construction, and again in :func:`load_previous_stage` when
    the branch is added to a trained previous stage), else freshly initialised.

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
        region_fc_dims: widths of each region's FC blocks (1024, the authors' released Caffe code).
        fc_dims: Conv/BN FC widths when the backbone has no head (fc6, fc7 = 4096, VGG_CNN_M).
        attr_dim: width of ``f_a`` (1024).
        dropout: dropout after every FC layer (0.5, as VGG).
        pool_size: Conv/BN pooled map size when the backbone has no head (6x6, RAM sec. 2.1).
        bn_init_from_conv: initialise the BN branch's FCs from the Conv branch's.
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
        region_fc_dims: Sequence[int] = (1024,),  # authors' released Caffe code
        fc_dims: Sequence[int] = (4096, 4096),  # VGG_CNN_M fc6/fc7
        attr_dim: int = 1024,
        dropout: float = 0.5,
        pool_size: int = 6,  # RAM sec. 2.1: M pooled to 6x6x512
        bn_init_from_conv: bool = True,
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
        fc_dims = _int_tuple(fc_dims, "fc_dims")
        if not fc_dims:
            raise ValueError("RAMNet: fc_dims must hold at least one width (fc6)")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("RAMNet: backbone must expose 'out_channels' (channels of its last conv map)")

        self.branches = tuple(b for b in BRANCHES if b in branches)
        self.num_classes = int(num_classes)
        self.attribute_classes = attribute_classes
        self.bn_init_from_conv = bool(bn_init_from_conv)
        self.backbone = backbone
        in_channels = int(backbone.out_channels)

        head = getattr(backbone, "head", None)
        if head is None and getattr(backbone, _HEAD_TAKEN, False):
            raise ValueError(
                "RAMNet: this backbone's VGG head already belongs to another RAMNet; build a fresh backbone "
                "per model (carry trained weights with load_previous_stage)"
            )
        if head is not None:
            pool, fc1, fc2, first_dim, feat_dim = _split_vgg_head(head)
            head_dim = getattr(backbone, "head_dim", feat_dim)
            if int(head_dim) != feat_dim:
                raise ValueError(f"RAMNet: backbone.head_dim={head_dim} but the head's last Linear gives {feat_dim}")
            backbone.head = None
            setattr(backbone, _HEAD_TAKEN, True)
        else:
            pool = nn.Sequential(nn.AdaptiveMaxPool2d(int(pool_size)), nn.Flatten(1))
            fc1 = FCBlock(in_channels * int(pool_size) ** 2, fc_dims[0], dropout)
            fc2 = fc_stack(fc_dims[0], fc_dims[1:], dropout)
            first_dim, feat_dim = fc_dims[0], fc_dims[-1]
        self.conv = GlobalBranch(pool, fc1, fc2, feat_dim, self.num_classes)
        self.first_dim = first_dim

        self.bn: GlobalBranch | None = None
        if "bn" in self.branches:
            bn_fc1, bn_fc2 = copy.deepcopy(fc1), copy.deepcopy(fc2)
            if not self.bn_init_from_conv:
                reset_linear_layers(bn_fc1)
                reset_linear_layers(bn_fc2)
            self.bn = GlobalBranch(
                copy.deepcopy(pool), bn_fc1, bn_fc2, feat_dim, self.num_classes, norm=nn.BatchNorm2d(in_channels)
            )
        self.region: RegionBranch | None = None
        if "region" in self.branches:
            self.region = RegionBranch(
                in_channels,
                self.num_classes,
                int(num_regions),
                float(region_overlap),
                str(region_pool),
                _int_tuple(region_pool_size, "region_pool_size"),
                _int_tuple(region_fc_dims, "region_fc_dims"),
                dropout,
            )
        self.attr: AttributeBranch | None = None
        if "attr" in self.branches:
            self.attr = AttributeBranch(first_dim, int(attr_dim), attribute_classes, dropout)

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

    def bn_feature_map(self, x: Tensor) -> Tensor:
        """``M_b = BN(M)``, the BN branch's map before pooling (RAM Fig. 3b)."""
        if self.bn is None:
            raise ValueError(f"RAMNet.bn_feature_map: the BN branch is not active (branches={self.branches})")
        return self.bn.norm(self.backbone(x))

    def forward(self, x: Tensor) -> RAMOutput:
        """Run all active branches on a batch of images ``(B, 3, H, W)``."""
        m = self.backbone(x)
        out = RAMOutput()
        first, out.features["f_c"], out.logits["conv"] = self.conv(m)
        if self.bn is not None:
            _, out.features["f_b"], out.logits["bn"] = self.bn(m)
        if self.region is not None:
            feats, logits = self.region(m)
            for name in self.region.names:
                out.features[f"f_r{name}"] = feats[name]
                out.logits[f"region_{name}"] = logits[name]
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


def load_previous_stage(
    model: RAMNet, state_dict: Mapping[str, Tensor], prefix: str = "", strict: bool = True
) -> dict[str, list[str] | dict[str, str]]:
    """Carry a trained previous stage into ``model`` (RAM sec. 2.4: branches are added in order).

    Every parameter/buffer of ``model`` whose key is in ``state_dict`` is loaded (shared conv layers and
    the branches both stages have); the others keep their fresh initialisation, except the BN branch's
    FCs, which are copied from the (just loaded) Conv branch when ``model.bn_init_from_conv``.

    Args:
        model: the next stage's network.
        state_dict: the previous stage's ``state_dict()`` (or a Lightning checkpoint's, with ``prefix``).
        prefix: key prefix to strip (e.g. ``"model."``); keys without it are ignored.
        strict: raise when ``state_dict`` holds keys the model does not have (e.g. a later stage).

    Returns:
        ``{"loaded": keys, "new": keys, "copied": {bn_key: conv_key}, "unexpected": keys}``.
    """
    source = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    own = model.state_dict()
    unexpected = [k for k in source if k not in own]
    if strict and unexpected:
        raise ValueError(
            f"load_previous_stage: keys of the previous stage are missing from this model (is it an earlier "
            f"stage, or a different backbone?): {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    for key, value in source.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"load_previous_stage: '{key}' has shape {tuple(value.shape)} in the previous stage but "
                f"{tuple(own[key].shape)} in this model (different num_classes, attributes or dims?)"
            )
    loaded = [k for k in own if k in source]
    if not loaded:
        raise ValueError(
            f"load_previous_stage: no key of the given state_dict (prefix {prefix!r}) matches this model; "
            f"first keys: {list(state_dict)[:5]}"
        )
    new = [k for k in own if k not in source]
    merged = {k: source.get(k, v) for k, v in own.items()}
    model.load_state_dict(merged, strict=True)
    copied: dict[str, str] = {}
    if model.bn is not None and model.bn_init_from_conv:
        bn_fc_keys = [k for k in own if k.startswith(("bn.fc1.", "bn.fc2."))]
        conv_fc_keys = [k for k in own if k.startswith(("conv.fc1.", "conv.fc2."))]
        if all(k in new for k in bn_fc_keys) and all(k in source for k in conv_fc_keys):
            copied = model.init_bn_from_conv()
    return {"loaded": loaded, "new": new, "copied": copied, "unexpected": unexpected}


# --------------------------------------------------------------------------------------------------
# Feature study (RAM Table 1)
# --------------------------------------------------------------------------------------------------
# RAM Table 1 (VeRi): the concatenations evaluated per stage; f_r = [f_rt; f_rm; f_rb].
TABLE1_COMBINATIONS: tuple[str, ...] = (
    "f_c",
    "f_b",
    "f_c+f_b",
    "f_c+f_b+f_rt",
    "f_c+f_b+f_rm",
    "f_c+f_b+f_rb",
    "f_c+f_b+f_r",
    "f_c+f_b+f_r+f_a",
)
_REGION_KEY = re.compile(r"^f_r(t|m|b|\d+)$")
_PART = re.compile(r"^f_(c|b|a|r|r(t|m|b|\d+))$")
_TMB_ORDER = {"t": 0, "m": 1, "b": 2}


def _region_keys(features: Iterable[str]) -> list[str]:
    keys = [k for k in features if _REGION_KEY.match(k)]
    return sorted(keys, key=lambda k: (_TMB_ORDER.get(k[3:], 3), int(k[3:]) if k[3:].isdigit() else 0))


def table1_combinations(region_keys: Sequence[str] = ("f_rt", "f_rm", "f_rb")) -> tuple[str, ...]:
    """Table 1's combinations, with one single-region combination per given region feature."""
    singles = tuple(f"f_c+f_b+{r}" for r in region_keys)
    return ("f_c", "f_b", "f_c+f_b", *singles, "f_c+f_b+f_r", "f_c+f_b+f_r+f_a")


def combine_features(
    features: Mapping[str, Tensor], combos: Sequence[str] | None = None, normalize: str = "l2"
) -> dict[str, Tensor]:
    """Concatenate features into the combinations of RAM Table 1, from one extraction.

    ``"f_r"`` stands for all region features top to bottom. Combinations whose parts are absent (an
    earlier stage) are skipped. Each part (each region feature on its own) is L2-normalised before
    concatenation with ``normalize="l2"`` (as in the authors' code), or left as is with ``"none"``.

    Args:
        features: feature name -> ``(N, D)`` tensor, e.g. :attr:`RAMOutput.features` gathered over a set.
        combos: combination names like ``"f_c+f_b+f_r"``; ``None`` gives Table 1's, with the
            single-region rows generalised to the regions present (``f_r1..f_rk`` when ``k != 3``).
        normalize: ``"l2"`` or ``"none"``.

    Returns:
        combination name -> ``(N, sum of part widths)`` tensor, in the order of ``combos``.
    """
    if normalize not in ("l2", "none"):
        raise ValueError(f"combine_features: normalize must be 'l2' or 'none', got {normalize!r}")
    regions = _region_keys(features)
    if combos is None:
        combos = table1_combinations(regions or ("f_rt", "f_rm", "f_rb"))
    out: dict[str, Tensor] = {}
    for combo in combos:
        tokens = [t.strip() for t in combo.split("+")]
        bad = [t for t in tokens if not _PART.match(t)]
        if bad:
            raise ValueError(
                f"combine_features: combination {combo!r} has unknown parts {bad}; expected f_c, f_b, f_a, f_r "
                "or a region feature (f_rt, f_rm, f_rb, f_r1, ...) joined by '+'"
            )
        keys: list[str] = []
        for token in tokens:
            keys.extend(regions if token == "f_r" else [token])
        if (tokens.count("f_r") and not regions) or any(k not in features for k in keys):
            continue
        parts = [features[k] for k in keys]
        if normalize == "l2":
            parts = [F.normalize(p, p=2, dim=1) for p in parts]
        out[combo] = torch.cat(parts, dim=1)
    return out
