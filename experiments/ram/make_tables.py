"""Regenerate the tables of experiments/ram/README.md from runs' results.json files.

    python experiments/ram/make_tables.py --veri outputs/ram_synthetic/runs/<time>/results.json \
        [--vehicleid outputs/ram_synthetic_vehicleid/runs/<time>/results.json]

The paper's numbers (RAM, ICME 2018, Tables 1 and 2) are constants below; the suite's numbers are read
from the given results.json files. The README section between the ``<!-- tables:begin -->`` and
``<!-- tables:end -->`` markers is replaced; nothing else in the file is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"

# RAM Table 1 (VeRi): (stage, feature) -> (mAP, Top-1, Top-5)
PAPER_TABLE1: list[tuple[str, str, tuple[float, float, float]]] = [
    ("baseline", "f_c", (0.550, 0.848, 0.931)),
    ("bn", "f_c", (0.559, 0.854, 0.927)),
    ("bn", "f_b", (0.531, 0.839, 0.930)),
    ("bn", "f_c+f_b", (0.581, 0.871, 0.940)),
    ("bn_r", "f_c", (0.556, 0.852, 0.925)),
    ("bn_r", "f_c+f_b", (0.598, 0.873, 0.937)),
    ("bn_r", "f_c+f_b+f_rt", (0.601, 0.883, 0.941)),
    ("bn_r", "f_c+f_b+f_rm", (0.590, 0.874, 0.934)),
    ("bn_r", "f_c+f_b+f_rb", (0.593, 0.868, 0.933)),
    ("bn_r", "f_c+f_b+f_r", (0.609, 0.887, 0.941)),
    ("ram", "f_c", (0.563, 0.861, 0.925)),
    ("ram", "f_c+f_b", (0.604, 0.869, 0.937)),
    ("ram", "f_c+f_b+f_r", (0.613, 0.885, 0.942)),
    ("ram", "f_c+f_b+f_r+f_a", (0.615, 0.886, 0.940)),
]
# RAM Table 2 (VehicleID): stage -> Top-1 (small, medium, large), Top-5 (small, medium, large)
PAPER_TABLE2 = {
    "baseline": ((0.694, 0.673, 0.632), (0.892, 0.820, 0.795)),
    "bn": ((0.722, 0.705, 0.666), (0.904, 0.853, 0.832)),
    "bn_r": ((0.747, 0.720, 0.674), (0.908, 0.863, 0.842)),
    "ram": ((0.752, 0.723, 0.677), (0.915, 0.870, 0.845)),
}
STAGE_NAMES = {"baseline": "baseline", "bn": "BN", "bn_r": "BN+R", "ram": "RAM"}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _feature_label(f: str) -> str:
    return "[" + "; ".join(f.split("+")) + "]"


def table1(results: dict) -> str:
    feats = results.get("stage_features", {})
    lines = ["| Model | Feature | paper mAP | paper Top-1 | paper Top-5 | ours mAP | ours Top-1 | ours Top-5 |",
             "|---|---|---|---|---|---|---|---|"]
    for stage, feature, paper in PAPER_TABLE1:
        ours = feats.get(stage, {}).get(feature, {})
        lines.append(f"| {STAGE_NAMES[stage]} | {_feature_label(feature)} | "
                     + " | ".join(_fmt(p) for p in paper) + " | "
                     + " | ".join(_fmt(ours.get(k)) for k in ("mAP", "rank1", "rank5")) + " |")
    return "\n".join(lines)


def table2(results: dict | None) -> str:
    lines = ["| Model | paper Top-1 S / M / L | paper Top-5 S / M / L | ours Top-1 S / M / L | ours Top-5 S / M / L |",
             "|---|---|---|---|---|"]
    sizes_by_stage = (results or {}).get("stage_sizes", {})
    for stage, (top1, top5) in PAPER_TABLE2.items():
        sizes = sizes_by_stage.get(stage, {})
        order = sorted(sizes, key=int)[:3]
        ours1 = " / ".join(_fmt(sizes[s].get("rank1")) for s in order) or "-"
        ours5 = " / ".join(_fmt(sizes[s].get("rank5")) for s in order) or "-"
        lines.append(f"| {STAGE_NAMES[stage]} | {' / '.join(map(_fmt, top1))} | {' / '.join(map(_fmt, top5))} | "
                     f"{ours1} | {ours5} |")
    return "\n".join(lines)


def render(veri: dict, vehicleid: dict | None, veri_src: str, vid_src: str | None) -> str:
    parts = [
        BEGIN,
        "",
        f"### Table 1 (VeRi): paper vs the suite on the synthetic VeRi-layout world",
        "",
        f"Suite numbers from `{veri_src}` (experiment `{veri.get('experiment')}`).",
        "",
        table1(veri),
        "",
        "### Table 2 (VehicleID): paper vs the suite on the synthetic VehicleID-layout world",
        "",
        (f"Suite numbers from `{vid_src}` (experiment `{vehicleid.get('experiment')}`); the synthetic world's "
         "test lists are scaled-down versions of 800/1600/2400." if vehicleid else
         "No synthetic VehicleID run was given to this script: the suite's columns are empty."),
        "",
        table2(vehicleid),
        "",
        END,
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--veri", required=True, type=Path, help="results.json of a staged RAM run on a VeRi layout")
    ap.add_argument("--vehicleid", type=Path, help="results.json of a staged RAM run on a VehicleID layout")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args(argv)
    for p in (args.veri, args.vehicleid):
        if p is not None and not p.is_file():
            print(f"error: {p}: no such results.json", file=sys.stderr)
            return 2
    veri = json.loads(args.veri.read_text())
    if "stage_features" not in veri:
        print(f"error: {args.veri}: expected a staged RAM run (no 'stage_features' key)", file=sys.stderr)
        return 2
    vid = json.loads(args.vehicleid.read_text()) if args.vehicleid else None
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: {args.readme}: expected the markers {BEGIN} and {END}", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(head + render(veri, vid, str(args.veri), str(args.vehicleid) if vid else None) + tail)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
