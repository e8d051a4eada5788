"""Extract the features a test run would compute, for any images, into a features.npz.

    python -m vreid_lightning.extract RUN_OR_CKPT --images 'DIR/**/*.jpg' --out feats.npz
    python -m vreid_lightning.extract RUN_OR_CKPT --list files.txt --out feats.npz --feature f_c+f_b
    python -m vreid_lightning.extract RUN_OR_CKPT --dataset-root /data/VeRi --split query --out q.npz
    python -m vreid_lightning.extract RUN_OR_CKPT --split test --out test.npz   # the run's own test images

The checkpoint's run config gives the test transform (warp-resize to data.image_size, data.input_norm: ImageNet mean/std by default),
the test-time augmentation (model.evaluation.flip / scales) and the feature combination (the method's main
one, or --feature NAME). Features are computed by Lightning's predict loop (``ReIDModule.predict_step``),
batched (data.eval_batch_size), on the GPU when there is one, with a progress bar. The output is the
``features.npz`` format of test runs (``evaluation.saved_features``), so ``evaluate`` and ``search`` read it:
images of --images/--list go to the gallery side (``--as query`` for the query side), a dataset split to its
own side (``test``: query and gallery). Ids and cameras come from the dataset, or from file names matching
--label-regex (named groups ``id``, ``cam``; default VeRi's ``0002_c003_...``), else -1.

Unreadable images are skipped: one line each in ``<out>.unreadable.txt`` and a count on stderr; --strict
makes the first one an error (exit 2).
"""

from __future__ import annotations

import argparse
import glob
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vreid_lightning.errors import ConfigError, DatasetFormatError

__all__ = ["ImageFiles", "extract_features", "list_images", "parse_labels", "build_parser", "main",
           "DEFAULT_LABEL_REGEX", "IMAGE_SUFFIXES"]

DEFAULT_LABEL_REGEX = r"^(?P<id>\d+)_[cC](?P<cam>\d+)_"  # VeRi / CityFlow-style file names
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SIDES = ("query", "gallery")


class ImageFiles(Dataset):
    """Image files through the test transform; an unreadable file gives a zero image and its error."""

    def __init__(self, paths: Sequence[str], transform: Callable, size: tuple[int, int]) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as im:
                img = im.convert("RGB")
            return {"image": self.transform(img), "index": i, "error": ""}
        except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem, reported per file
            return {"image": torch.zeros(3, *self.size), "index": i, "error": f"{type(e).__name__}: {e}"}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "error": [it["error"] for it in items]}


class _Collect:
    """Keeps one feature combination of every batch in a preallocated array (not the whole prediction)."""

    def __init__(self, n: int, feature: str, paths: list[str], strict: bool) -> None:
        self.n, self.feature, self.paths, self.strict = n, feature, paths, strict
        self.feats: np.ndarray | None = None
        self.errors: dict[int, str] = {}

    def add(self, out: dict[str, Any], batch: dict[str, Any]) -> None:
        for i, err in zip(batch["index"].tolist(), batch["error"]):
            if err:
                if self.strict:
                    raise DatasetFormatError(self.paths[i], "a readable image (JPEG/PNG)", got=err)
                self.errors[i] = err
        f = out["features"][self.feature].float().cpu().numpy()
        if self.feats is None:
            self.feats = np.zeros((self.n, f.shape[1]), np.float32)
        self.feats[batch["index"].numpy()] = f


def _writer(collect: _Collect) -> Any:
    from lightning.pytorch.callbacks import BasePredictionWriter

    class Writer(BasePredictionWriter):
        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                               dataloader_idx=0) -> None:
            collect.add(prediction, batch)

    return Writer(write_interval="batch")


