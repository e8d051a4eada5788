"""The issue's two claims on the synthetic world, from results.json files, per seed and as mean +- spread.

1. stage II beats stage I on the target (same run);
2. the merged-source stage II beats the target alone trained for the same total epochs (stage I and
   stage II both on the target: ``source_set=none``).

    python experiments/vehiclenet/claims.py experiments/vehiclenet/results

Runs are told apart by their resolved config (``config_resolved.yaml`` beside results.json): the
datasets of ``data.extra_sources`` and ``data.sampler``, and grouped by ``seed``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from vreid_lightning.reports.runs import mean_and_spread

__all__ = ["load", "claims_table"]


def load(folder: Path) -> dict[tuple[str, int], dict]:
    """(sources label, seed) -> results of every naive-sampling run below ``folder``."""
    out = {}
    for res in sorted(Path(folder).rglob("results.json")):
        cfg = yaml.safe_load(res.with_name("config_resolved.yaml").read_text())
        if cfg["data"].get("sampler") != "shuffle":
            continue
        label = "+".join(s["dataset"] for s in cfg["data"]["extra_sources"]) or "none"
        out[(label, int(cfg["seed"]))] = json.loads(res.read_text())
    return out


def claims_table(runs: dict[tuple[str, int], dict], merged: str = "veri+vehicleid+compcars") -> str:
    """Markdown: per seed the mAP of each side of the two claims and the differences (points)."""
    seeds = sorted(s for (label, s) in runs if label == merged and ("none", s) in runs)
    lines = ["| seed | merged stage I | merged stage II | target alone (stage II, same epochs) | II - I | merged II - alone |",
             "|---|---|---|---|---|---|"]
    d1, d2 = [], []
    for s in seeds:
        m, a = runs[(merged, s)]["stages"], runs[("none", s)]["stages"]
        i, ii, alone = 100 * m["stage1"]["mAP"], 100 * m["stage2"]["mAP"], 100 * a["stage2"]["mAP"]
        d1.append(ii - i)
        d2.append(ii - alone)
        lines.append(f"| {s} | {i:.2f} | {ii:.2f} | {alone:.2f} | {ii - i:+.2f} | {ii - alone:+.2f} |")
    if seeds:
        (m1, s1), (m2, s2) = mean_and_spread(d1), mean_and_spread(d2)
        lines.append(f"| mean +- spread | | | | {m1:+.2f} +- {s1 or 0:.2f} | {m2:+.2f} +- {s2 or 0:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(claims_table(load(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/vehiclenet/results"))))
