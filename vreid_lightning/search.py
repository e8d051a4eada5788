"""Rank a gallery for each query: a picture, and the lists as JSON and CSV (path, distance, rank).

    python -m vreid_lightning.search RUN_OR_CKPT --query car.jpg --gallery DIR --topk 10 --out ranklist.png
    python -m vreid_lightning.search RUN_OR_CKPT --query QDIR --gallery gallery.npz --out ranks.png --rerank
    python -m vreid_lightning.search RUN/features.npz --topk 10 --out ranks.png     # a test run's own lists

The first argument is a trained run (a run directory or a checkpoint inside one) or a features.npz. Query and
gallery are each images (a file, a folder, a quoted glob; their features are extracted as ``extract`` does,
which needs a checkpoint) or a features.npz (``extract``'s output, or a test run's): its query side for
--query and its gallery side for --gallery (the other side when that one is empty), never recomputed.
Without --query/--gallery, the first argument's features.npz gives them.

Distances are the run's metric (--metric to change), after the post-processing steps named in --steps (the
evaluator's: ``qe``, ``aqe``, ``dba``, ``rerank``, ``camera_verification``, ``time_window``; parameters with
--set STEP.PARAM=VALUE). The top-k is taken block by block (``evaluation.topk``): memory is one chunk of
queries against the gallery, so a 100k gallery is searched in bounded memory. When every image has an id and a
camera, gallery images of the query's id and camera are removed as in the evaluation (--keep-junk keeps them).

Writes ``--out`` (PNG: the first --show queries, green/red frames when ids are known), and beside it
``<out>.json`` (per query: path, id, ranked results with rank, path, distance, id) and ``<out>.csv``
(``query,rank,path,distance,query_id,gallery_id``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vreid_lightning.errors import ConfigError

__all__ = ["build_parser", "main", "run_search", "search_features"]


def _is_features(path: str | None) -> bool:
    return bool(path) and str(path).endswith(".npz")


def _side(fs: Any, prefer: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    other = "gallery" if prefer == "query" else "query"
    i = 0 if prefer == "query" else 1
    feats, labels = fs.views[""][i], getattr(fs, prefer)
    if feats.shape[0] == 0:
        feats, labels = fs.views[""][1 - i], getattr(fs, other)
    if feats.shape[0] == 0:
        raise ConfigError(f"{fs.source}: no features on either side")
    return feats, labels


def _images(trained: Any, where: str, flag: str, args: argparse.Namespace) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from vreid_lightning.extract import extract_features, list_images, parse_labels

    if trained is None:
        raise ConfigError(f"{flag} {where}: images need a checkpoint to extract their features; give a run or "
                          "checkpoint as the first argument, or a features.npz to {flag}")
    paths = list_images(where)
    feats, errors, _ = extract_features(trained, paths, args.feature, args.strict, device=args.device)
    if errors:
        print(f"{flag}: {len(errors)} unreadable image(s) skipped: "
              + ", ".join(paths[i] for i in sorted(errors)[:5]) + (" ..." if len(errors) > 5 else ""), file=sys.stderr)
    keep = np.array([i not in errors for i in range(len(paths))])
    ids, cams = parse_labels(paths, args.label_regex)
    kept = [p for p, k in zip(paths, keep) if k]
    return feats[keep], {"ids": ids[keep], "cams": cams[keep], "times": np.full(len(kept), -1, np.int64),
                         "paths": np.asarray(kept, dtype=np.str_)}


def search_features(fs: Any, topk: int, steps: Any = None, metric: str | None = None, keep_junk: bool = False,
                    chunk_size: int | None = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Top-``topk`` gallery rows (-1: none) and distances per query of a FeatureSet, after ``steps``."""
    from vreid_lightning.evaluation.postprocess import ranking_blocks
    from vreid_lightning.evaluation.topk import streaming_topk

    q, g = fs.query, fs.gallery
    labelled = all(bool((side[k] >= 0).all()) for side in (q, g) for k in ("ids", "cams"))
    junk = (q["ids"], q["cams"], g["ids"], g["cams"]) if labelled and not keep_junk else None
    return streaming_topk(ranking_blocks(fs, steps, metric, chunk_size, device), fs.num_query, topk, junk)


def _write_lists(fs: Any, idx: np.ndarray, dist: np.ndarray, stem: Path) -> tuple[Path, Path]:
    q, g = fs.query, fs.gallery
    records = []
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "rank", "path", "distance", "query_id", "gallery_id"])
        for r in range(idx.shape[0]):
            results = []
            for c, j in enumerate(idx[r]):
                if j < 0:
                    continue
                item = {"rank": c + 1, "path": str(g["paths"][j]), "distance": float(dist[r, c]), "id": int(g["ids"][j])}
                results.append(item)
                w.writerow([q["paths"][r], c + 1, item["path"], f"{item['distance']:.6f}", int(q["ids"][r]), item["id"]])
            records.append({"query": str(q["paths"][r]), "query_id": int(q["ids"][r]), "results": results})
    stem.with_suffix(".json").write_text(json.dumps(records, indent=1))
    return stem.with_suffix(".json"), stem.with_suffix(".csv")


