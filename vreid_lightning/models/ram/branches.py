"""RAM's branches (RAM sec. 2.1-2.3): the global (Conv / BN) branch, the Region branch, the Attribute branch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from vreid_lightning.models.layers import Classifier, FCBlock, fc_stack
from vreid_lightning.models.ram.regions import region_bounds, region_names

__all__ = ["GlobalBranch", "RegionBranch", "AttributeBranch", "distinct_region_bounds"]


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
        """Region rows for a map of the given height; a map too short for distinct regions is refused."""
        return distinct_region_bounds(height, self.num_regions, self.overlap)

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