def extract_features(trained: Any, paths: Sequence[str], feature: str | None = None, strict: bool = False,
                     batch_size: int | None = None, num_workers: int = 0, device: str | None = None,
                     progress: bool | None = None) -> tuple[np.ndarray, dict[int, str], str]:
    """Features of ``paths`` as the trained model's test run computes them.

    Returns ``(features (N, D) float32, {row: error} of unreadable images (their rows are zero), feature)``.
    """
    import lightning as L

    from vreid_lightning.data.transforms import build_test_transform, input_norm, test_input_size
    from vreid_lightning.inference import default_device

    if not paths:
        raise ConfigError("extract: no images to extract (the glob, list or split is empty)")
    feature = trained.check_feature(feature)
    device = device or default_device()
    opts = dict(trained.cfg.data.get("test_transform") or {})  # the run's test resize (VehicleNet authors: 1.1x)
    norm = input_norm(**dict(trained.cfg.data.get("input_norm") or {}))  # e.g. the RAM authors' BGR 0-255 input
    ds = ImageFiles(paths, build_test_transform(trained.image_size, **{**norm, **opts}),
                    test_input_size(trained.image_size, opts.get("scale", 1.0)))
    loader = DataLoader(ds, batch_size=batch_size or trained.eval_batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    collect = _Collect(len(paths), feature, list(paths), strict)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available: ..." lines around a feature file
    trainer = L.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[_writer(collect)],
                        enable_progress_bar=sys.stderr.isatty() if progress is None else progress)
    trainer.predict(trained.module, dataloaders=loader, return_predictions=False)
    assert collect.feats is not None
    return collect.feats, collect.errors, feature


