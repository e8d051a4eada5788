"""Write the Table VI section of experiments/vehiclenet/README.md (between the H10 markers) from the
results.json files that ``python -m vreid_lightning.evaluate`` wrote under experiments/vehiclenet/table6/.

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
          "camera_verification": "+ camera verification", "time_window": "+ time window", "rerank": "+ re-ranking",
          "aqe": "average QE", "dba": "DB augmentation"}


def _cols(run: str) -> list[list[dict]]:
    return [json.loads((HERE / s / run / "results.json").read_text())["columns"] if run else
            json.loads((HERE / s / "results.json").read_text())["columns"] for s in SEEDS]


def _pm(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.2f} ± {v.std():.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def cumulative_table(run: str = "") -> str:
    per_seed = _cols(run)
    added = [c["added"] for c in per_seed[0]]
    lines = ["| | " + " | ".join(TITLES[a] for a in added) + " |", "|---" * (len(added) + 1) + "|"]
    for key, label in (("mAP", "mAP (%)"), ("rank1", "Rank@1 (%)"), ("mINP", "mINP (%)")):
        lines.append(f"| {label} | " + " | ".join(_pm([cols[i][key] for cols in per_seed]) for i in range(len(added)))
                     + " |")
    return "\n".join(lines)


def alone_table() -> str:
    steps = ["qe", "camera_verification", "rerank", "time_window", "aqe", "dba"]
    base = [json.loads((HERE / s / "results.json").read_text())["columns"][0] for s in SEEDS]
    lines = ["| step alone on one model | mAP (%) | Rank@1 (%) | change of mAP (points) |", "|---|---|---|---|"]
    lines.append(f"| none | {_pm([b['mAP'] for b in base])} | {_pm([b['rank1'] for b in base])} | |")
    for st in steps:
        res = [json.loads((HERE / s / f"alone_{st}" / "results.json").read_text())["test"] for s in SEEDS]
        delta = [r["mAP"] - b["mAP"] for r, b in zip(res, base)]
        lines.append(f"| {TITLES[st]} | {_pm([r['mAP'] for r in res])} | {_pm([r['rank1'] for r in res])} | "
                     f"{_pm(delta)} |")
    return "\n".join(lines)


def main() -> None:
    body = (HERE / "notes.md").read_text().format(
        table=cumulative_table(), table_tw=cumulative_table("with_time_window"), table_noqe=cumulative_table("no_qe"),
        alone=alone_table())
    section = f"{START}\n{body.rstrip()}\n{END}"
    text = README.read_text() if README.is_file() else "# VehicleNet (Zheng et al., TMM 2020)\n\n"
    if START in text:
        pre, rest = text.split(START, 1)
        text = pre + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)
    print(section)


SEEDS = sorted(p.name for p in HERE.glob("seed*") if p.is_dir())
if __name__ == "__main__":
    sys.exit(main())
