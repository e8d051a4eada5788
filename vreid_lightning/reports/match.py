"""Match runs to paper table rows by their resolved config; collect each cell's values over the runs.

A run matches a reproducible row when its experiment is the row's (the table's ``experiments``), every
constraint of the row (its value-setting overrides and ``match`` entries) holds in the run's resolved
config, and the row's ``at`` exists in its results.json. A run matching several rows of a table at the
same ``at`` counts for the most specific one only (the rows whose constraints are a strict subset of
another matched row's are dropped). Several runs of one row (seeds) give a mean and a spread.

A run counts for a row only when its resolved config also equals the row's composed config on every key
that changes training or evaluation (:mod:`vreid_lightning.reports.config_match`: budget keys
included). A run that passes the row's constraints but differs elsewhere (a shrunk budget, another
``num_regions``) is kept apart in ``RowResult.mismatched`` with the keys it differs on, never averaged in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vreid_lightning.reports.config_match import config_differences
from vreid_lightning.reports.runs import MISSING, Run, lookup, mean_and_spread
from vreid_lightning.reports.spec import PaperTable, Row

__all__ = ["Cell", "RowResult", "TableResult", "match_table", "unmatched_runs", "same_value"]


def same_value(want: Any, got: Any) -> bool:
    """Config equality as a user means it: numbers within 1e-9 relative, lists element-wise, the rest ==."""
    if got is MISSING:
        return False
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got or (isinstance(want, bool) and isinstance(got, bool) and want == got)
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(float(want), float(got), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(want) == len(got) and all(same_value(a, b) for a, b in zip(want, got))
    if want is None or got is None:
        return want is None and got is None
    return str(want) == str(got) if isinstance(want, str) or isinstance(got, str) else want == got


@dataclass
class Cell:
    """The suite's values of one table cell (one list per value of a multi-value cell)."""

    values: list[list[float]]

    def summary(self) -> list[tuple[float, float | None, int] | None]:
        """(mean, spread, n) per value; None where no run had it."""
        return [None if not v else (*mean_and_spread(v), len(v)) for v in self.values]


@dataclass
class RowResult:
    row: Row
    runs: list[Run] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    mismatched: list[tuple[Run, list[tuple[str, Any, Any]]]] = field(default_factory=list)


@dataclass
class TableResult:
    table: PaperTable
    rows: list[RowResult]

    @property
    def runs(self) -> list[Run]:
        """The runs that filled any row, each once, in first-seen order."""
        seen: dict[int, Run] = {}
        for r in self.rows:
            for run in r.runs:
                seen.setdefault(id(run), run)
        return list(seen.values())

    @property
    def mismatched_runs(self) -> list[Run]:
        """The runs kept apart from a row (config differs), each once."""
        seen: dict[int, Run] = {}
        for r in self.rows:
            for run, _ in r.mismatched:
                seen.setdefault(id(run), run)
        return list(seen.values())


def _row_value(run: Run, row: Row, path: str) -> Any:
    if path.startswith("/"):
        return lookup(run.results, path[1:])
    return lookup(run.results, f"{row.at}.{path}" if row.at else path)


def _matches(table: PaperTable, row: Row, run: Run) -> bool:
    exps = table.row_experiments(row)
    if not row.reproduce or ("*" not in exps and run.experiment not in exps):
        return False
    if any(not same_value(v, run.config_value(k)) for k, v in row.constraints().items()):
        return False
    return lookup(run.results, row.at) is not MISSING


def match_table(table: PaperTable, runs: list[Run]) -> TableResult:
    """Fill the table's rows from the runs (rows with no run keep empty cells)."""
    matched: dict[int, list[int]] = {}
    for ri, row in enumerate(table.rows):
        for k, run in enumerate(runs):
            if _matches(table, row, run):
                matched.setdefault(k, []).append(ri)
    per_row: dict[int, list[Run]] = {}
    for k, rows in matched.items():
        for ri in rows:
            mine = _items(table.rows[ri])
            dominated = any(table.rows[o].at == table.rows[ri].at and mine < _items(table.rows[o])
                            for o in rows if o != ri)
            if not dominated:
                per_row.setdefault(ri, []).append(runs[k])
    out = []
    for ri, row in enumerate(table.rows):
        rr = RowResult(row)
        for run in per_row.get(ri, []):
            diffs = config_differences(run, row)
            if diffs:
                rr.mismatched.append((run, diffs))
            else:
                rr.runs.append(run)
        for ci, col in enumerate(table.columns):
            paths = row.column_paths(col, ci) if col.suite else ()
            values: list[list[float]] = [[] for _ in paths]
            for run in rr.runs:
                for vi, path in enumerate(paths):
                    v = _row_value(run, row, path)
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        values[vi].append(float(v))
            rr.cells.append(Cell(values))
        out.append(rr)
    return TableResult(table, out)


def _items(row: Row) -> frozenset[tuple[str, str]]:
    return frozenset((k, repr(v)) for k, v in row.constraints().items())


def unmatched_runs(results: list[TableResult], runs: list[Run]) -> list[Run]:
    """The runs that filled no row of any of the tables (nor were kept apart from one)."""
    used = {id(r) for t in results for r in (*t.runs, *t.mismatched_runs)}
    return [r for r in runs if id(r) not in used]
