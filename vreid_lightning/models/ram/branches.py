"""RAM's branches (RAM sec. 2.1-2.3): the global (Conv / BN) branch, the Region branch, the Attribute branch.

Every classifier reads its feature through ``cls_input``: the raw feature (``"raw"``) or ``10 * x / ||x||``
(``"l2x10"``, NormalizationL2 + Power scale 10 before every classifier of the authors' fine-tuning nets,
train_RAM_finetune.prototxt:245-261). The feature itself (what retrieval uses) is never normalised here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from vreid_lightning.models.layers import Classifier, FCBlock, L2Scale, fc_stack
from vreid_lightning.models.ram.regions import region_bounds, region_names

__all__ = ["CLASSIFIER_INPUTS", "classifier_input", "GlobalBranch", "RegionBranch", "AttributeBranch",
           "distinct_region_bounds"]

CLASSIFIER_INPUTS = ("raw", "l2x10")


def classifier_input(mode: str) -> nn.Module:
    """The (parameter-free) module in front of a classifier: identity or ``10 * x / ||x||``."""
    if mode not in CLASSIFIER_INPUTS:
        raise ValueError(f"classifier_input must be one of {CLASSIFIER_INPUTS}, got {mode!r}")
    return nn.Identity() if mode == "raw" else L2Scale(10.0)


class GlobalBranch(nn.Module):
    """``[norm] -> pool (+flatten) -> fc1 -> fc2 -> feature -> ID classifier`` (Conv / BN branch).

    Args:
        pool: module mapping ``(B, C, H, W)`` to a flat ``(B, D)`` vector.
        fc1: first FC block (fc6); its output also feeds the Attribute branch.
        fc2: the remaining FC blocks (fc7); may be an empty ``nn.Sequential``.
        feat_dim: width of the output of ``fc2``.
        num_classes: number of training identities.
        norm: optional module applied to the map before pooling (``BatchNorm2d`` for the BN branch).
        cls_input: ``"raw"`` or ``"l2x10"`` (see the module docstring).
    """

    def __init__(
        self,
        pool: nn.Module,
        fc1: nn.Module,
        fc2: nn.Module,
        feat_dim: int,
        num_classes: int,
        norm: nn.Module | None = None,
        cls_input: str = "raw",
    ):
        super().__init__()
        self.norm = norm if norm is not None else nn.Identity()
        self.pool = pool
        self.fc1 = fc1
        self.fc2 = fc2
        self.feat_dim = feat_dim
        self.cls_input = classifier_input(cls_input)
        self.classifier = Classifier(feat_dim, num_classes)

    def forward(self, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(first FC output, feature, ID logits)``."""
        first = self.fc1(self.pool(self.norm(m)))
        feat = self.fc2(first)
        return first, feat, self.classifier(self.cls_input(feat))


def distinct_region_bounds(height: int, k: int, overlap: float) -> list[tuple[int, int]]:
    """:func:`region_bounds`, refusing (one ConfigError naming the keys) a map too short for ``k`` distinct regions."""
    b = region_bounds(height, k, overlap)
    if len(set(b)) < len(b):
        from vreid_lightning.errors import ConfigError

        need = next(h for h in range(height + 1, 10 * k + 10) if len(set(region_bounds(h, k, overlap))) == k)
        raise ConfigError(
            f"data.image_size gives a conv map of {height} row(s): model.net.num_regions={k} regions "
            f"(model.net.region_overlap={overlap:.4g}) would be only {len(set(b))} distinct region(s) {b}; they need "
            f"a map of at least {need} rows (RAM sec. 3.2: 13 rows at 224x224): raise data.image_size or "
            f"lower model.net.num_regions")
    return b


