"""The issue's two claims on the synthetic world, from results.json files, per seed and as mean +- spread.

1. stage II beats stage I on the target (same run);
2. the merged-source stage II beats the target alone trained for the same total epochs (stage I and
   stage II both on the target: ``source_set=none``).

Also Table VIII on the synthetic world (naive vs class-balanced sampling of the merged set, this
experiment's backbone: the paper's row config names ResNet-50, which the shared table cannot match here).

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

__all__ = ["load", "claims_table", "sampling_table"]


def load(folder: Path, sampler: str = "shuffle", experiment: str = "vehiclenet_synthetic",
         backbone: str = "vgg_cnn_m") -> dict[tuple[str, int], dict]:
    """(sources label, seed) -> results of every run of ``experiment`` with its own backbone (not the
    Table VII swaps) and ``data.sampler == sampler`` below ``folder``."""
    out = {}
    for res in sorted(Path(folder).rglob("results.json")):
        cfg_file = res.with_name("config_resolved.yaml")
        if not cfg_file.is_file():
            continue
        cfg = yaml.safe_load(cfg_file.read_text())
        if (cfg.get("experiment_name") != experiment or cfg["backbone"]["name"] != backbone
                or cfg["data"].get("sampler") != sampler):
            continue
        label = "+".join(s["dataset"] for s in cfg["data"]["extra_sources"]) or "none"
        key = (label, int(cfg["seed"]))
        if key in out:
            raise SystemExit(f"{res}: a second run of sources {label!r}, seed {key[1]}")
        out[key] = json.loads(res.read_text())
    return out


def _cell(values: list[float]) -> str:
    m, s = mean_and_spread(values)
    return f"{m:.2f}" + (f" +- {s:.2f}" if s is not None else "") + f" ({len(values)})"


def sampling_table(folder: Path, merged: str = "veri+vehicleid+compcars") -> str:
    """Markdown: naive vs balanced sampling, stage I and II, Rank@1 / mAP (%), mean +- spread (runs)."""
    lines = ["| sampling | stage I Rank@1 | stage I mAP | stage II Rank@1 | stage II mAP |", "|---|---|---|---|---|"]
    for name, sampler in (("Naive", "shuffle"), ("Balanced", "balanced")):
        runs = [r for (label, _), r in load(folder, sampler).items() if label == merged]
        if not runs:
            continue
        cells = [_cell([100 * r["stages"][st][k] for r in runs]) for st in ("stage1", "stage2") for k in ("rank1", "mAP")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/vehiclenet/results")
    print(claims_table(load(where)))
    print()
    print(sampling_table(where))
