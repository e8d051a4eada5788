"""Evaluate saved test features under a list of post-processing steps (VehicleNet Table VI as one command).

    python -m vreid_lightning.evaluate RUN_DIR_OR_FEATURES [MORE ...] --steps qe,camera_verification,rerank
    python -m vreid_lightning.evaluate A/features.npz B/features.npz --cumulative \\
        --steps crop,ensemble,qe,camera_verification,rerank --crop A/crop.npz B/crop.npz
    python -m vreid_lightning.evaluate RUN --steps rerank --set rerank.k1=30 --set rerank.lambda_value=0.5

Each input is a ``features.npz`` written by a test run (``evaluation.saved_features``), or a run directory
holding one (a staged run: its last stage's); a run directory without one but with a checkpoint is tested
again from its checkpoint (``train=false``) to write it. Several inputs are several models of the same
images (the ``ensemble`` step concatenates them; otherwise the first is used). ``--cumulative`` evaluates
the plain ranking and then the steps added one at a time, in the order listed: Table VI's layout, steps
as columns, mAP and rank-1 per column, written to ``results.json`` and ``table.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vreid_lightning.errors import ConfigError, DatasetFormatError
from vreid_lightning.evaluation.postprocess import STEP_DEFAULTS, cumulative_table, parse_steps, postprocess_evaluate
from vreid_lightning.evaluation.saved_features import FeatureSet, load_features

__all__ = ["main", "build_parser", "resolve_features", "format_table"]

STEP_TITLES = {
    "crop": "with Cropped Image?", "ensemble": "Model Ensemble?", "qe": "Query Expansion?",
    "aqe": "Average Query Expansion?", "dba": "Database Augmentation?", "camera_verification": "Camera Verification?",
    "time_window": "Time Window?", "rerank": "Re-ranking?",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vreid_lightning.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("inputs", nargs="+", help="features.npz files or run directories (one per model)")
    p.add_argument("--steps", default="", help=f"comma-separated steps, of {list(STEP_DEFAULTS)}")
    p.add_argument("--set", action="append", default=[], metavar="STEP.PARAM=VALUE", help="override a step parameter")
    p.add_argument("--cumulative", action="store_true", help="add the steps one at a time (Table VI layout)")
    p.add_argument("--crop", nargs="+", default=[], help="features.npz of the cropped images, one per input")
    p.add_argument("--camera-features", help="features.npz of a camera model's test run (camera_verification)")
    p.add_argument("--extract-crops", metavar="BOXES", help="extract the cropped-image features (step crop) of "
                   "each input run from its checkpoint: a boxes file (CSV image,x0,y0,x1,y1), 'dataset' (the synthetic "
                   "world's synth_boxes.csv) or maskrcnn:WEIGHTS")
    p.add_argument("--metric", choices=["cosine", "euclidean"], help="plain ranking metric (default: the run's)")
    p.add_argument("--out", help="output directory (default: <first input's directory>/postprocess)")
    p.add_argument("--device", default="cpu")
    return p


def resolve_features(path: str | Path) -> Path:
    """The features.npz of ``path`` (a file, a run directory, or a staged run's last stage); a run without
    one but with a checkpoint is tested again from it."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetFormatError(path, "a features.npz file or a run directory", got="no such file or directory")
    if (path / "features.npz").is_file():
        return path / "features.npz"
    stages = sorted((path / "stages").glob("*/features.npz"), key=lambda p: p.stat().st_mtime)
    if stages:
        return stages[-1]
    return _features_from_checkpoint(path)


def _features_from_checkpoint(run: Path) -> Path:
    """Test ``run``'s checkpoint again (its resolved config, ``train=false``) so that it writes features.npz."""
    from omegaconf import OmegaConf

    from vreid_lightning.run import run as run_experiment

    cfg_path = run / "config_resolved.yaml"
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not cfg_path.is_file() or not ckpts:
        raise DatasetFormatError(run, "features.npz, or config_resolved.yaml and checkpoints/*.ckpt of a run")
    cfg = OmegaConf.load(cfg_path)
    if cfg.get("stages"):
        raise ConfigError(f"{run}: a staged run without saved features; pass stages/<name>/features.npz")
    best = [c for c in ckpts if c.name != "last.ckpt"] or ckpts
    out = run / "retest"
    cfg.train, cfg.ckpt_path, cfg.paths.output_dir, cfg.logger = False, str(best[-1]), str(out), None
    run_experiment(cfg)
    return out / "features.npz"


def _crop_run_config(run: Path) -> tuple[Any, Path, Path]:
    """(config, checkpoint folder, output folder) of a run for ``--extract-crops``: a plain run directory,
    a staged run (its last stage) or one stage's folder ``RUN/stages/NAME`` (the stage's merged config)."""
    from omegaconf import OmegaConf

    from vreid_lightning.runner.stages import stage_config

    run = Path(run)
    if run.parent.name == "stages" and (run.parent.parent / "config_resolved.yaml").is_file():
        root, stage = run.parent.parent, run.name
    else:
        root, stage = run, None
    if not (root / "config_resolved.yaml").is_file():
        raise DatasetFormatError(run, "a run directory with config_resolved.yaml and checkpoints/*.ckpt (--extract-crops)")
    cfg = OmegaConf.load(root / "config_resolved.yaml")
    if cfg.get("stages"):
        names = list(cfg.stages)
        stage = stage or names[-1]
        if stage not in names:
            raise ConfigError(f"--extract-crops: {run}: no stage {stage!r} in its config (stages: {names})")
        return stage_config(cfg, stage), root / "stages" / stage / "checkpoints", root / "stages" / stage
    return cfg, root / "checkpoints", root


def extract_crop_features(run: Path, boxes: str, device: str = "cpu") -> Path:
    """Features of ``run``'s test images cropped to their vehicle boxes (VehicleNet sec. IV-C), from the
    run's checkpoint; written to ``crop_features.npz`` beside the run's (or stage's) features. ``boxes``: a boxes file, or
    ``maskrcnn:WEIGHTS`` (torchvision Mask R-CNN with a local weights file)."""
    import dataclasses

    import torch
    from hydra.utils import get_class, instantiate
    from torch.utils.data import DataLoader

    from vreid_lightning.data.datamodule import ImageDataset
    from vreid_lightning.data.transforms import build_test_transform
    from vreid_lightning.evaluation.saved_features import from_eval_set, save_features
    from vreid_lightning.evaluation.tta import MaskRCNNBoxes, lookup_box, read_boxes

    cfg, ckpt_dir, out_dir = _crop_run_config(run)
    ckpts = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise DatasetFormatError(ckpt_dir, "checkpoints/*.ckpt of a run (--extract-crops)", got="no checkpoint")
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("test")
    eval_set = dm.eval_set
    from vreid_lightning.evaluation.protocol_registry import get_protocol

    if not get_protocol(eval_set).fixed_query_gallery:
        raise ConfigError(f"--extract-crops: {run} is tested under the {eval_set.protocol!r} protocol, not query/gallery")
    split = eval_set.split
    if boxes.startswith("maskrcnn:"):
        detector = MaskRCNNBoxes(boxes.split(":", 1)[1], device=device)
        raw = ImageDataset(split, build_test_transform(dm.image_size, mean=(0, 0, 0), std=(1, 1, 1)))
        found = []
        for i in range(len(split)):  # detector boxes in the resized frame, mapped back to the image's pixels
            img = raw.load(i)
            box = detector([raw.transform(img)])[0]
            sx, sy = img.size[0] / dm.image_size[1], img.size[1] / dm.image_size[0]
            found.append(None if box is None else (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    else:
        if boxes == "dataset":  # the synthetic world's tight boxes (generator >= 1.3.0) beside its layout
            from vreid_lightning.synth import BOXES

            boxes = str(dm.data_root / BOXES)
            if not Path(boxes).is_file():
                raise DatasetFormatError(boxes, f"the dataset's {BOXES} (synthetic worlds of generator >= 1.3.0 write "
                                         "it); for a real dataset give a boxes file or maskrcnn:WEIGHTS", got="no such file")
        table = read_boxes(boxes)
        found = [lookup_box(table, p) for p in split.paths]
    arr = np.array([[-1, -1, -1, -1] if b is None else [int(b[0]), int(b[1]), int(round(b[2])), int(round(b[3]))]
                    for b in found], dtype=np.int64)
    model = get_class(cfg.model._target_).load_from_checkpoint(str(ckpts[-1]), map_location=device, weights_only=False)
    model.eval()
    ds = ImageDataset(dataclasses.replace(split, boxes=arr), build_test_transform(dm.image_size))
    parts: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=int(cfg.data.get("eval_batch_size", 64))):
            parts.append(model.main_features({**batch, "image": batch["image"].to(device)}).cpu())
    out = save_features(from_eval_set(torch.cat(parts), eval_set, model.eval_cfg["metric"]), out_dir / "crop_features.npz")
    print(f"cropped-image features of {len(split)} images ({int((arr[:, 0] >= 0).sum())} with a box): {out}")
    return out


def _source_experiment(paths: list[Path]) -> str | None:
    """The experiment the first input's features come from (its run's, or its staged run's, resolved config), so
    that the shared table generator attributes the evaluation's results; None when no config is found."""
    feats = Path(paths[0]).resolve()
    for cand in (feats.parent, feats.parent.parent.parent):  # RUN/features.npz, RUN/stages/NAME/features.npz
        cfg = cand / "config_resolved.yaml"
        if cfg.is_file():
            return (yaml.safe_load(cfg.read_text()) or {}).get("experiment_name")
    return None


def _overrides(sets: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in sets:
        key, eq, value = item.partition("=")
        step, dot, param = key.partition(".")
        if not eq or not dot:
            raise ConfigError(f"--set {item!r}: expected STEP.PARAM=VALUE, e.g. rerank.k1=30")
        out.setdefault(step, {})[param] = yaml.safe_load(value)
    return out


def _steps_spec(names: str, sets: list[str]) -> list[dict[str, Any]]:
    listed = [s.strip() for s in names.split(",") if s.strip()]
    over = _overrides(sets)
    stray = set(over) - set(listed)
    if stray:
        raise ConfigError(f"--set: step(s) {sorted(stray)} are not in --steps {listed}")
    spec = [{n: over.get(n, {})} for n in listed]
    parse_steps(spec)  # validates names and parameters up front
    return spec


def format_table(columns: list[dict[str, Any]], title: str = "") -> str:
    """Markdown in Table VI's layout: one column per entry, a check mark per step used, mAP and rank-1 (%)."""
    steps = [c["added"] for c in columns if c["added"] != "none"]
    head = "| Method | " + " | ".join(str(i) for i in range(len(columns))) + " |"
    lines = ([f"**{title}**", ""] if title else []) + [head, "|---" * (len(columns) + 1) + "|"]
    for s in steps:
        lines.append(f"| {STEP_TITLES[s]} | " + " | ".join("✓" if s in c["steps"] else "" for c in columns) + " |")
    for key, label in (("mAP", "mAP (%)"), ("rank1", "Rank@1 (%)")):
        lines.append(f"| {label} | " + " | ".join(f"{100 * c[key]:.2f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    paths = [resolve_features(p) for p in args.inputs]
    sets = [load_features(p) for p in paths]
    if args.extract_crops:
        if args.crop:
            raise ConfigError("--crop and --extract-crops: give one of them")
        args.crop = [str(extract_crop_features(Path(r), args.extract_crops, args.device)) for r in args.inputs]
    if args.crop:
        if len(args.crop) != len(sets):
            raise ConfigError(f"--crop: expected one file per input ({len(sets)}), got {len(args.crop)}")
        for fs, cp in zip(sets, args.crop):
            crop = load_features(resolve_features(cp))
            _check_rows(fs, crop)
            fs.views["crop"] = crop.views[""]
    if args.camera_features:
        cam = load_features(resolve_features(args.camera_features))
        _check_rows(sets[0], cam)
        sets[0].views["cam"] = cam.views[""]
    spec = _steps_spec(args.steps, args.set)
    out: dict[str, Any] = {"inputs": [str(p) for p in paths], "experiment": _source_experiment(paths),
                           "steps": parse_steps(spec)}
    if args.cumulative:
        cols = cumulative_table(sets, spec, args.metric, device=args.device)
        out["columns"] = cols
        out["test"] = {k: v for k, v in cols[-1].items() if k not in ("steps", "added")}
    else:
        out["test"] = postprocess_evaluate(sets, spec, args.metric, device=args.device)
        cols = [{"steps": list(out["steps"]), "added": "all", **out["test"]}]
    out_dir = Path(args.out) if args.out else paths[0].parent / "postprocess"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(out, indent=2))
    if args.cumulative:
        (out_dir / "table.md").write_text(format_table(cols, "Effect of the post-processing steps"))
        print(format_table(cols))
    else:
        print(json.dumps(out["test"], indent=2))
    print(f"written to {out_dir}")
    return out


def _check_rows(fs: FeatureSet, other: FeatureSet) -> None:
    from vreid_lightning.evaluation.saved_features import check_aligned

    check_aligned([fs, other])


def main(argv: list[str] | None = None) -> int:
    from vreid_lightning.errors import USER_ERRORS, format_user_error

    args = build_parser().parse_args(argv)
    try:
        run_evaluate(args)
    except USER_ERRORS as e:
        print(format_user_error(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
