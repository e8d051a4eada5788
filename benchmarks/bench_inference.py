"""Benchmark of using a trained model: exported ONNX (onnxruntime CPU) vs the eager PyTorch model, extract's
throughput, and search on a 100k-image gallery.

(a) inference: one network (an experiment's, untrained: speed does not depend on the weights) exported to ONNX
    by ``vreid_lightning.export``; images/s of onnxruntime (CPU) and of the eager ``InferenceNet`` on the same
    batch, interleaved repeats, medians, same threads; the ratio onnxruntime / eager (> 1: ONNX is faster).
(b) extract: images/s of ``extract_features`` (Lightning predict loop: decode, test transform, forward with
    flip) on the synthetic world's test images, beside the eager forward alone (the ratio is the pipeline's cost).
(c) search: in a subprocess, ``search.search_features`` of --queries x --gallery synthetic features (top 10):
    seconds and peak RSS increase, and for scale the size of the full distance matrix.

Usage:
    python benchmarks/bench_inference.py                              # baseline at 224x224, full-width VGG_CNN_M
    python benchmarks/bench_inference.py --experiment scan_synthetic --size 64 --width 0.125
    python benchmarks/bench_inference.py --part search --queries 100 --gallery 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(experiment: str, size: int, width: float, out: Path):
    """An untrained TrainedModel of ``experiment`` at ``size`` x ``size`` input and backbone ``width``."""
    from types import SimpleNamespace

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vreid_lightning.inference import TrainedModel
    from vreid_lightning.runner.fit import build_model
    from vreid_lightning.runner.stages import stage_config

    GlobalHydra.instance().clear()
    over = [f"+experiment={experiment}", f"data.image_size=[{size},{size}]", f"backbone.width_mult={width}",
            f"paths.output_dir={out}", f"paths.cache_dir={out / 'cache'}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=over)
    stage = list(cfg.stages)[-1] if cfg.get("stages") else None
    if stage:
        cfg = stage_config(cfg, stage)
    torch.manual_seed(0)
    module = build_model(cfg, SimpleNamespace(num_classes=576, attribute_classes={"colour": 11, "type": 10}))
    return TrainedModel(module.eval(), cfg, out / "untrained.ckpt", out, stage)


def part_inference(args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    from vreid_lightning.export import InferenceNet, export_model

    with tempfile.TemporaryDirectory() as d:
        trained = build(args.experiment, args.size, args.width, Path(d))
        path, meta = export_model(trained, "onnx", Path(d) / "m.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        net = InferenceNet(trained.module, meta["output"]).eval()
        x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        xn = x.numpy()
        with torch.no_grad():
            net(x)
        sess.run(None, {"images": xn})
        t_eager, t_ort = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                ref = net(x).numpy()
            t_eager.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = sess.run(None, {"images": xn})[0]
            t_ort.append(time.perf_counter() - t0)
        n = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        eager, onnx_ = args.batch / statistics.median(t_eager), args.batch / statistics.median(t_ort)
        return {"experiment": args.experiment, "input": [args.size, args.size], "width_mult": args.width,
                "feature": meta["output"], "dim": meta["output_dim"], "flip_in_graph": meta["flip_averaged"],
                "batch": args.batch, "threads": args.threads, "eager_images_per_s": eager,
                "onnxruntime_images_per_s": onnx_, "ratio_onnxruntime_over_eager": onnx_ / eager,
                "max_abs_diff_after_l2": float(np.abs(n(got) - n(ref)).max())}


def part_extract(args: argparse.Namespace) -> dict:
    from vreid_lightning.data.synthetic import ensure_synthetic_world
    from vreid_lightning.export import InferenceNet
    from vreid_lightning.extract import extract_features, list_images

    with tempfile.TemporaryDirectory() as d:
        world = ensure_synthetic_world(Path(d) / "cache", {"layout": "veri", "ids": 20, "seed": 0, "image_size": 128,
                                                           "images_per_id": 16}, progress=False)
        paths = list_images(str(world / "image_test"))[: args.extract_images]
        trained = build(args.experiment, args.size, args.width, Path(d))
        t0 = time.perf_counter()
        feats, errors, feature = extract_features(trained, paths, batch_size=args.batch, device="cpu", progress=False)
        t_extract = time.perf_counter() - t0
        net = InferenceNet(trained.module, feature).eval()
        x = torch.randn(args.batch, 3, args.size, args.size)
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(0, len(paths), args.batch):
                net(x)
        t_forward = time.perf_counter() - t0
    return {"images": len(paths), "unreadable": len(errors), "extract_images_per_s": len(paths) / t_extract,
            "eager_forward_images_per_s": len(paths) / t_forward, "ratio_extract_over_forward": t_forward / t_extract}


def _search_child(nq: int, ng: int, dim: int, topk: int) -> dict:
    from vreid_lightning.evaluation.saved_features import FeatureSet
    from vreid_lightning.search import search_features

    g = torch.Generator().manual_seed(0)
    ids_g = torch.randint(0, ng // 10, (ng,), generator=g)
    centres = torch.randn(ng // 10, dim, generator=g)
    gf = (centres[ids_g] + 0.5 * torch.randn(ng, dim, generator=g)).numpy()
    ids_q = torch.randint(0, ng // 10, (nq,), generator=g)
    qf = (centres[ids_q] + 0.5 * torch.randn(nq, dim, generator=g)).numpy()
    side = lambda ids: {"ids": ids.numpy(), "cams": np.full(len(ids), -1), "times": np.full(len(ids), -1),  # noqa: E731
                        "paths": np.asarray([f"{i}.jpg" for i in range(len(ids))])}
    fs = FeatureSet({"": (qf, gf)}, side(ids_q), side(ids_g), "cosine")
    rss_before = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    idx, _ = search_features(fs, topk)
    elapsed = time.perf_counter() - t0
    peak = _rss_kb("VmHWM")
    hit1 = float((ids_g.numpy()[idx[:, 0]] == ids_q.numpy()).mean())
    return {"queries": nq, "gallery": ng, "dim": dim, "topk": topk, "seconds": elapsed,
            "queries_per_s": nq / elapsed, "rss_before_mb": rss_before / 1024, "peak_increase_mb": (peak - rss_before) / 1024,
            "features_mb": (nq + ng) * dim * 4 / 2**20, "full_distance_matrix_mb": nq * ng * 4 / 2**20,
            "rank1_of_planted_ids": hit1}


def part_search(args: argparse.Namespace) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import torch; torch.set_num_threads({args.threads}); "
            f"from benchmarks.bench_inference import _search_child; "
            f"print(json.dumps(_search_child({args.queries}, {args.gallery}, {args.dim}, 10)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["inference", "extract", "search", "all"], default="all")
    p.add_argument("--experiment", default="baseline_synthetic")
    p.add_argument("--size", type=int, default=224, help="input side (default 224: RAM sec. 3.2)")
    p.add_argument("--width", type=float, default=1.0, help="backbone.width_mult (default 1: the paper's VGG_CNN_M)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--extract-images", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    parts = ["inference", "extract", "search"] if args.part == "all" else [args.part]
    for part in parts:
        res = {"inference": part_inference, "extract": part_extract, "search": part_search}[part](args)
        print(json.dumps({part: res}, indent=1), flush=True)


if __name__ == "__main__":
    main()
