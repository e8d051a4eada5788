"""RAM's overlapping horizontal regions of the map M (RAM sec. 2.2, 3.2): bounds and names."""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = ["region_bounds", "region_names"]


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
