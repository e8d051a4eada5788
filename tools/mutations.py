"""Mutation check, run by hand (not in CI): each listed fault, planted alone in a copy of the tree, must
make the test suite fail.

    python tools/mutations.py                 # every mutation against its listed tests (minutes)
    python tools/mutations.py --full          # every mutation against the whole default suite (pytest)
    python tools/mutations.py --only flip     # the mutations whose name contains "flip"
    python tools/mutations.py --table tools/mutations.md   # also write the table there

For each mutation the tree (git's tracked and untracked, not ignored, files) is copied into a temporary
folder, one snippet of one file is replaced (the snippet must occur exactly once: a refactoring that
moves it makes the script fail loudly rather than test nothing), and pytest runs there. The table says
whether the suite caught it (``caught`` = pytest failed) and how long it took. Exit status 1 when a
mutation survived. The listed tests are the ones meant to catch it; ``--full`` runs everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["Mutation", "MUTATIONS", "main"]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


PLANTED = "tests/test_planted.py"
MUTATIONS: tuple[Mutation, ...] = (
    Mutation("query/gallery swapped", "vreid_lightning/evaluation/protocol_registry.py",
             'return eval_set.groups["query"], eval_set.groups["gallery"], _cams(eval_set.split)',
             'return eval_set.groups["gallery"], eval_set.groups["query"], _cams(eval_set.split)',
             (PLANTED,)),
    Mutation("same-camera junk rule dropped", "vreid_lightning/evaluation/protocol_registry.py",
             "return cams if bool((cams >= 0).all()) else None",
             "return None",
             (PLANTED,)),
    Mutation("checkpoint selected on test images", "vreid_lightning/callbacks/checkpoint.py",
             "return val is not None and val is not test",
             "return val is not None",
             (PLANTED, "tests/test_experiments.py::test_experiment_trains_and_tests_at_tiny_size[baseline_synthetic]")),
    Mutation("wrong distance (euclidean for cosine)", "vreid_lightning/methods/base.py",
             'run_protocol(f, eval_set, self.eval_cfg["metric"])',
             'run_protocol(f, eval_set, "euclidean")',
             (PLANTED,)),
    Mutation("test-time flip silently off", "vreid_lightning/methods/base.py",
             'if self.eval_cfg["flip"]:',
             "if False:",
             (PLANTED,)),
    Mutation("stage starts from fresh weights", "vreid_lightning/runner/stages.py",
             "report = model.load_previous_stage(prev_ckpt)",
             'report = {"loaded": [], "new": []}',
             (PLANTED,)),
    Mutation("VehicleID draws ignore the repeat index", "vreid_lightning/evaluation/protocols.py",
             "rng = np.random.default_rng([int(seed), int(repeat)])",
             "rng = np.random.default_rng([int(seed), 0])",
             ("tests/test_evaluation.py",)),
    Mutation("BoT label smoothing dropped", "vreid_lightning/losses/bot.py",
             "label_smoothing=self.label_smoothing)",
             "label_smoothing=0.0)",
             ("tests/test_bot.py",)),
    Mutation("BNNeck feature not used at test", "vreid_lightning/models/bot.py",
             'feature = bn if self.neck_feat == "after" else pooled',
             "feature = pooled",
             ("tests/test_bot.py",)),
)


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _apply(root: Path, m: Mutation) -> None:
    p = root / m.path
    text = p.read_text()
    n = text.count(m.old)
    if n != 1:
        raise SystemExit(f"mutation {m.name!r}: the snippet occurs {n} times in {m.path} (expected once); "
                         f"update tools/mutations.py")
    p.write_text(text.replace(m.old, m.new))


def run_one(m: Mutation, full: bool, timeout: int) -> tuple[bool, float, str]:
    """Plant ``m`` in a copy of the tree and run pytest; returns (caught, seconds, last line of pytest)."""
    with tempfile.TemporaryDirectory(prefix="vreid_mutation_") as d:
        root = Path(d)
        _copy_tree(root)
        _apply(root, m)
        args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *(() if full else m.tests)]
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        t0 = time.time()
        try:
            p = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
            caught, tail = p.returncode != 0, (p.stdout.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            caught, tail = False, f"timed out after {timeout} s"
        return caught, time.time() - t0, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="run the whole default suite for every mutation")
    ap.add_argument("--only", default="", help="run the mutations whose name contains this text")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per mutation")
    ap.add_argument("--table", type=Path, default=None, help="also write the markdown table to this file")
    a = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if a.only.lower() in m.name.lower()]
    rows = ["| mutation | file | tests run | caught | seconds | pytest's last line |", "|---|---|---|---|---|---|"]
    survived = 0
    for m in chosen:
        caught, secs, tail = run_one(m, a.full, a.timeout)
        survived += not caught
        tests = "whole suite" if a.full else ", ".join(m.tests)
        rows.append(f"| {m.name} | `{m.path}` | {tests} | {'yes' if caught else '**NO**'} | {secs:.0f} | {tail} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print("\n" + table)
    if a.table:
        a.table.write_text(table + "\n")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
