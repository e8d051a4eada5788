"""RAM Table 1's feature study: parse feature combinations and build them from one extraction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from torch import Tensor

__all__ = ["TABLE1_COMBINATIONS", "table1_combinations", "combine_features"]

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
    from vreid_lightning.evaluation.ensemble import concat_features  # the one normalise-and-concatenate

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
        out[combo] = concat_features([features[k] for k in keys], normalize=normalize)
    return out
