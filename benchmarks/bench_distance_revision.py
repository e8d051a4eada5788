"""The cosine distance of this tree against another revision's ``evaluation/distance.py``, in one run.

For a change to ``gallery_distance_fn``: features -> exact metrics (``RankAccumulator`` over query chunks) with
each revision's distance, interleaved, median wall time; whether mAP / mINP / CMC are bit-identical; and the
largest distance difference (also in float32 eps). Problems: ``bench_veriwild.make_problem`` at VeRi-776's
sizes (1,678 x 11,579) and at VERI-Wild Small (3,000 x 38,861).

Usage (one thread):
    OMP_NUM_THREADS=1 python benchmarks/bench_distance_revision.py --rev 003f032~1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_veriwild import make_problem  # noqa: E402

from vreid_lightning.evaluation import distance as current  # noqa: E402
from vreid_lightning.evaluation.rank import RankAccumulator, auto_chunk_size  # noqa: E402


def load_revision(rev: str):
    """``vreid_lightning/evaluation/distance.py`` at ``rev`` as a module."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:vreid_lightning/evaluation/distance.py"],
                         capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "distance_rev.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("distance_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def evaluate(mod, p: dict, q: torch.Tensor, g: torch.Tensor) -> dict:
    fn = mod.gallery_distance_fn(g, "cosine")
    acc = RankAccumulator(p["gi"], p["gc"], max_rank=50)
    step = auto_chunk_size(q.shape[0], g.shape[0])
    for s in range(0, q.shape[0], step):
        acc.update(fn(q[s:s + step]), p["qi"][s:s + step], p["qc"][s:s + step])
    return acc.compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", required=True, help="git revision whose distance.py is compared")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = load_revision(args.rev)
    cases = [("VeRi-sized", 1678, 11579, 2048, args.repeats), ("VeRi-sized", 1678, 11579, 512, args.repeats),
             ("VERI-Wild Small", 3000, 38861, 2048, 1)]
    for name, nq, ng, dim, reps in cases:
        p = make_problem(nq, ng, dim, 0)
        q, g = torch.as_tensor(p["q"]), torch.as_tensor(p["g"])
        times: dict[str, list[float]] = {"old": [], "new": []}
        res = {}
        for r in range(reps):
            order = (("old", old), ("new", current)) if r % 2 == 0 else (("new", current), ("old", old))
            for key, mod in order:
                t0 = time.perf_counter()
                res[key] = evaluate(mod, p, q, g)
                times[key].append(time.perf_counter() - t0)
        d = (old.gallery_distance_fn(g, "cosine")(q[:400]) - current.gallery_distance_fn(g, "cosine")(q[:400])).abs()
        same = all(res["old"][k] == res["new"][k] for k in ("mAP", "mINP")) and np.array_equal(
            res["old"]["cmc"], res["new"]["cmc"])
        t_old, t_new = float(np.median(times["old"])), float(np.median(times["new"]))
        print(f"{name} {nq} x {ng}, {dim}-d: old {t_old:.2f} s, new {t_new:.2f} s, old/new {t_old / t_new:.3f} "
              f"(median of {reps}); metrics bit-identical: {same} (mAP {res['old']['mAP']:.10f} / "
              f"{res['new']['mAP']:.10f}, mINP {res['old']['mINP']:.10f} / {res['new']['mINP']:.10f}, rank-1 "
              f"{res['old']['cmc'][0]:.6f} / {res['new']['cmc'][0]:.6f}); |d_old - d_new| max {float(d.max()):.3g} "
              f"({float(d.max()) / torch.finfo(torch.float32).eps:.1f} eps), differing {float((d > 0).double().mean()):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