def list_images(pattern: str | None = None, list_file: str | None = None) -> list[str]:
    """Image paths of a glob (``**`` recursive; a folder means every image under it) or a list file (one path a
    line, relative to the list's folder; blank lines and ``#`` comments skipped), in a stable order."""
    if list_file:
        lf = Path(list_file)
        if not lf.is_file():
            raise DatasetFormatError(lf, "a list of image paths, one a line", got="no such file")
        out = []
        for line in lf.read_text().splitlines():
            s = line.strip()
            if s and not s.startswith("#"):
                p = Path(s)
                out.append(str(p if p.is_absolute() else lf.parent / p))
        return out
    assert pattern is not None
    if Path(pattern).is_dir():
        found = [str(p) for p in sorted(Path(pattern).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    elif Path(pattern).is_file():
        found = [pattern]
    else:
        found = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not found:
        raise ConfigError(f"--images {pattern!r}: no image file matched")
    return found


def parse_labels(paths: Sequence[str], regex: str = DEFAULT_LABEL_REGEX) -> tuple[np.ndarray, np.ndarray]:
    """(ids, cameras) from the file names by ``regex`` (named groups ``id`` and ``cam``); -1 where absent."""
    try:
        pat = re.compile(regex)
    except re.error as e:
        raise ConfigError(f"--label-regex {regex!r}: not a regular expression ({e})") from None
    ids, cams = np.full(len(paths), -1, np.int64), np.full(len(paths), -1, np.int64)
    for i, p in enumerate(paths):
        m = pat.search(Path(p).name)
        if m:
            g = m.groupdict()
            if g.get("id") is not None and g["id"].isdigit():
                ids[i] = int(g["id"])
            if g.get("cam") is not None and g["cam"].isdigit():
                cams[i] = int(g["cam"])
    return ids, cams


def _dataset_rows(trained: Any, root: str | None, name: str | None, split: str) -> dict[str, Any]:
    """side -> Split of a dataset (the run's own data when ``root`` is None)."""
    from hydra.utils import instantiate

    from vreid_lightning.data.datasets import load_dataset

    if root:
        options = dict(trained.cfg.data.get("dataset_options") or {}) if not name else {}
        ds = load_dataset(name or trained.cfg.data.dataset, root, **options)
    else:
        dm = instantiate(trained.cfg.data, _recursive_=False)
        dm.prepare_data()
        dm.setup("test")
        ds = dm.dataset
    parts = {"test": ("query", "gallery")}.get(split, (split,))
    out = {}
    for s in parts:
        got = ds.splits().get(s)
        if got is None:
            raise ConfigError(f"--split {split}: the {ds.name} dataset at {ds.root} has no {s!r} split "
                              f"(splits: {list(ds.splits())})")
        out["gallery" if s == "train" or s.startswith("test_") else s] = got
    return out


def _side(paths: list[str], ids: np.ndarray, cams: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    return {"ids": ids.astype(np.int64), "cams": cams.astype(np.int64), "times": times.astype(np.int64),
            "paths": np.asarray(paths, dtype=np.str_)}


def run_extract(args: argparse.Namespace) -> Path:
    from vreid_lightning.evaluation.saved_features import FeatureSet, save_features
    from vreid_lightning.inference import default_device, load_trained

    sources = sum(bool(x) for x in (args.images, args.list, args.split))
    if sources != 1:
        raise ConfigError("extract: give exactly one of --images, --list or --split (with --dataset-root or the "
                          "run's own data)")
    if args.dataset_root and not args.split:
        raise ConfigError("--dataset-root: also give --split (train, query, gallery or test)")
    device = args.device or default_device()
    trained = load_trained(args.checkpoint, device)
    if args.split:
        sides = {k: (list(s.paths), s.pids, s.camids, s.timestamps)
                 for k, s in _dataset_rows(trained, args.dataset_root, args.dataset, args.split).items()}
    else:
        paths = list_images(args.images, args.list)
        ids, cams = parse_labels(paths, args.label_regex)
        sides = {args.side: (paths, ids, cams, np.full(len(paths), -1, np.int64))}
    order = [s for s in SIDES if s in sides]
    all_paths = [p for s in order for p in sides[s][0]]
    feats, errors, feature = extract_features(trained, all_paths, args.feature, args.strict, args.batch_size,
                                              args.num_workers, device)
    ok = np.ones(len(all_paths), bool)
    ok[list(errors)] = False
    views, labels, start = {}, {}, 0
    for s in SIDES:
        if s not in sides:
            views[s] = np.zeros((0, feats.shape[1]), np.float32)
            labels[s] = _side([], *(np.zeros(0, np.int64),) * 3)
            continue
        paths, ids, cams, times = sides[s]
        keep = ok[start:start + len(paths)]
        views[s] = feats[start:start + len(paths)][keep]
        labels[s] = _side([p for p, k in zip(paths, keep) if k], np.asarray(ids)[keep], np.asarray(cams)[keep],
                          np.asarray(times)[keep])
        start += len(paths)
    fs = FeatureSet({"": (views["query"], views["gallery"])}, labels["query"], labels["gallery"],
                    trained.module.eval_cfg["metric"])
    out = save_features(fs, args.out)
    report = Path(str(out) + ".unreadable.txt")
    if errors:
        report.write_text("".join(f"{all_paths[i]}\t{e}\n" for i, e in sorted(errors.items())))
        print(f"{len(errors)} unreadable image(s) skipped, one line each in {report}", file=sys.stderr)
    elif report.exists():
        report.unlink()
    print(f"{int(ok.sum())} images, feature {feature!r} ({feats.shape[1]}-d), from {trained.checkpoint}: {out}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vreid_lightning.extract", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("checkpoint", help="a run directory or a checkpoint inside one (RUN/checkpoints/*.ckpt)")
    p.add_argument("--images", help="a glob ('DIR/**/*.jpg', quoted), a folder or one image file")
    p.add_argument("--list", help="a text file of image paths, one a line (relative to the file's folder)")
    p.add_argument("--split", help="a dataset split: train, query, gallery, test (query and gallery) or a list such as "
                   "VehicleID's test_800; of --dataset-root, else of the run's own data")
    p.add_argument("--dataset-root", help="the dataset folder --split is read from")
    p.add_argument("--dataset", help="its parser name (default: the run's data.dataset)")
    p.add_argument("--out", required=True, help="the features.npz to write")
    p.add_argument("--feature", help="a named feature combination (default: the method's main feature; an unknown "
                   "name lists the ones offered)")
    p.add_argument("--as", dest="side", choices=list(SIDES), default="gallery",
                   help="the side of the npz --images/--list go to (default: gallery)")
    p.add_argument("--label-regex", default=DEFAULT_LABEL_REGEX,
                   help="regex on file names with named groups id and cam (default: %(default)s)")
    p.add_argument("--strict", action="store_true", help="the first unreadable image is an error")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the run's data.eval_batch_size)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default: 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vreid_lightning.errors import run_command

    return run_command(build_parser(), run_extract, argv)


if __name__ == "__main__":
    sys.exit(main())
