"""Write the Table VI section of experiments/vehiclenet/README.md (between the H10 markers) from the
results.json files that ``python -m vreid_lightning.evaluate`` wrote under experiments/vehiclenet/table6/
(``run_table6.sh``): ``cityflow/seedS`` and ``veri/seedS``.

    python experiments/vehiclenet/table6/make_section.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- H10: Table VI start -->", "<!-- H10: Table VI end -->"
TITLES = {"none": "baseline (flip)", "crop": "+ cropped image", "ensemble": "+ model ensemble", "qe": "+ query expansion",
          "camera_verification": "+ camera verification", "camera_labels": "+ camera verification (camera labels)",
          "time_window": "+ time window", "rerank": "+ re-ranking", "aqe": "average QE", "dba": "DB augmentation"}


def _load(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def _seeds(world: str) -> list[Path]:
    return sorted(p for p in (HERE / world).glob("seed*") if p.is_dir())


def _pm(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.2f} ± {v.std():.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def cumulative_table(world: str, run: str = "") -> str:
    """Steps added one at a time (the Table VI layout), mean ± spread over the seeds' results.json."""
    per_seed = [_load(s / run if run else s)["columns"] for s in _seeds(world)]
    added = [c["added"] for c in per_seed[0]]
    lines = ["| | " + " | ".join(TITLES[a] for a in added) + " |", "|---" * (len(added) + 1) + "|"]
    for key, label in (("mAP", "mAP (%)"), ("rank1", "Rank@1 (%)"), ("mINP", "mINP (%)")):
        lines.append(f"| {label} | " + " | ".join(_pm([cols[i][key] for cols in per_seed]) for i in range(len(added)))
                     + " |")
    return "\n".join(lines)


def alone_table(world: str, steps: list[str]) -> str:
    """Each step alone on one model's features, against that model's plain ranking."""
    seeds = _seeds(world)
    base = [_load(s)["columns"][0] for s in seeds]
    lines = ["| step alone on one model | mAP (%) | Rank@1 (%) | change of mAP (points) |", "|---|---|---|---|",
             f"| none | {_pm([b['mAP'] for b in base])} | {_pm([b['rank1'] for b in base])} | |"]
    for st in steps:
        res = [_load(s / f"alone_{st}")["test"] for s in seeds]
        delta = [r["mAP"] - b["mAP"] for r, b in zip(res, base)]
        lines.append(f"| {TITLES[st]} | {_pm([r['mAP'] for r in res])} | {_pm([r['rank1'] for r in res])} | "
                     f"{_pm(delta)} |")
    return "\n".join(lines)


def main() -> None:
    body = (HERE / "notes.md").read_text().format(
        table=cumulative_table("cityflow"), table_noqe=cumulative_table("cityflow", "no_qe"),
        alone=alone_table("cityflow", ["crop", "qe", "camera_verification", "camera_labels", "rerank", "aqe", "dba"]),
        table_veri=cumulative_table("veri"), alone_veri=alone_table("veri", ["time_window", "rerank"]))
    section = f"{START}\n{body.rstrip()}\n{END}"
    text = README.read_text() if README.is_file() else "# VehicleNet (Zheng et al., TMM 2020)\n\n"
    if START in text:
        pre, rest = text.split(START, 1)
        text = pre + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
