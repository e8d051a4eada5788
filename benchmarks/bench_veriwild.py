"""VERI-Wild at full scale: exact evaluation, k-reciprocal re-ranking, camera verification and time window.

Synthetic features of the real test-set shapes (Small 3,000 queries x 38,861 gallery, Medium 5,000 x 64,389,
Large 10,000 x 128,517, and VERI-Wild 2.0's "about 400K" test images taken as 10,000 x 390,000), with
identity / camera / time structure like VERI-Wild's (one query per id, ~13 gallery images per id over 4 of
174 cameras, a month of timestamps), go through the suite's evaluation path
(``evaluation.postprocess.postprocess_evaluate``: the streaming exact mAP/CMC/mINP, then ``rerank`` over
all query + gallery items, then ``camera_verification`` and ``time_window``), each phase in its own
subprocess: peak RSS = VmHWM after ``/proc/self/clear_refs`` (reset once the features are built, so
the peak includes the resident features), and ``ru_maxrss`` of the whole child for reference.

Peers, written plainly here and measured in the same run:
- ``peer_eval``: FastReID's evaluator shape (``fastreid/evaluation/rank.py`` ``eval_market1501``, the
  Python path; its Cython build is not here): the full Q x G distance matrix, ``np.argsort`` of it, the
  Q x G int32 ``matches`` matrix, a Python loop per query. Run on Small, where it fits.
- ``peer_rerank``: the dense k-reciprocal re-ranking in the shape of Zhong et al.'s released code
  (``tests/rerank_reference.py``, the suite's test reference): dense N x N arrays. On Small (41,861 items,
  7 GB per N x N float32 array, several held) it does not fit this machine's 24 GB shared with others, so
  it runs on a Small-shaped quarter (750 x 9,715) against ours on the same quarter.

Usage (single-threaded; each phase prints one JSON line, then a Markdown table). Everything takes about an
hour on a loaded 2-core machine (Large re-ranking alone ~20 min, FastReID's loop on Small ~7 min): run parts.
    OMP_NUM_THREADS=1 python benchmarks/bench_veriwild.py
    python benchmarks/bench_veriwild.py --sets small --dims 512 --phases eval peer_eval
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

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from bench_evaluation import _rss_kb  # noqa: E402

SETS = {  # name: (queries, gallery) -- CVPR 2019 Table 2 (images = queries + gallery); 2.0: about 400K
    "small": (3_000, 38_861), "medium": (5_000, 64_389), "large": (10_000, 128_517), "v2": (10_000, 390_000),
    "quarter": (750, 9_715),  # a Small-shaped quarter, where the dense re-ranking peer fits
}
N_CAMS = 174          # VERI-Wild: 174 cameras
CAMS_PER_ID = 4       # cameras an identity is seen by in the synthetic test set
MONTH = 30 * 24 * 3600
TAU = 6 * 3600        # time_window tau in seconds (VERI-Wild times read as seconds)
POST_STEPS = ["rerank", "camera_verification", {"time_window": {"tau": TAU}}]


def make_problem(nq: int, ng: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One query per id, the gallery spread over the ids (>= 1 each), 4 cameras per id, times within hours.

    Features: identity centre + camera bias + unit noise (float32, built in place); the centre spread of
    ``bench_rerank.make_problem`` (0.45 at 512-d, scaled with dim^-1/4).
    """
    rng = np.random.default_rng([seed, dim])
    counts = 1 + rng.multinomial(ng - nq, np.full(nq, 1.0 / nq))
    gi = np.repeat(np.arange(nq), counts)
    qi = np.arange(nq)
    id_cams = np.stack([rng.choice(N_CAMS, CAMS_PER_ID, replace=False) for _ in range(nq)])
    qc = id_cams[:, 0]
    gc = id_cams[gi, rng.integers(0, CAMS_PER_ID, ng)]
    base = rng.integers(0, MONTH, nq)
    qt = base + rng.normal(0, 7200, nq).astype(np.int64)
    gt = base[gi] + rng.normal(0, 7200, ng).astype(np.int64)
    centres = (0.45 * (512 / dim) ** 0.25 * rng.standard_normal((nq, dim), dtype=np.float32))
    bias = (0.1 * rng.standard_normal((N_CAMS, dim), dtype=np.float32))

    def feats(ids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        x = rng.standard_normal((len(ids), dim), dtype=np.float32)
        for s in range(0, len(ids), 65536):
            x[s:s + 65536] += centres[ids[s:s + 65536]]
            x[s:s + 65536] += bias[cams[s:s + 65536]]
        return x

    return {"q": feats(qi, qc), "g": feats(gi, gc), "qi": qi, "gi": gi, "qc": qc, "gc": gc, "qt": qt, "gt": gt}


def peer_eval(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50):
    """FastReID ``eval_market1501`` (Python path), plainly: full argsort, full matches, a loop per query."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(distmat.shape[0]):
        order = indices[q_idx]
        keep = ~((g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx]))
        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        max_pos = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[max_pos] / (max_pos + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = np.asarray([x / (i + 1.0) for i, x in enumerate(raw_cmc.cumsum())]) * raw_cmc
        all_ap.append(tmp.sum() / raw_cmc.sum())
    cmc = np.asarray(all_cmc, dtype=np.float32).sum(0) / len(all_cmc)
    return cmc, float(np.mean(all_ap)), float(np.mean(all_inp))


def child(args: argparse.Namespace) -> None:
    """One phase on one problem in this process; prints a JSON line."""
    torch.set_num_threads(1)
    from vreid_lightning.evaluation.postprocess import postprocess_evaluate
    from vreid_lightning.evaluation.saved_features import FeatureSet

    nq, ng = SETS[args.set]
    t0 = time.perf_counter()
    p = make_problem(nq, ng, args.dim, args.seed)
    build_s = time.perf_counter() - t0
    fs = FeatureSet(views={"": (p["q"], p["g"])}, metric="cosine",
                    query={"ids": p["qi"], "cams": p["qc"], "times": p["qt"], "paths": np.arange(nq)},
                    gallery={"ids": p["gi"], "cams": p["gc"], "times": p["gt"], "paths": np.arange(ng)})
    base_kb = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    if args.phase == "eval":
        res = postprocess_evaluate(fs)
    elif args.phase == "rerank":
        res = postprocess_evaluate(fs, ["rerank"])
    elif args.phase == "post":
        res = postprocess_evaluate(fs, POST_STEPS)
    elif args.phase == "peer_eval":
        q = torch.nn.functional.normalize(torch.as_tensor(p["q"]), dim=1)
        g = torch.nn.functional.normalize(torch.as_tensor(p["g"]), dim=1)
        distmat = (1 - q @ g.T).numpy()  # FastReID build_dist(metric="cosine")
        cmc, m_ap, m_inp = peer_eval(distmat, p["qi"], p["gi"], p["qc"], p["gc"])
        res = {"mAP": m_ap, "rank1": float(cmc[0]), "mINP": m_inp}
    elif args.phase == "peer_rerank":
        from rerank_reference import reference_from_features

        from vreid_lightning.evaluation import evaluate_rank

        dist = reference_from_features(p["q"], p["g"])
        r = evaluate_rank(dist, p["qi"], p["gi"], p["qc"], p["gc"])
        res = {"mAP": r["mAP"], "rank1": float(r["cmc"][0]), "mINP": r["mINP"]}
    else:
        raise ValueError(f"unknown phase {args.phase!r}")
    seconds = time.perf_counter() - t0
    out = {"set": args.set, "dim": args.dim, "phase": args.phase, "queries": nq, "gallery": ng,
           "seconds": round(seconds, 2), "build_seconds": round(build_s, 2),
           "features_mb": round((p["q"].nbytes + p["g"].nbytes) / 2**20, 1),
           "base_rss_mb": round(base_kb / 1024, 1), "peak_rss_mb": round(_rss_kb("VmHWM") / 1024, 1),
           "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "mAP": round(float(res["mAP"]), 5), "rank1": round(float(res["rank1"]), 5),
           "mINP": round(float(res["mINP"]), 5)}
    print(json.dumps(out), flush=True)


def run_phase(set_name: str, dim: int, phase: str, seed: int, timeout: int) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--set", set_name, "--dim", str(dim),
           "--phase", phase, "--seed", str(seed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(json.dumps({"set": set_name, "dim": dim, "phase": phase, "error": f"timeout {timeout} s"}), flush=True)
        return None
    if proc.returncode != 0:
        print(json.dumps({"set": set_name, "dim": dim, "phase": phase,
                          "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"rc {proc.returncode}"}),
              flush=True)
        return None
    line = proc.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def table(rows: list[dict]) -> str:
    head = ("| set | dim | Q x G | phase | seconds | peak RSS MB | features MB | mAP | rank-1 | mINP |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['set']} | {r['dim']} | {r['queries']:,} x {r['gallery']:,} | {r['phase']} | "
                     f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['features_mb']:.0f} | {r['mAP']:.4f} | "
                     f"{r['rank1']:.4f} | {r['mINP']:.4f} |")
    return "\n".join(lines)


def _above(r: dict) -> float:
    """Peak RSS above the runtime and the resident features (MB)."""
    return r["peak_rss_mb"] - r["base_rss_mb"]


def ratios(rows: list[dict]) -> list[str]:
    """Peer / suite ratios for the pairs measured in this run."""
    out = []
    by = {(r["set"], r["dim"], r["phase"]): r for r in rows}
    for (s, d, ph), peer in by.items():
        mine = by.get((s, d, {"peer_eval": "eval", "peer_rerank": "rerank"}.get(ph, "")))
        if ph.startswith("peer") and mine:
            out.append(f"{s} {d}-d {ph}: time peer/suite {peer['seconds'] / mine['seconds']:.1f}x, peak RSS "
                       f"peer/suite {peer['peak_rss_mb'] / mine['peak_rss_mb']:.1f}x, peak above the features "
                       f"peer/suite {_above(peer) / max(_above(mine), 1):.1f}x, "
                       f"|dmAP| {abs(peer['mAP'] - mine['mAP']):.1e}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["small", "medium", "large", "v2"], choices=sorted(SETS))
    p.add_argument("--dims", nargs="+", type=int, default=[512, 2048])
    p.add_argument("--phases", nargs="+", default=None,
                   help="default: eval on every set and dim (2.0: first dim); peer_eval, rerank, post on small "
                        "512-d; post on large 512-d; rerank and peer_rerank on the quarter set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phase-timeout", type=int, default=900)
    p.add_argument("--child", action="store_true")
    p.add_argument("--set", default="small")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--phase", default="eval")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    plan: list[tuple[str, int, str]] = []
    if args.phases is not None:
        plan = [(s, d, ph) for s in args.sets for d in args.dims for ph in args.phases]
    else:
        for s in args.sets:
            for d in args.dims if s != "v2" else args.dims[:1]:  # 2.0 at the first dim only (CPU time)
                plan.append((s, d, "eval"))
        if "small" in args.sets:  # the peer's per-query Python loop does not depend on the dim: once
            plan.append(("small", args.dims[0], "peer_eval"))
        plan += [("quarter", 512, "rerank"), ("quarter", 512, "peer_rerank"), ("small", 512, "rerank"),
                 ("small", 512, "post"), ("large", 512, "post")]
    rows = [r for r in (run_phase(s, d, ph, args.seed, args.phase_timeout) for s, d, ph in plan) if r]
    print()
    print(table(rows))
    for line in ratios(rows):
        print(line)


if __name__ == "__main__":
    main()
