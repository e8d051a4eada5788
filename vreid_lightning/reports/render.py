"""Render matched paper tables: markdown (README sections between markers) and CSV.

The markdown of a table is ``### <heading>: paper vs the suite on <world>``, a line naming the runs
it read (``Suite numbers from `...` (experiment `...`).``), their environment when they carry
provenance, and a table with the paper's columns then the suite's (``ours``). A cell of several runs
(seeds) reads ``mean ± spread`` (sample standard deviation) and the table gains a ``runs`` column; a
reproducible row no run filled reads ``no run``; a row of another work has empty suite cells. Runs whose
config differs from a row's are listed below the table as ``not matching (key: value (row: value))``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from vreid_lightning.errors import ConfigError
from vreid_lightning.reports.config_match import format_differences
from vreid_lightning.reports.environment import environment_lines
from vreid_lightning.reports.match import RowResult, TableResult
from vreid_lightning.reports.runs import Run
from vreid_lightning.reports.spec import Column, PaperTable

__all__ = ["BEGIN", "END", "table_markdown", "tables_markdown", "tables_csv", "replace_between_markers",
           "format_value"]

BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def format_value(v: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


def _paper_cell(v: Any, col: Column) -> str:
    vals = v if isinstance(v, tuple) else (v,)
    return " / ".join("-" if x is None else f"{float(x):.{col.digits}f}" for x in vals)


def _suite_cell(rr: RowResult, ci: int, col: Column) -> str:
    parts = []
    for s in rr.cells[ci].summary():
        if s is None:
            parts.append("-")
        else:
            mean, spread, _ = s
            text = format_value(mean, col.digits, col.scale)
            parts.append(text if spread is None else f"{text} ± {format_value(spread, col.digits, col.scale)}")
    return " / ".join(parts)


def _world(table: PaperTable, runs: list[Run]) -> str | None:
    if not runs:
        return None
    exps = {r.experiment for r in runs}
    synthetic = set(table.experiments.get("synthetic", ()))
    if exps <= synthetic:
        return table.synthetic_world
    if not exps & synthetic:
        return table.dataset or None
    return f"{table.dataset} and {table.synthetic_world}"


def _sources(runs: list[Run]) -> str:
    exps = sorted({str(r.experiment) for r in runs})
    exp = f"experiment `{exps[0]}`" if len(exps) == 1 else "experiments " + ", ".join(f"`{e}`" for e in exps)
    if len(runs) == 1:
        return f"Suite numbers from `{runs[0].source}` ({exp})"
    shown = ", ".join(f"`{r.source}`" for r in runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
    return f"Suite numbers from {len(runs)} runs: {shown} ({exp})"


def table_markdown(result: TableResult) -> list[str]:
    """The markdown lines of one table (heading, sources, environment, table, notes)."""
    t = result.table
    runs = result.runs
    world = _world(t, runs)
    lines = [f"### {t.heading}: paper vs the suite" + (f" on {world}" if world else ""), ""]
    if runs:
        src = _sources(runs)
        lines += [src + (f"; {t.suite_note}" if t.suite_note else "."), ""]
    else:
        lines += ["No run matched this table: its reproducible rows read `no run`.", ""]
    env = environment_lines(runs)
    if env:
        lines += [*env, ""]
    several = any(len(rr.runs) > 1 for rr in result.rows)
    suite_cols = [(ci, c) for ci, c in enumerate(t.columns) if c.suite]
    header = [*t.labels, *(f"paper {c.name}" for c in t.columns), *(f"ours {c.name}" for _, c in suite_cols)]
    header += ["runs"] if several else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for rr in result.rows:
        cells = [*rr.row.labels, *(_paper_cell(v, c) for v, c in zip(rr.row.paper, t.columns))]
        if not rr.row.reproduce:
            cells += ["" for _ in suite_cols]
        elif not rr.runs:
            cells += ["no run" for _ in suite_cols]
        else:
            cells += [_suite_cell(rr, ci, c) for ci, c in suite_cols]
        cells += [str(len(rr.runs)) if rr.row.reproduce else ""] if several else []
        lines.append("| " + " | ".join(cells) + " |")
        if rr.row.note:
            notes.append(f"{' '.join(rr.row.labels)}: {rr.row.note}")
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    apart = [f"- {' '.join(rr.row.labels)}: `{run.source}` not matching ({format_differences(diffs)})"
             for rr in result.rows for run, diffs in rr.mismatched]
    if apart:
        lines += ["", "Runs kept apart (their config differs from the row's on a training or evaluation key; "
                      "not averaged in):", *apart]
    return lines


def tables_markdown(results: list[TableResult], unmatched: list[Run] | None = None) -> str:
    """The README block: BEGIN marker, every table, the runs that matched no row, END marker."""
    parts = [BEGIN, ""]
    for r in results:
        parts += [*table_markdown(r), ""]
    if unmatched:
        parts += ["Runs that match no row of these tables: " + ", ".join(
            f"`{r.source}` (experiment `{r.experiment}`)" for r in unmatched) + ".", ""]
    parts.append(END)
    return "\n".join(parts)


def tables_csv(results: list[TableResult]) -> str:
    """One CSV line per table cell value: paper and suite (mean, spread, number of runs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "row", "column", "part", "units", "paper", "suite_mean", "suite_spread", "runs", "sources"])
    for res in results:
        t = res.table
        for rr in res.rows:
            label = " ".join(rr.row.labels)
            sources = ";".join(r.source for r in rr.runs)
            for ci, col in enumerate(t.columns):
                paper = rr.row.paper[ci]
                paper_vals = paper if isinstance(paper, tuple) else (paper,)
                summary = rr.cells[ci].summary() if col.suite else [None] * len(paper_vals)
                for part, pv in enumerate(paper_vals):
                    s = summary[part] if part < len(summary) else None
                    mean = "" if s is None else f"{s[0] * col.scale:.6g}"
                    spread = "" if s is None or s[1] is None else f"{s[1] * col.scale:.6g}"
                    n = 0 if s is None else s[2]
                    w.writerow([t.key, label, col.name, part, t.units, "" if pv is None else pv, mean, spread,
                                n if rr.row.reproduce and col.suite else "", sources if col.suite else ""])
    return buf.getvalue()


def replace_between_markers(text: str, block: str, where: str) -> str:
    """``text`` with the part from BEGIN to END (inclusive) replaced by ``block``."""
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{where}: expected the markers {BEGIN} and {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail
