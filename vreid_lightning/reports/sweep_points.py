"""The sweep-points table: one row per point of a sweep, the swept keys as columns, seeds aggregated.

A sweep point is a combination of the swept values; its runs differ only by ``seed`` (mean ± sample
standard deviation over them). The swept keys are the Hydra overrides whose value differs between the
runs (``provenance.command.overrides`` in results.json), or, for runs without provenance, the resolved
config keys that differ (run-directory keys ignored). The objective is the test mAP (what
``python -m vreid_lightning`` returns to a sweeper); the best point (highest mean) is marked ``best``.

    table = sweep_points_report(load_runs([sweep_dir]))
    table.markdown, table.csv, table.swept
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from vreid_lightning.reports.environment import environment_lines
from vreid_lightning.reports.runs import MISSING, Run, lookup, mean_and_spread

__all__ = ["SweepPoints", "swept_keys", "sweep_points_report", "OBJECTIVE"]

OBJECTIVE = ("test mAP (%)", "test.mAP")
METRICS = (("rank-1 (%)", "test.rank1"), ("mINP (%)", "test.mINP"))
AGGREGATED = ("seed",)
# keys that name where a run writes, not what it trains
_IGNORED_ROOTS = ("paths", "run", "sweep", "resume", "hydra")


@dataclass
class SweepPoints:
    swept: list[str]
    rows: list[dict[str, Any]]
    markdown: str
    csv: str


def _overrides(run: Run) -> dict[str, str] | None:
    prov = run.provenance or {}
    ovs = (prov.get("command") or {}).get("overrides")
    if not isinstance(ovs, list):
        return None
    out = {}
    for o in ovs:
        if "=" in str(o):
            k, v = str(o).split("=", 1)
            out[k.lstrip("+~")] = v
    return out


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: repr(tree)}


def swept_keys(runs: list[Run]) -> list[str]:
    """The keys whose value differs between the runs (``seed`` included), in first-seen order."""
    ovs = [_overrides(r) for r in runs]
    if all(o is not None for o in ovs):
        keys: list[str] = []
        for o in ovs:
            keys += [k for k in o if k not in keys]  # type: ignore[union-attr]
        return [k for k in keys if len({o.get(k) for o in ovs}) > 1]  # type: ignore[union-attr]
    flats = [_flat(r.config or {}) for r in runs]
    keys = []
    for f in flats:
        keys += [k for k in f if k not in keys and k.split(".")[0] not in _IGNORED_ROOTS]
    return [k for k in keys if len({f.get(k) for f in flats}) > 1]


def _value(run: Run, key: str) -> str:
    v = run.config_value(key)
    if v is MISSING:
        v = (_overrides(run) or {}).get(key, "-")
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    m, s = mean_and_spread(values)
    return f"{100 * m:.2f}" if s is None else f"{100 * m:.2f} ± {100 * s:.2f}"


def sweep_points_report(runs: list[Run]) -> SweepPoints:
    """Group ``runs`` into sweep points and render the table (points in sweep order)."""
    swept = swept_keys(runs)
    point_keys = [k for k in swept if k not in AGGREGATED]
    if len({str(r.experiment) for r in runs}) > 1 and not {"experiment", "experiment_name"} & set(point_keys):
        point_keys = ["experiment_name", *[k for k in point_keys if k != "experiment_name"]]
    groups: dict[tuple[str, ...], list[Run]] = {}
    for r in runs:
        key = tuple(str(r.experiment) if k == "experiment_name" else _value(r, k) for k in point_keys)
        groups.setdefault(key, []).append(r)
    rows = []
    for values, rs in groups.items():
        obj = [float(v) for r in rs if isinstance(v := lookup(r.results, OBJECTIVE[1]), (int, float))]
        row = {"point": dict(zip(point_keys, values)), "runs": len(rs), "objective": obj,
               "seeds": [str(r.config_value("seed")) for r in rs if r.config is not None],
               **{name: [float(v) for r in rs if isinstance(v := lookup(r.results, path), (int, float))]
                  for name, path in METRICS}}
        rows.append(row)
    means = [mean_and_spread(r["objective"])[0] if r["objective"] else float("-inf") for r in rows]
    best = max(range(len(rows)), key=lambda i: means[i]) if rows and max(means) > float("-inf") else None
    for i, r in enumerate(rows):
        r["best"] = i == best
    header = [*(f"`{k}`" for k in point_keys), "runs", OBJECTIVE[0], *(n for n, _ in METRICS), "best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [*(str(r["point"][k]) for k in point_keys), str(r["runs"]), _fmt(r["objective"]),
                 *(_fmt(r[n]) for n, _ in METRICS), "**best**" if r["best"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = "seeds aggregated within a point (mean ± sample standard deviation)" if "seed" in swept else \
        "one run per point" if all(r["runs"] == 1 for r in rows) else "mean ± sample standard deviation"
    swept_text = ", ".join(f"`{k}`" for k in point_keys) if point_keys else "nothing (every run is one point)"
    intro = (f"{len(runs)} runs in {len(rows)} sweep point(s); swept: {swept_text}; {seeds}. "
             f"Objective: {OBJECTIVE[0]} (what the app returns to the sweeper); best point marked.")
    env = environment_lines(runs)
    md = "\n".join([intro, "", *([*env, ""] if env else []), *lines])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*point_keys, "runs", "seeds", "mAP_mean", "mAP_spread", "best"])
    for r in rows:
        m, s = mean_and_spread(r["objective"]) if r["objective"] else ("", None)
        w.writerow([*(r["point"][k] for k in point_keys), r["runs"], " ".join(r["seeds"]),
                    m if m == "" else f"{m:.6g}", "" if s is None else f"{s:.6g}", int(r["best"])])
    return SweepPoints(point_keys, rows, md, buf.getvalue())