class RegionBranch(nn.Module):
    """``k`` overlapping horizontal regions of a map, each (pooled,) FC'd and classified (sec. 2.2).

    Two ways to place the regions:

    - ``rows=None``: rows from :func:`region_bounds` on the actual map height at each call (the paper's
      7-row regions with a 4-row overlap on the 13-row conv5 map), so any input size works;
    - ``rows=[(start, end), ...]``: fixed rows (the authors' code: pool5 rows 0-2, 1-4, 3-5,
      train_RAM_finetune.prototxt:439-465, as Caffe Slice points 3 and 1, 5).

    With ``pool_size`` each region is adaptively pooled to ``(rows, cols)`` (fixed FC input width); with
    ``pool_size=None`` it is flattened as it is (the authors' regions of the already pooled pool5), which
    needs ``map_size`` to size each region's FC.

    Args:
        in_channels: channels of the map.
        num_classes: number of training identities.
        num_regions: ``k``.
        overlap: neighbour overlap fraction (see :func:`region_bounds`); unused with ``rows``.
        pool: ``"max"`` or ``"avg"``.
        pool_size: ``(rows, cols)`` each region is pooled to, or ``None`` (no pooling).
        fc_dims: widths of each region's FC blocks; the feature is the last one's output.
        dropout: dropout of the FC blocks.
        rows: fixed region rows, top to bottom, or ``None``.
        map_size: ``(H, W)`` of the map the regions are cut from (needed with ``pool_size=None``).
        parts_classifier: add an ID classifier on the concatenated region features (the authors'
            ``id-parts``, train_RAM_finetune.prototxt:775-830), logits key ``"parts"``.
        cls_input: ``"raw"`` or ``"l2x10"`` in front of every classifier (``l2x10`` of the concatenation
            for the parts classifier, as ``concat-features-parts-l2``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_regions: int = 3,
        overlap: float = 4 / 7,
        pool: str = "max",
        pool_size: tuple[int, int] | None = (3, 6),
        fc_dims: Sequence[int] = (1024,),
        dropout: float = 0.5,
        rows: Sequence[Sequence[int]] | None = None,
        map_size: tuple[int, int] | None = None,
        parts_classifier: bool = False,
        cls_input: str = "raw",
    ):
        super().__init__()
        region_bounds(max(num_regions, 1), num_regions, overlap)  # validates k and overlap
        if pool not in ("max", "avg"):
            raise ValueError(f"RegionBranch: region_pool must be 'max' or 'avg', got {pool!r}")
        if pool_size is not None and (len(pool_size) != 2 or min(pool_size) < 1):
            raise ValueError(f"RegionBranch: region_pool_size must be (rows, cols) >= 1 or null, got {pool_size!r}")
        self.rows: tuple[tuple[int, int], ...] | None = None
        if rows is not None:
            fixed = tuple((int(r[0]), int(r[1])) for r in rows)
            if len(fixed) != num_regions or any(len(r) != 2 for r in rows) or any(not 0 <= a < b for a, b in fixed):
                raise ValueError(f"RegionBranch: region_rows must be {num_regions} (start, end) pairs with "
                                 f"0 <= start < end (num_regions={num_regions}), got {rows!r}")
            self.rows = fixed
        if pool_size is None and map_size is None:
            raise ValueError("RegionBranch: region_pool_size=null (regions flattened as they are) needs the map size")
        self.num_regions = num_regions
        self.overlap = float(overlap)
        self.names = region_names(num_regions)
        if pool_size is None:
            h, w = int(map_size[0]), int(map_size[1])
            bounds = self.bounds(h)
            if bounds[-1][1] > h:
                raise ValueError(f"RegionBranch: region_rows {list(self.rows or [])} exceed the {h}-row map")
            self.pool: nn.Module = nn.Flatten(1)
            widths = [in_channels * (e - s) * w for s, e in bounds]
        else:
            pool_cls = nn.AdaptiveMaxPool2d if pool == "max" else nn.AdaptiveAvgPool2d
            self.pool = nn.Sequential(pool_cls(tuple(pool_size)), nn.Flatten(1))
            widths = [in_channels * pool_size[0] * pool_size[1]] * num_regions
        self.feat_dim = int(fc_dims[-1]) if len(fc_dims) else widths[0]
        if not len(fc_dims) and len(set(widths)) > 1:
            raise ValueError("RegionBranch: regions of different heights need region_fc_dims (a common width)")
        self.fc = nn.ModuleDict({n: fc_stack(wd, fc_dims, dropout) for n, wd in zip(self.names, widths)})
        self.cls_input = classifier_input(cls_input)
        self.classifier = nn.ModuleDict({n: Classifier(self.feat_dim, num_classes) for n in self.names})
        self.parts = Classifier(self.feat_dim * num_regions, num_classes) if parts_classifier else None

    def bounds(self, height: int) -> list[tuple[int, int]]:
        """Region rows for a map of the given height (the fixed ``rows``, or from the overlap; a map too short for
        distinct regions is refused)."""
        if self.rows is not None:
            return list(self.rows)
        return distinct_region_bounds(height, self.num_regions, self.overlap)

    def forward(self, m: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return ``({suffix: feature}, {suffix: logits})`` for every region, top to bottom (and ``"parts"``)."""
        feats, logits = {}, {}
        bounds = self.bounds(m.shape[2])
        if bounds[-1][1] > m.shape[2]:
            raise ValueError(f"RegionBranch: region rows {bounds} do not fit a map of {m.shape[2]} rows")
        for name, (start, end) in zip(self.names, bounds):
            f = self.fc[name](self.pool(m[:, :, start:end]))
            feats[name] = f
            logits[name] = self.classifier[name](self.cls_input(f))
        if self.parts is not None:
            logits["parts"] = self.parts(self.cls_input(torch.cat([feats[n] for n in self.names], dim=1)))
        return feats, logits


class AttributeBranch(nn.Module):
    """fc6 of the Conv branch -> one FC layer -> ``f_a`` -> one classifier per attribute (sec. 2.3).

    Args:
        in_features: width of the Conv branch's first FC output.
        attr_dim: width of ``f_a``.
        attribute_classes: attribute name -> number of classes.
        dropout: dropout of the FC block (0: none, as the authors' att-branch-fc).
        cls_input: ``"raw"`` or ``"l2x10"`` in front of the attribute classifiers.
    """

    def __init__(self, in_features: int, attr_dim: int, attribute_classes: Mapping[str, int], dropout: float = 0.5,
                 cls_input: str = "raw"):
        super().__init__()
        self.fc = FCBlock(in_features, attr_dim, dropout)
        self.feat_dim = attr_dim
        self.cls_input = classifier_input(cls_input)
        self.names = tuple(attribute_classes)
        # keyed "attr_<name>": a bare name such as "type" would clash with nn.Module attributes
        self.classifier = nn.ModuleDict({f"attr_{n}": Classifier(attr_dim, c) for n, c in attribute_classes.items()})

    def forward(self, first: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(f_a, {attribute: logits})``."""
        f_a = self.fc(first)
        x = self.cls_input(f_a)
        return f_a, {n: self.classifier[f"attr_{n}"](x) for n in self.names}
