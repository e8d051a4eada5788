"""Benchmark of k-reciprocal re-ranking (vreid_lightning.evaluation.rerank) against the dense released algorithm.

(a) VeRi-776 size (1,678 queries x 11,579 gallery; 512-d and 2048-d float32 features with identity and
    camera structure): ``k_reciprocal_distances`` against the plain dense reference
    (``tests/rerank_reference.py``, the authors' released code with a stable sort), both from the same
    features with the distance computation counted on both sides, each in its own subprocess (peak
    RSS = VmHWM). Printed: time and peak-memory ratios, the largest difference of the distances and
    the mAP of both.
(b) a 100,000-item run (10,000 queries x 90,000 gallery) streamed into the evaluator
    (``rerank_evaluate``): peak RSS and time (the dense version would need ~40 GB per N x N array).

Usage (run it alone, it is heavy):
    nice -n 10 python benchmarks/bench_rerank.py                 # (a) at 512 and 2048 dims, then (b)
    python benchmarks/bench_rerank.py --part veri --dims 512
    python benchmarks/bench_rerank.py --part large --items 100000 --large-dim 256
    python benchmarks/bench_rerank.py --device cuda --part large  # the same code on the GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from vreid_lightning.evaluation import compute_distance, evaluate_rank  # noqa: E402


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def make_problem(nq: int, ng: int, dim: int, seed: int = 0, n_ids: int = 576, n_cams: int = 20) -> dict[str, np.ndarray]:
    """Identity centre + camera bias + unit noise features (float32) with ids and cameras; the centre
    spread (0.45, scaled with dim^-1/4) puts the plain mAP near 0.5, like a trained model on VeRi."""
    rng = np.random.default_rng(seed)
    qi, gi = rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)
    qc, gc = rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)
    centres = (0.45 * (512 / dim) ** 0.25 * rng.normal(size=(n_ids, dim))).astype(np.float32)
    bias = (0.1 * rng.normal(size=(n_cams, dim))).astype(np.float32)
    q = centres[qi] + bias[qc] + rng.normal(size=(nq, dim)).astype(np.float32)
    g = centres[gi] + bias[gc] + rng.normal(size=(ng, dim)).astype(np.float32)
    return {"q": q, "g": g, "qi": qi, "gi": gi, "qc": qc, "gc": gc}


def child(args: argparse.Namespace) -> None:
    """One measured run in this process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    data = np.load(args.problem)
    q, g = data["q"], data["g"]
    if args.device != "cpu":
        q, g = torch.as_tensor(q, device=args.device), torch.as_tensor(g, device=args.device)
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    if args.variant == "reference":
        from rerank_reference import reference_from_features

        dist = reference_from_features(q, g)
    elif args.variant == "fast":
        from vreid_lightning.evaluation.rerank import k_reciprocal_distances

        dist = k_reciprocal_distances(q, g)
    else:  # streamed into the evaluator
        from vreid_lightning.evaluation.rerank import rerank_evaluate

        res = rerank_evaluate(q, g, data["qi"], data["gi"], data["qc"], data["gc"])
        dist = None
        out["mAP"] = float(res["mAP"])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["seconds"] = time.perf_counter() - t0
    if dist is not None:
        np.save(args.out, dist if isinstance(dist, np.ndarray) else dist.cpu().numpy())
    out.update(peak_mb=_status_kb("VmHWM") / 1024, base_mb=base_kb / 1024)
    print(json.dumps(out))


def run_child(variant: str, problem: str, out: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--problem", problem, "--out", out,
           "--threads", str(args.threads), "--device", args.device]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def part_veri(args: argparse.Namespace, tmp: str) -> None:
    for dim in args.dims:
        data = make_problem(1678, 11579, dim, seed=args.seed)
        problem = os.path.join(tmp, f"veri_{dim}.npz")
        np.savez(problem, **data)
        fast = run_child("fast", problem, os.path.join(tmp, "fast.npy"), args)
        ref = run_child("reference", problem, os.path.join(tmp, "ref.npy"), args)
        d_fast, d_ref = np.load(os.path.join(tmp, "fast.npy")), np.load(os.path.join(tmp, "ref.npy"))
        m_fast = evaluate_rank(d_fast, data["qi"], data["gi"], data["qc"], data["gc"])
        m_ref = evaluate_rank(d_ref, data["qi"], data["gi"], data["qc"], data["gc"])
        same_rank = float(np.mean(np.all(np.argsort(d_fast, 1, kind="stable")[:, :10]
                                         == np.argsort(d_ref, 1, kind="stable")[:, :10], axis=1)))
        inc_f, inc_r = fast["peak_mb"] - fast["base_mb"], ref["peak_mb"] - ref["base_mb"]
        print(f"VeRi size, {dim}-d, {args.threads} threads, {args.device}:")
        print(f"  dense reference : {ref['seconds']:8.1f} s   peak RSS {ref['peak_mb']:7.0f} MB (+{inc_r:.0f} MB)")
        print(f"  fast (chunked)  : {fast['seconds']:8.1f} s   peak RSS {fast['peak_mb']:7.0f} MB (+{inc_f:.0f} MB)")
        print(f"  speed-up {ref['seconds'] / fast['seconds']:.1f}x   peak RSS ratio {fast['peak_mb'] / ref['peak_mb']:.3f} "
              f"(increase over the loaded features: {inc_f / inc_r:.3f})")
        print(f"  max |d_fast - d_ref| = {np.abs(d_fast - d_ref).max():.2e}; top-10 identical for "
              f"{100 * same_rank:.2f}% of queries; mAP {m_fast['mAP']:.6f} vs {m_ref['mAP']:.6f}; "
              f"rank-1 {m_fast['cmc'][0]:.6f} vs {m_ref['cmc'][0]:.6f}")
        plain = evaluate_rank(compute_distance(torch.as_tensor(data["q"]), torch.as_tensor(data["g"]), "euclidean"),
                              data["qi"], data["gi"], data["qc"], data["gc"])
        print(f"  (plain Euclidean ranking: mAP {plain['mAP']:.4f}, rank-1 {plain['cmc'][0]:.4f})")


def part_large(args: argparse.Namespace, tmp: str) -> None:
    nq = args.items // 10
    data = make_problem(nq, args.items - nq, args.large_dim, seed=args.seed, n_ids=args.items // 20)
    problem = os.path.join(tmp, "large.npz")
    np.savez(problem, **data)
    res = run_child("stream", problem, os.path.join(tmp, "unused.npy"), args)
    gb = res["peak_mb"] / 1024
    print(f"{args.items:,} items ({nq:,} queries), {args.large_dim}-d, {args.device}: re-ranked and evaluated "
          f"in {res['seconds']:.1f} s, peak RSS {gb:.2f} GB (limit 4 GB: {'ok' if gb <= 4 else 'EXCEEDED'}), "
          f"mAP {res['mAP']:.4f}" + (f", GPU peak {res['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in res else ""))
    dense_gb = args.items ** 2 * 4 / 2**30
    print(f"  (one dense N x N float32 array would take {dense_gb:.1f} GB; the released code holds four)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["veri", "large", "all"], default="all")
    p.add_argument("--dims", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--large-dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=["fast", "reference", "stream"], dest="variant")
    p.add_argument("--problem")
    p.add_argument("--out")
    args = p.parse_args()
    if args.variant:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("veri", "all"):
            part_veri(args, tmp)
        if args.part in ("large", "all"):
            part_large(args, tmp)


if __name__ == "__main__":
    main()
