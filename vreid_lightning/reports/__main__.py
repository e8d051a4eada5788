"""Command line of the reports: paper tables, the config check of their rows, the leaderboard.

    # a paper's tables from runs (files, run dirs, multirun folders); README section and/or files
    python -m vreid_lightning.reports tables experiments/ram/paper_tables.yaml \\
        experiments/ram/results/ram_synthetic.json experiments/ram/results/ram_synthetic_vehicleid.json \\
        --readme experiments/ram/README.md [--table table1] [--out DIR]
    # compose every reproducible row's config (experiment + overrides); name the rows that do not compose
    python -m vreid_lightning.reports check experiments/*/paper_tables.yaml
    # the cross-method leaderboard of a sweep (or any runs)
    python -m vreid_lightning.reports leaderboard outputs/leaderboard_synthetic/multiruns/<time> [--out DIR]
    # the README's lists of config groups, experiments, sweeps and recorded costs, from the config tree
    python -m vreid_lightning.reports docs-lists --readme README.md [--check]

Exit code 2 with one line on bad input (a missing file, a malformed tables file, missing README markers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vreid_lightning.errors import ConfigError

__all__ = ["main"]


def _note_skipped(skipped: list[str]) -> None:
    for s in skipped:
        print(f"note: {s} skipped: its run.json marks the run failed or interrupted", file=sys.stderr)


def _tables(args: argparse.Namespace) -> int:
    from vreid_lightning.reports.generate import paper_report, update_readme, write_report
    from vreid_lightning.reports.runs import load_runs

    skipped: list[str] = []
    report = paper_report(args.spec, load_runs(args.runs, skipped), args.table)
    _note_skipped(skipped)
    if args.readme:
        print(f"updated {update_readme(args.readme, report)}")
    if args.out:
        for p in write_report(args.out, report, args.stem):
            print(f"wrote {p}")
    if not args.readme and not args.out:
        print(report.markdown)
    for run in report.unmatched:
        print(f"note: {run.source} (experiment {run.experiment}) matches no row", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from vreid_lightning.reports.check import check_rows

    bad = 0
    for spec in args.specs:
        for line, ok in check_rows(spec, include_missing=args.all):
            bad += not ok
            print(("ok    " if ok else "FAIL  ") + line)
    return 1 if bad else 0


def _leaderboard(args: argparse.Namespace) -> int:
    from vreid_lightning.reports.leaderboard import leaderboard_report, write_leaderboard
    from vreid_lightning.reports.runs import load_runs

    skipped: list[str] = []
    board = leaderboard_report(load_runs(args.runs, skipped))
    _note_skipped(skipped)
    if args.out:
        for p in write_leaderboard(args.out, board):
            print(f"wrote {p}")
    if args.readme:
        from vreid_lightning.reports.leaderboard import update_readme_leaderboard

        print(f"updated {update_readme_leaderboard(args.readme, board)}")
    print(board.markdown)
    return 0


def _docs_lists(args: argparse.Namespace) -> int:
    from vreid_lightning.reports.docs_lists import update_readme_lists

    ok = update_readme_lists(args.readme, check=args.check)
    if args.check:
        print(f"{args.readme}: generated lists {'up to date' if ok else 'DIFFER from the config tree'}")
        return 0 if ok else 1
    print(f"{args.readme}: {'up to date' if ok else 'updated'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vreid_lightning.reports", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tables", help="a paper's tables from runs")
    t.add_argument("spec", type=Path, help="experiments/<paper>/paper_tables.yaml")
    t.add_argument("runs", nargs="+", type=Path, help="results.json files or folders holding them")
    t.add_argument("--table", action="append", help="only this table (repeatable); default: all")
    t.add_argument("--readme", type=Path, help="replace this README's section between the tables markers")
    t.add_argument("--out", type=Path, help="write <stem>.md and <stem>.csv into this folder")
    t.add_argument("--stem", default="paper_tables", help="file name stem under --out (default: paper_tables)")
    t.set_defaults(fn=_tables)
    c = sub.add_parser("check", help="compose every reproducible row's config")
    c.add_argument("specs", nargs="+", type=Path)
    c.add_argument("--all", action="store_true", help="also report rows whose experiment does not exist (yet)")
    c.set_defaults(fn=_check)
    lb = sub.add_parser("leaderboard", help="the cross-method leaderboard of runs")
    lb.add_argument("runs", nargs="+", type=Path)
    lb.add_argument("--out", type=Path, help="write leaderboard.md and leaderboard.csv into this folder")
    lb.add_argument("--readme", type=Path, help="replace this README's section between the leaderboard markers")
    lb.set_defaults(fn=_leaderboard)
    d = sub.add_parser("docs-lists", help="the README's lists generated from the config tree")
    d.add_argument("--readme", type=Path, default=Path("README.md"))
    d.add_argument("--check", action="store_true", help="only compare: exit 1 when the README differs")
    d.set_defaults(fn=_docs_lists)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
