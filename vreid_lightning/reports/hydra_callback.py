"""The sweep-end Hydra callback: a multirun ends by writing and printing the table of the runs it made.

Registered in ``conf/hydra/default.yaml`` (``hydra.callbacks.sweep_report``), so every ``-m`` run gets
it. A sweep names its table with a top-level ``report`` key in its sweep file (``conf/sweep/*.yaml``)::

    report:
      paper_tables: experiments/ram/paper_tables.yaml   # the paper's tables as data (repo-relative)
      tables: [table1]                                  # which of them (default: all)
    # or
    report:
      leaderboard: true                                 # the cross-method leaderboard

Every sweep also ends with its sweep-points table (:mod:`vreid_lightning.reports.sweep_points`: one row
per point, the swept keys as columns, seeds aggregated, the objective, the best point marked) in
``sweep_points.md`` / ``.csv``; without a ``report`` key that table is the sweep's summary
(``sweep_summary.md``). Files go into the sweep directory: ``<name>.md`` and ``<name>.csv``, where
``<name>`` is ``report.name`` (default: ``paper_tables``, or ``leaderboard``). With ``logger=wandb``
the table also goes to wandb as a ``wandb.Table`` in the sweep's group.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vreid_lightning.errors import ConfigError

__all__ = ["SweepReport", "sweep_report"]

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


def _resolve_spec(path: str) -> Path:
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    return REPO / p


def sweep_report(sweep_dir: str | Path, report: dict[str, Any] | None, wandb_cfg: dict[str, Any] | None = None,
                 echo: bool = True) -> list[Path]:
    """Write (and print) the table of the runs under ``sweep_dir``; returns the files written."""
    from vreid_lightning.reports.leaderboard import leaderboard_report
    from vreid_lightning.reports.runs import load_runs
    from vreid_lightning.reports.sweep_points import sweep_points_report

    sweep_dir = Path(sweep_dir)
    skipped: list[str] = []
    runs = load_runs([sweep_dir], skipped) if sweep_dir.is_dir() else []
    for s in skipped:
        log.warning("sweep %s: %s left out of the table: the run failed (its run.json)", sweep_dir, s)
    if sweep_dir.is_dir():
        from vreid_lightning.runner.status import read_status

        for f in sorted(sweep_dir.rglob("run.json")):
            st = read_status(f.parent) or {}
            if st.get("status") == "failed" and not (f.parent / "results.json").is_file():
                log.warning("sweep %s: job %s failed: %s", sweep_dir, f.parent.name, st.get("error"))
    if not runs:
        log.warning("sweep %s: no results.json was written, no table", sweep_dir)
        return []
    report = dict(report or {})
    unknown = set(report) - {"paper_tables", "tables", "leaderboard", "name"}
    if unknown:
        raise ConfigError(f"report: unknown key(s) {sorted(unknown)}; expected paper_tables, tables, leaderboard, name")
    if report.get("paper_tables"):
        from vreid_lightning.reports.generate import paper_report, write_report

        tables = report.get("tables")
        rep = paper_report(_resolve_spec(str(report["paper_tables"])), runs, list(tables) if tables else None)
        name = str(report.get("name") or "paper_tables")
        files = write_report(sweep_dir, rep, name)
        text, table_rows = rep.markdown, _csv_rows(rep.csv)
    elif report.get("leaderboard"):
        board = leaderboard_report(runs)
        name = str(report.get("name") or "leaderboard")
        files = _write(sweep_dir, name, board.markdown, board.csv)
        text, table_rows = board.markdown, _csv_rows(board.csv)
    points = sweep_points_report(runs)
    point_files = _write(sweep_dir, "sweep_points", points.markdown, points.csv)
    if not report.get("paper_tables") and not report.get("leaderboard"):
        name = str(report.get("name") or "sweep_summary")
        files = _write(sweep_dir, name, points.markdown, points.csv) if name != "sweep_points" else point_files
        text, table_rows = points.markdown, _csv_rows(points.csv)
    elif echo:
        print(f"\n{points.markdown}\n\nSweep points: {point_files[0].resolve()}")
    if echo:
        print(f"\n{text}\n\nSweep table: {files[0].resolve()}")
    if wandb_cfg is not None:
        from vreid_lightning.wandb_utils import log_sweep_table

        log_sweep_table(sweep_dir, name, table_rows, wandb_cfg, files)
    return files


def _write(sweep_dir: Path, name: str, markdown: str, csv_text: str) -> list[Path]:
    files = [sweep_dir / f"{name}.md", sweep_dir / f"{name}.csv"]
    files[0].write_text(f"# {name}\n\n{markdown}\n")
    files[1].write_text(csv_text)
    return files


def _csv_rows(text: str) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of a CSV text: the wandb.Table of a sweep's table."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


class SweepReport(Callback):
    """Hydra callback: at the end of a multirun, the sweep's table (paper table, leaderboard or summary)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        report = config.get("report")
        report = OmegaConf.to_container(report, resolve=True) if report is not None else None
        logger = config.get("logger")
        wandb_cfg = None
        if logger is not None and logger.get("wandb") is not None:
            wandb_cfg = OmegaConf.to_container(logger.wandb, resolve=True)
        try:
            sweep_report(sweep_dir, report, wandb_cfg)
        except ConfigError as e:  # the runs are done; a bad report key costs the table, not the results
            log.error("sweep table not written: %s", e)
