"""Post-processing steps that lower mAP: found in a cumulative table or a test run, said next to the step.

A step can hurt: VehicleNet's DBSCAN query expansion (eps 0.5 on 2 - 2 cos, the authors' setting) chains
the queries of a weak model into clusters that mix vehicles (experiments/vehiclenet/README.md measures
it: 22.81 -> 16.31 mAP on the synthetic CityFlow world). The tables say so rather than leave a silent
drop; README "Post-processing that lowers mAP" explains the known causes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KNOWN_CAUSE", "mAP_drops", "drop_label", "postprocess_drop_note"]

KNOWN_CAUSE = "see README 'Post-processing that lowers mAP'"
_CAUSES = {"qe": "DBSCAN eps on 2 - 2cos chains the queries of a weak model into mixed clusters"}


def mAP_drops(columns: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """``{step: (mAP before, mAP after)}`` for each cumulative column whose added step lowered mAP."""
    out: dict[str, tuple[float, float]] = {}
    for prev, col in zip(columns, columns[1:]):
        if float(col["mAP"]) < float(prev["mAP"]):
            out[str(col["added"])] = (float(prev["mAP"]), float(col["mAP"]))
    return out


def drop_label(step: str, before: float, after: float) -> str:
    """``lowers mAP here: 22.81 -> 16.31 (cause; README)`` (percent)."""
    cause = _CAUSES.get(step)
    why = f"{cause}; {KNOWN_CAUSE}" if cause else KNOWN_CAUSE
    return f"lowers mAP here: {100 * before:.2f} -> {100 * after:.2f} ({why})"


def postprocess_drop_note(results: dict[str, Any]) -> str | None:
    """One line when a test run's post-processing lowered its main feature's mAP (None otherwise)."""
    feats = results.get("features", {})
    for name, plain in feats.items():
        if not name.endswith(" (before postprocess)"):
            continue
        post = feats.get(name[: -len(" (before postprocess)")], results.get("test", {}))
        b, a = plain.get("mAP"), post.get("mAP")
        if isinstance(b, float) and isinstance(a, float) and a < b:
            return (f"note: post-processing lowered mAP {100 * b:.2f} -> {100 * a:.2f} ({KNOWN_CAUSE}); "
                    f"`python -m vreid_lightning.evaluate RUN_DIR --steps <the steps> --cumulative` shows which step")
    return None