def run_search(args: argparse.Namespace) -> dict[str, Any]:
    from vreid_lightning.evaluate import _steps_spec
    from vreid_lightning.evaluation.saved_features import FeatureSet, load_features
    from vreid_lightning.inference import default_device, load_trained
    from vreid_lightning.viz.ranklist import save_rank_list

    args.device = args.device or default_device()
    src = load_features(args.source) if _is_features(args.source) else None
    trained = None if src is not None else load_trained(args.source, args.device)
    sides = {}
    for flag, where, prefer in (("--query", args.query, "query"), ("--gallery", args.gallery, "gallery")):
        if where is None:
            if src is None:
                raise ConfigError(f"{flag} is required when the first argument is a checkpoint")
            sides[prefer] = _side(src, prefer)
        elif _is_features(where):
            sides[prefer] = _side(load_features(where), prefer)
        else:
            sides[prefer] = _images(trained, where, flag, args)
    (qf, ql), (gf, gl) = sides["query"], sides["gallery"]
    if qf.shape[1] != gf.shape[1]:
        raise ConfigError(f"query features are {qf.shape[1]}-d, gallery features {gf.shape[1]}-d: not the same "
                          "model or feature (--feature)")
    metric = args.metric or (src.metric if src is not None else trained.module.eval_cfg["metric"])
    fs = FeatureSet({"": (qf, gf)}, ql, gl, metric)
    if args.rerank and "rerank" not in args.steps.split(","):
        args.steps = ",".join(s for s in (args.steps, "rerank") if s)
    spec = _steps_spec(args.steps, args.set)
    idx, dist = search_features(fs, args.topk, spec, metric, args.keep_junk, args.chunk_size, args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, cs = _write_lists(fs, idx, dist, out)
    n = min(args.show, fs.num_query)
    if n > 0:
        save_rank_list(list(ql["paths"][:n]), ql["ids"][:n].tolist(), list(gl["paths"]), gl["ids"].tolist(),
                       idx[:n], out, legend=bool((ql["ids"][:n] >= 0).any()), distances=dist[:n])
    print(f"{fs.num_query} queries x {fs.num_gallery} gallery images, top {args.topk} ({metric}"
          f"{', steps ' + args.steps if args.steps else ''}): {out}, {js.name}, {cs.name}")
    return {"indices": idx, "distances": dist, "picture": out, "json": js, "csv": cs}


def build_parser() -> argparse.ArgumentParser:
    from vreid_lightning.evaluation.postprocess import STEP_DEFAULTS
    from vreid_lightning.extract import DEFAULT_LABEL_REGEX

    p = argparse.ArgumentParser(prog="python -m vreid_lightning.search", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("source", help="a run directory, a checkpoint inside one, or a features.npz")
    p.add_argument("--query", help="image file, folder, quoted glob, or features.npz (default: the source npz)")
    p.add_argument("--gallery", help="folder, quoted glob, or features.npz (default: the source npz)")
    p.add_argument("--topk", type=int, default=10, help="results per query (default: %(default)s)")
    p.add_argument("--out", required=True, help="the rank-list PNG; .json and .csv are written beside it")
    p.add_argument("--show", type=int, default=8, help="queries drawn in the picture (default: %(default)s)")
    p.add_argument("--steps", default="", help=f"comma-separated post-processing steps, of {list(STEP_DEFAULTS)}")
    p.add_argument("--rerank", action="store_true", help="shorthand for adding rerank to --steps")
    p.add_argument("--set", action="append", default=[], metavar="STEP.PARAM=VALUE", help="override a step parameter")
    p.add_argument("--metric", choices=["cosine", "euclidean"], help="distance (default: the run's)")
    p.add_argument("--feature", help="the feature combination of extracted images (default: the method's main one)")
    p.add_argument("--label-regex", default=DEFAULT_LABEL_REGEX, help="ids and cameras from image file names, as "
                   "in extract (default: %(default)s)")
    p.add_argument("--keep-junk", action="store_true", help="keep gallery images of the query's id and camera")
    p.add_argument("--strict", action="store_true", help="an unreadable image is an error (default: skipped)")
    p.add_argument("--chunk-size", type=int, help="queries per distance block (default: ~8M distances a block)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vreid_lightning.errors import USER_ERRORS, format_user_error

    args = build_parser().parse_args(argv)
    try:
        run_search(args)
    except USER_ERRORS as e:
        print(format_user_error(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
