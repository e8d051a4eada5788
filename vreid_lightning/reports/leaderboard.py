"""The cross-method leaderboard: every method's runs on one world, same budget, seeds averaged.

Rows are experiments (one per method); a row's runs are its seeds (mean ± sample standard deviation).
Columns: mAP, rank-1, rank-5, mINP (%, the method's reported feature), parameters, feature dimension,
training time and training images/s (all of a run's stages), inference images/s (test-set feature
extraction), from results.json and the run's efficiency.json. The header says which world, backbone
and input size the runs share, and their environment (provenance); a run that differs is named.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vreid_lightning.errors import ConfigError
from vreid_lightning.reports.environment import environment_lines
from vreid_lightning.reports.runs import MISSING, Run, lookup, mean_and_spread

__all__ = ["LEADERBOARD_COLUMNS", "Leaderboard", "leaderboard_report", "write_leaderboard",
           "update_readme_leaderboard", "LB_BEGIN", "LB_END"]

LB_BEGIN, LB_END = "<!-- leaderboard:begin -->", "<!-- leaderboard:end -->"

# (key, header, results path, scale, digits); the spread of params / feature dim is shown only when non-zero
LEADERBOARD_COLUMNS: tuple[tuple[str, str, str, float, int], ...] = (
    ("mAP", "mAP (%)", "test.mAP", 100.0, 1),
    ("rank1", "rank-1 (%)", "test.rank1", 100.0, 1),
    ("rank5", "rank-5 (%)", "test.rank5", 100.0, 1),
    ("mINP", "mINP (%)", "test.mINP", 100.0, 1),
    ("params", "params (M)", "efficiency.params", 1e-6, 3),
    ("feature_dim", "feature dim", "efficiency.feature_dim", 1.0, 0),
    ("train_time_s", "train time (s)", "efficiency.train_time_s", 1.0, 1),
    ("train_images_per_s", "train img/s", "efficiency.train_images_per_s", 1.0, 1),
    ("infer_images_per_s", "infer img/s", "efficiency.infer_images_per_s", 1.0, 1),
)
_CONSTANT = ("params", "feature_dim")
# what the runs of a leaderboard must share (label, resolved-config key)
SHARED: tuple[tuple[str, str], ...] = (
    ("backbone", "backbone.name"), ("width", "backbone.width_mult"), ("input", "data.image_size"),
    ("world", "data.synthetic"), ("train batches/epoch", "trainer.limit_train_batches"),
    ("steps per stage (cap)", "trainer.max_steps"),
)


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]]
    markdown: str
    csv: str


def _fmt(values: list[float], scale: float, digits: int, constant: bool = False) -> str:
    if not values:
        return "-"
    m, s = mean_and_spread(values)
    text = f"{m * scale:.{digits}f}"
    if s is None or constant and s * scale < 0.5 * 10 ** -digits:
        return text
    return f"{text} ± {s * scale:.{digits}f}"


def _shared_lines(runs: list[Run]) -> list[str]:
    out = []
    for label, key in SHARED:
        vals = {repr(r.config_value(key)) for r in runs if r.config is not None}
        vals.discard(repr(MISSING))
        vals.discard(repr(None))
        if len(vals) == 1:
            v = runs[0].config_value(key) if runs[0].config is not None else next(iter(vals))
            out.append(f"{label} `{_short(v)}`")
        elif len(vals) > 1:
            out.append(f"**{label} differs between runs**: " + ", ".join(sorted(vals)))
    return out


def _short(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={v[k]}" for k in v)
    return str(v)


def leaderboard_report(runs: list[Run]) -> Leaderboard:
    """Group ``runs`` by experiment and build the leaderboard (rows in decreasing mean mAP)."""
    if not runs:
        raise ConfigError("leaderboard: no results.json found in the given paths")
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(str(r.experiment), []).append(r)
    rows = []
    for exp, rs in groups.items():
        row: dict[str, Any] = {"experiment": exp, "runs": len(rs),
                               "seeds": sorted({str(r.config_value("seed")) for r in rs if r.config is not None})}
        for key, _, path, _, _ in LEADERBOARD_COLUMNS:
            vals = [float(v) for r in rs if isinstance(v := lookup(r.results, path), (int, float))]
            row[key] = vals
        rows.append(row)
    rows.sort(key=lambda r: -(mean_and_spread(r["mAP"])[0] if r["mAP"] else -1.0))
    header = ["method (experiment)", "runs", *(h for _, h, *_ in LEADERBOARD_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"`{row['experiment']}`", str(row["runs"])]
        cells += [_fmt(row[k], scale, digits, k in _CONSTANT) for k, _, _, scale, digits in LEADERBOARD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    shared = _shared_lines(runs)
    intro = [f"{len(runs)} runs of {len(rows)} methods; mean ± sample standard deviation over each method's seeds."]
    if shared:
        intro.append("Shared: " + "; ".join(shared) + ".")
    env = environment_lines(runs)
    md = "\n".join([LB_BEGIN, "", " ".join(intro), "", *([*env, ""] if env else []), *lines, "", LB_END])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "runs", "seeds", *(f"{k}_{s}" for k, *_ in LEADERBOARD_COLUMNS for s in ("mean", "spread"))])
    for row in rows:
        vals = []
        for k, *_ in LEADERBOARD_COLUMNS:
            if row[k]:
                m, s = mean_and_spread(row[k])
                vals += [f"{m:.6g}", "" if s is None else f"{s:.6g}"]
            else:
                vals += ["", ""]
        w.writerow([row["experiment"], row["runs"], " ".join(row["seeds"]), *vals])
    return Leaderboard(rows, md, buf.getvalue())


def write_leaderboard(out_dir: str | Path, board: Leaderboard) -> list[Path]:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, cs = out / "leaderboard.md", out / "leaderboard.csv"
    md.write_text("# Leaderboard\n\n" + board.markdown + "\n")
    cs.write_text(board.csv)
    return [md, cs]


def update_readme_leaderboard(readme: str | Path, board: Leaderboard) -> Path:
    """Replace the README's section between the leaderboard markers."""
    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    if LB_BEGIN not in text or LB_END not in text:
        raise ConfigError(f"{readme}: expected the markers {LB_BEGIN} and {LB_END}")
    head, rest = text.split(LB_BEGIN, 1)
    _, tail = rest.split(LB_END, 1)
    readme.write_text(head + board.markdown + tail)
    return readme
