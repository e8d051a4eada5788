"""Kill a small staged run at every write of its finishing sequence, resume each, compare the metrics.

    python tests/fault_injection.py --out /tmp/fi              # the tiny RAM run, two 1-epoch stages
    python tests/fault_injection.py --out /tmp/fi --only stage_results.json@1 --table table.md
    python tests/fault_injection.py --out /tmp/fi --jobs 3     # three kill points at a time

1. An uninterrupted run with ``VREID_FAULT_LOG`` lists the fault points it passes, in order
   (:mod:`vreid_lightning.faults`: each finishing write, and for atomic writes the moment between the
   temporary file and the rename). Its ``results.json`` is the reference.
2. For each point ``P``: the same command with ``VREID_FAULT=P`` dies there (exit 137, as SIGKILL: no
   cleanup, the run-directory lock stays behind). ``resume=RUN_DIR`` without ``break_lock`` must be
   refused naming the stale lock (checked for the first point only: one more process start); with
   ``break_lock=true`` it must finish (exit 0) with the reference's test and per-stage metrics.
   ``config_resolved.yaml`` is written before anything trains: a kill there must be refused by
   ``resume=`` with "nothing to resume", and a fresh start into the same directory must then finish.
3. A markdown table (kill point -> resumed, metrics equal) is printed (and written with ``--table``);
   the exit code is 1 if any point failed.

``tests/test_fault_windows.py`` runs the same machinery on single points; this script is the full sweep
(about 50 CLI runs; the last table, with its command and times, is tests/fault_injection.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import TINY  # noqa: E402

QUIET = ["logger=csv", "model.figures=null", "callbacks.results_writer.rank_list=0", "callbacks.lr_monitor=null"]
KILLED = 137


def staged_args(run_dir: Path) -> list[str]:
    """A two-stage RAM run (baseline -> bn, one short epoch each) that keeps stripped checkpoints."""
    return ["+experiment=ram_synthetic", *TINY, *QUIET, "run_stages=[baseline,bn]", "trainer.limit_train_batches=2",
            "stages.baseline.trainer.max_epochs=1", "stages.baseline.trainer.check_val_every_n_epoch=1",
            "stages.bn.trainer.max_epochs=1", "stages.bn.trainer.check_val_every_n_epoch=1",
            "checkpoint.save_optimizer=false", f"hydra.run.dir={run_dir}"]


def plain_args(run_dir: Path) -> list[str]:
    """A one-model run (no stages) with ``checkpoint.save_optimizer=false``."""
    return ["+experiment=baseline_synthetic", *TINY, *QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "checkpoint.save_optimizer=false", f"hydra.run.dir={run_dir}"]


def cli(args: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    e.pop("VREID_FAULT", None)
    e.pop("VREID_FAULT_LOG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "vreid_lightning", *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=timeout)


def metrics(run_dir: Path) -> dict:
    r = json.loads((run_dir / "results.json").read_text())
    return {"test": r.get("test"), "stages": r.get("stages"), "features": r.get("features")}


def fault_points(args_of, out: Path, reuse: bool = False) -> tuple[list[str], dict]:
    """The reference run: its fault points in order, and its metrics (``reuse``: an earlier reference run's)."""
    log = out / "points.log"
    if reuse and log.is_file() and (out / "reference" / "results.json").is_file():
        return log.read_text().split(), metrics(out / "reference")
    log.unlink(missing_ok=True)
    ref = out / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    p = cli(args_of(ref), {"VREID_FAULT_LOG": str(log)})
    if p.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{p.stderr[-3000:]}")
    return log.read_text().split(), metrics(ref)


def kill_and_resume(args_of, point: str, out: Path, reference: dict, check_lock: bool = False) -> dict:
    """Kill at ``point``, resume; one row of the table."""
    run = out / ("run_" + point.replace("/", "_").replace("(", "_").replace(")", "_"))
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.monotonic()
    p = cli(args_of(run), {"VREID_FAULT": point})
    row = {"point": point, "killed": p.returncode == KILLED, "resumed": False, "equal": False, "note": ""}
    if p.returncode != KILLED:
        row["note"] = f"not killed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:] }"
        return row
    resume = [*args_of(run.with_name(run.name + "_hydra")), f"resume={run}"]
    if check_lock:
        q = cli(resume)
        if q.returncode != 2 or "stale" not in q.stderr or "break_lock=true" not in q.stderr:
            row["note"] = f"stale lock not reported (exit {q.returncode}): {q.stderr[-300:]}"
            return row
        row["note"] = "stale lock reported; "
    q = cli([*resume, "break_lock=true"])
    if point.startswith("config_resolved.yaml"):  # nothing trained yet: refused, then a fresh start
        if q.returncode != 2 or "nothing to resume" not in q.stderr:
            row["note"] += f"refusal expected (exit {q.returncode}): {q.stderr[-300:]}"
            return row
        q = cli([*args_of(run), "break_lock=true"])
        row["note"] += "resume refused (nothing trained); fresh start; "
    row["resumed"] = q.returncode == 0
    if not row["resumed"]:
        row["note"] += q.stderr.strip().splitlines()[-1] if q.stderr.strip() else f"exit {q.returncode}"
        return row
    row["equal"] = metrics(run) == reference
    row["note"] += f"{time.monotonic() - t0:.0f} s"
    return row


def table(rows: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| kill point | killed (137) | resumed (0) | metrics equal | note |", "|---|---|---|---|---|"]
    yes = lambda b: "yes" if b else "NO"  # noqa: E731
    for r in rows:
        lines.append(f"| `{r['point']}` | {yes(r['killed'])} | {yes(r['resumed'])} | {yes(r['equal'])} | {r['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="scratch directory (runs are written here)")
    ap.add_argument("--run", choices=["staged", "plain", "both"], default="both")
    ap.add_argument("--only", nargs="*", help="kill points to try (default: every point the reference passes)")
    ap.add_argument("--table", type=Path, help="also write the markdown table here")
    ap.add_argument("--reuse-reference", action="store_true", help="reuse --out's reference run if it is there")
    ap.add_argument("--jobs", type=int, default=1, help="kill points tried at once (each in its own directory)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VREID_CACHE_DIR", str(a.out / ".cache"))
    parts = []
    ok = True
    for kind, args_of in (("staged", staged_args), ("plain", plain_args)):
        if a.run not in (kind, "both"):
            continue
        out = a.out / kind
        out.mkdir(exist_ok=True)
        points, ref = fault_points(args_of, out, a.reuse_reference)
        print(f"{kind}: {len(points)} fault points: {points}", flush=True)
        rows = []
        chosen = [p for p in points if not a.only or p in a.only]
        lock_point = next((p for p in chosen if not p.startswith("config_resolved")), None)
        def one(point: str) -> dict:
            row = kill_and_resume(args_of, point, out, ref, check_lock=point == lock_point)
            print(row, flush=True)
            return row

        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            rows = list(pool.map(one, chosen))
        ok &= all(r["killed"] and r["resumed"] and r["equal"] for r in rows)
        parts.append(table(rows, f"{kind} run ({' '.join(args_of(Path('RUN'))[:1])}, save_optimizer=false)"))
    text = "\n\n".join(parts)
    print(text)
    if a.table:
        a.table.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
