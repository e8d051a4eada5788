"""Benchmark of the exact ranking metrics (vreid_lightning.evaluation).

(a) speed: a VeRi-776-sized problem (1,678 queries x 11,579 gallery, 200 ids, 20 cameras) with
    realistic scores; ``evaluate_rank`` against ``np.argsort(distmat, axis=1)`` alone, both timed
    in the same run (interleaved, median of repeats), printed as a ratio.
(b) memory: peak RSS increase of ``evaluate_features`` on 10,000 queries x 1,000,000 gallery
    (64-d float32 features), measured in a subprocess; also the time taken.

Usage:
    python benchmarks/bench_evaluation.py                      # both parts
    python benchmarks/bench_evaluation.py --part speed --repeats 7
    python benchmarks/bench_evaluation.py --part memory --queries 1000 --gallery 100000
    python benchmarks/bench_evaluation.py --device cuda        # (a) also on the GPU, (b) on the GPU
    python benchmarks/bench_evaluation.py --threads 2          # torch intra-op threads (default 1)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vreid_lightning.evaluation import compute_distance, evaluate_features, evaluate_rank  # noqa: E402


def synthetic_features(
    num: int, ids: torch.Tensor, cams: torch.Tensor, centres: torch.Tensor, cam_bias: torch.Tensor,
    noise: float, generator: torch.Generator,
) -> torch.Tensor:
    """Identity centre + camera bias + Gaussian noise (float32, built in place)."""
    x = torch.randn(num, centres.shape[1], generator=generator).mul_(noise)
    x += centres[ids]
    x += cam_bias[cams]
    return x


def veri_sized_problem(seed: int = 0, noise: float = 1.05) -> tuple[torch.Tensor, ...]:
    """Cosine distances of a VeRi-776-sized query/gallery split with id and camera structure."""
    g = torch.Generator().manual_seed(seed)
    nq, ng, n_ids, n_cams, dim = 1678, 11579, 200, 20, 64
    gi, qi = torch.randint(0, n_ids, (ng,), generator=g), torch.randint(0, n_ids, (nq,), generator=g)
    gc, qc = torch.randint(0, n_cams, (ng,), generator=g), torch.randint(0, n_cams, (nq,), generator=g)
    centres = torch.randn(n_ids, dim, generator=g)
    cam_bias = 0.5 * torch.randn(n_cams, dim, generator=g)
    q = synthetic_features(nq, qi, qc, centres, cam_bias, noise, g)
    gf = synthetic_features(ng, gi, gc, centres, cam_bias, noise, g)
    return compute_distance(q, gf, "cosine"), qi, gi, qc, gc


def reference_rows(distmat: np.ndarray, q_ids, g_ids, q_cams, g_cams) -> tuple[float, float]:
    """Plain per-query stable sort (the tests' reference) on a subset of rows: (mAP, mINP)."""
    aps, inps = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        match = g_ids[order] == q_ids[i]
        hits = match[~(match & (g_cams[order] == q_cams[i]))]
        if hits.any():
            ranks = np.nonzero(hits)[0] + 1
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
            inps.append(len(ranks) / ranks[-1])
    return float(np.mean(aps)), float(np.mean(inps))


def bench_speed(repeats: int, device: str) -> None:
    dist, qi, gi, qc, gc = veri_sized_problem()
    d_np = dist.numpy()
    print(f"(a) VeRi-sized problem: {dist.shape[0]} x {dist.shape[1]}, 200 ids, 20 cameras, "
          f"float32 cosine distances, torch threads={torch.get_num_threads()}")
    res = evaluate_rank(dist, qi, gi, qc, gc)
    print(f"    mAP={res['mAP']:.4f} rank1={res['cmc'][0]:.4f} rank5={res['cmc'][4]:.4f} "
          f"mINP={res['mINP']:.4f} valid queries={res['num_valid_queries']}/{res['num_queries']}")
    sub = slice(0, 300)
    sub_res = evaluate_rank(dist[sub], qi[sub], gi, qc[sub], gc)
    ref_map, ref_inp = reference_rows(d_np[sub], qi.numpy()[sub], gi.numpy(), qc.numpy()[sub], gc.numpy())
    print(f"    exactness on 300 queries vs per-query stable sort: |dmAP|={abs(sub_res['mAP'] - ref_map):.1e} "
          f"|dmINP|={abs(sub_res['mINP'] - ref_inp):.1e}")
    t_sort, t_eval = [], []
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        t0 = time.perf_counter()
        np.argsort(d_np, axis=1)
        t1 = time.perf_counter()
        evaluate_rank(dist, qi, gi, qc, gc)
        t2 = time.perf_counter()
        t_sort.append(t1 - t0)
        t_eval.append(t2 - t1)
    ms, me = float(np.median(t_sort)), float(np.median(t_eval))
    print(f"    np.argsort(distmat, axis=1) alone: median {ms * 1e3:.1f} ms over {repeats}")
    print(f"    evaluate_rank (exact metrics):     median {me * 1e3:.1f} ms over {repeats}")
    print(f"    ratio argsort / evaluate_rank = {ms / me:.2f}x")
    if device != "cpu":
        dd = dist.to(device)
        args = [t.to(device) for t in (qi, gi, qc, gc)]
        evaluate_rank(dd, *args)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = evaluate_rank(dd, *args)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        t_gsort = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.argsort(dd, dim=1)
            torch.cuda.synchronize()
            t_gsort.append(time.perf_counter() - t0)
        print(f"    on {device}: evaluate_rank median {np.median(times) * 1e3:.1f} ms, torch.argsort "
              f"median {np.median(t_gsort) * 1e3:.1f} ms (|dmAP| vs CPU {abs(out['mAP'] - res['mAP']):.1e})")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status: expected a {field} line")


def memory_child(nq: int, ng: int, dim: int, chunk: int | None, device: str) -> dict:
    """Runs in a fresh process: build features, reset the peak RSS, evaluate, report."""
    g = torch.Generator().manual_seed(0)
    n_ids, n_cams = max(ng // 20, 2), 20
    gi = torch.arange(ng) % n_ids
    qi = torch.randint(0, n_ids, (nq,), generator=g)
    gc, qc = torch.randint(0, n_cams, (ng,), generator=g), torch.randint(0, n_cams, (nq,), generator=g)
    centres = torch.randn(n_ids, dim, generator=g)
    cam_bias = 0.3 * torch.randn(n_cams, dim, generator=g)
    q = synthetic_features(nq, qi, qc, centres, cam_bias, 0.9, g).to(device)
    gf = synthetic_features(ng, gi, gc, centres, cam_bias, 0.9, g).to(device)
    del centres
    rss_before = _rss_kb("VmRSS")
    try:  # reset the kernel's peak-RSS counter (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak_source = "VmHWM after clear_refs"
    except OSError:
        peak_source = "ru_maxrss (includes feature construction)"
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = evaluate_features(q, gf, qi, gi, qc, gc, "cosine", 50, chunk)
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if peak_source.startswith("VmHWM"):
        peak = _rss_kb("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "queries": nq, "gallery": ng, "dim": dim, "seconds": elapsed, "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": peak / 1024, "peak_increase_mb": (peak - rss_before) / 1024, "peak_source": peak_source,
        "mAP": res["mAP"], "rank1": float(res["cmc"][0]), "mINP": res["mINP"],
        "feature_mb": (q.numel() + gf.numel()) * 4 / 2**20, "threads": torch.get_num_threads(),
    }
    if device != "cpu":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_memory(nq: int, ng: int, dim: int, chunk: int | None, device: str, threads: int) -> None:
    print(f"(b) evaluate_features memory: {nq:,} queries x {ng:,} gallery, {dim}-d float32, cosine, "
          f"device={device} (subprocess)")
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", "--queries", str(nq),
           "--gallery", str(ng), "--dim", str(dim), "--device", device, "--threads", str(threads)]
    if chunk is not None:
        cmd += ["--chunk-size", str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed (rc={proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    full_gb = nq * ng * 4 / 2**30
    print(f"    mAP={r['mAP']:.4f} rank1={r['rank1']:.4f} mINP={r['mINP']:.4f}; time {r['seconds']:.1f} s "
          f"({nq * ng / r['seconds'] / 1e6:.0f} M query-gallery pairs/s, {r['threads']} threads)")
    print(f"    features {r['feature_mb']:.0f} MB; RSS before {r['rss_before_mb']:.0f} MB, "
          f"peak {r['peak_rss_mb']:.0f} MB -> peak increase {r['peak_increase_mb']:.0f} MB [{r['peak_source']}]")
    if "cuda_peak_mb" in r:
        print(f"    CUDA allocator peak {r['cuda_peak_mb']:.0f} MB")
    print(f"    (a full float32 distance matrix would be {full_gb:.1f} GB, its int64 argsort {2 * full_gb:.1f} GB)")
    verdict = "OK" if r["peak_increase_mb"] < 4096 else "OVER"
    print(f"    peak increase < 4 GB: {verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["speed", "memory", "both"], default="both")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats for (a)")
    p.add_argument("--queries", type=int, default=10_000, help="queries for (b)")
    p.add_argument("--gallery", type=int, default=1_000_000, help="gallery size for (b)")
    p.add_argument("--dim", type=int, default=64, help="feature dimension for (b)")
    p.add_argument("--chunk-size", type=int, default=None, help="queries per chunk (default: automatic)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: np.argsort is single-threaded, and torch's "
                        "intra-op threads stall badly on a CPU shared with other jobs)")
    p.add_argument("--_memory-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a._memory_child:
        print(json.dumps(memory_child(a.queries, a.gallery, a.dim, a.chunk_size, a.device)))
        return
    if a.part in ("speed", "both"):
        bench_speed(a.repeats, a.device)
    if a.part in ("memory", "both"):
        bench_memory(a.queries, a.gallery, a.dim, a.chunk_size, a.device, a.threads)


if __name__ == "__main__":
    main()
