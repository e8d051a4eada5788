"""The one table generator: a paper's tables (data) + runs (results.json) -> markdown and CSV.

    report = paper_report("experiments/ram/paper_tables.yaml", load_runs(["experiments/ram/results"]))
    report.markdown   # the README block (between the tables markers)
    report.csv        # one line per cell value: paper, suite mean / spread / runs
    report.unmatched  # the runs that filled no row (listed in the markdown too)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vreid_lightning.errors import ConfigError
from vreid_lightning.reports.match import TableResult, match_table, unmatched_runs
from vreid_lightning.reports.render import replace_between_markers, tables_csv, tables_markdown
from vreid_lightning.reports.runs import Run
from vreid_lightning.reports.spec import PaperTables, load_paper_tables

__all__ = ["Report", "paper_report", "update_readme", "write_report"]


@dataclass
class Report:
    spec: PaperTables
    tables: list[TableResult]
    unmatched: list[Run]
    markdown: str
    csv: str


def paper_report(spec: str | Path | PaperTables, runs: list[Run], tables: list[str] | None = None) -> Report:
    """Match ``runs`` to the selected tables of ``spec`` (all when None) and render them."""
    spec = spec if isinstance(spec, PaperTables) else load_paper_tables(spec)
    results = [match_table(t, runs) for t in spec.select(tables)]
    unmatched = unmatched_runs(results, runs)
    return Report(spec, results, unmatched, tables_markdown(results, unmatched), tables_csv(results))


def update_readme(readme: str | Path, report: Report) -> Path:
    """Replace the README's section between the tables markers with the report's markdown."""
    readme = Path(readme)
    if not readme.is_file():
        raise ConfigError(f"{readme}: no such README")
    readme.write_text(replace_between_markers(readme.read_text(), report.markdown, str(readme)))
    return readme


def write_report(out_dir: str | Path, report: Report, stem: str) -> list[Path]:
    """Write ``<stem>.md`` and ``<stem>.csv`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, cs = out / f"{stem}.md", out / f"{stem}.csv"
    md.write_text(f"# {report.spec.paper}\n\n{report.markdown}\n")
    cs.write_text(report.csv)
    return [md, cs]
