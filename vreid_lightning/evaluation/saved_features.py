"""Saved test features: query/gallery features with their ids, cameras, timestamps and paths, one ``.npz``
per test run (``features.npz`` in the run directory), read back by ``python -m vreid_lightning.evaluate``.

Arrays (no pickles): ``query_feats``, ``gallery_feats`` (float32), optional extra views
``query_feats_<view>`` / ``gallery_feats_<view>`` (e.g. ``crop``: features of the cropped images,
``cam``: camera-aware features of a camera model), ``query_ids``, ``gallery_ids``, ``query_cams``,
``gallery_cams``, ``query_times``, ``gallery_times`` (int64, -1 = missing), ``query_paths``,
``gallery_paths`` (str), ``metric`` (the evaluation metric of the run).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vreid_lightning.errors import DatasetFormatError

from .features import row_index

__all__ = ["FeatureSet", "save_features", "load_features", "from_eval_set", "check_aligned"]

_LABELS = ("ids", "cams", "times")


@dataclass
class FeatureSet:
    """One model's features of one query/gallery split. ``views``: name -> (query (Q, D), gallery (G, D));
    the main view is ``""``."""

    views: dict[str, tuple[np.ndarray, np.ndarray]]
    query: dict[str, np.ndarray]      # ids, cams, times, paths
    gallery: dict[str, np.ndarray]
    metric: str = "cosine"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_query(self) -> int:
        return int(self.views[""][0].shape[0])

    @property
    def num_gallery(self) -> int:
        return int(self.views[""][1].shape[0])


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def from_eval_set(feats: Any, eval_set: Any, metric: str = "cosine",
                  views: dict[str, Any] | None = None) -> FeatureSet:
    """A FeatureSet from features of every row of an image-protocol ``EvalSet`` (``feats`` rows = split rows)."""
    split = eval_set.split
    q, g = eval_set.groups["query"], eval_set.groups["gallery"]
    f = _np(feats).astype(np.float32, copy=False)  # float32 CPU features and consecutive rows: views, no copy
    all_views = {"": f, **{k: _np(v).astype(np.float32, copy=False) for k, v in (views or {}).items()}}
    qi, gi = row_index(q, f.shape[0]), row_index(g, f.shape[0])

    def labels(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"ids": split.pids[rows].astype(np.int64), "cams": split.camids[rows].astype(np.int64),
                "times": split.timestamps[rows].astype(np.int64),
                "paths": np.asarray([str(split.paths[i]) for i in rows], dtype=np.str_)}

    return FeatureSet({k: (v[qi], v[gi]) for k, v in all_views.items()}, labels(q), labels(g), metric)


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    """Write ``fs`` as one ``.npz`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"metric": np.asarray(fs.metric, dtype=np.str_)}
    for view, (q, g) in fs.views.items():
        suffix = f"_{view}" if view else ""
        arrays[f"query_feats{suffix}"], arrays[f"gallery_feats{suffix}"] = q, g
    for side, labels in (("query", fs.query), ("gallery", fs.gallery)):
        for k, v in labels.items():
            arrays[f"{side}_{k}"] = v
    from vreid_lightning.atomic import atomic_open

    with atomic_open(path, "wb") as fh:  # a kill or a full disk never leaves a half-written features.npz
        np.savez(fh, **arrays)
    return path


def load_features(path: str | Path) -> FeatureSet:
    """Read a features ``.npz``; a missing array or inconsistent row counts raise DatasetFormatError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "a saved features file (features.npz of a test run)", got="no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):  # a bare .npy array, not an archive of named arrays
                raise ValueError("a single array, not an .npz archive")
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as e:  # empty, truncated, pickled, other
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise DatasetFormatError(path, "a features.npz written by a test run (a numpy .npz of plain arrays)",
                                 got=f"{type(e).__name__}: {reason}") from None
    for key in ("query_feats", "gallery_feats", "query_ids", "gallery_ids"):
        if key not in data:
            raise DatasetFormatError(path, f"an array {key!r}", got=f"arrays {sorted(data)}")
    views: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in data:
        if key.startswith("query_feats"):
            view = key[len("query_feats"):].lstrip("_")
            gkey = "gallery_feats" + key[len("query_feats"):]
            if gkey not in data:
                raise DatasetFormatError(path, f"an array {gkey!r} beside {key!r}")
            for k in (key, gkey):
                arr = data[k]
                if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
                    raise DatasetFormatError(path, f"{k!r} as a 2-D numeric array (rows x feature dims)",
                                             got=f"shape {arr.shape}, dtype {arr.dtype}")
                bad = int((~np.isfinite(arr)).sum())
                if bad:
                    raise DatasetFormatError(path, f"finite features in {k!r}",
                                             got=f"{bad} NaN/inf value(s), first at row {int(np.argwhere(~np.isfinite(arr))[0][0])}")
            views[view] = (data[key].astype(np.float32), data[gkey].astype(np.float32))
    sides = {}
    for side in ("query", "gallery"):
        n = data[f"{side}_feats"].shape[0]
        labels = {}
        for k in (*_LABELS, "paths"):
            v = data.get(f"{side}_{k}")
            if v is None:
                v = np.full(n, -1, np.int64) if k != "paths" else np.asarray([""] * n, dtype=np.str_)
            labels[k] = v
        for name, arr in [*((f"{side}_{k}", v) for k, v in labels.items()),
                          *((f"{side}_feats_{w}" if w else f"{side}_feats", fv[0 if side == "query" else 1])
                            for w, fv in views.items())]:
            if arr.shape[0] != n:
                raise DatasetFormatError(path, f"{n} rows in {name!r} (as in {side}_feats)", got=f"{arr.shape[0]}")
        sides[side] = labels
    metric = str(data["metric"]) if "metric" in data else "cosine"
    return FeatureSet(views, sides["query"], sides["gallery"], metric, source=str(path))


def _names(paths: np.ndarray) -> np.ndarray:
    return np.asarray([Path(str(p)).name for p in paths], dtype=np.str_)


def check_aligned(sets: list[FeatureSet]) -> None:
    """Every set must describe the same images in the same order (row counts, ids, cameras, paths)."""
    first = sets[0]
    name = lambda fs, i: fs.source or f"feature set {i}"  # noqa: E731
    for i, fs in enumerate(sets[1:], start=1):
        for side in ("query", "gallery"):
            a, b = getattr(first, side)["ids"].shape[0], getattr(fs, side)["ids"].shape[0]
            if a != b:
                raise DatasetFormatError(name(fs, i), f"{a} {side} rows as in {name(first, 0)}", got=f"{b}")
        for side in ("query", "gallery"):
            a, b = getattr(first, side), getattr(fs, side)
            for k in ("ids", "cams", "paths"):
                x, y = (_names(a[k]), _names(b[k])) if k == "paths" else (a[k], b[k])  # the same images anywhere
                if not np.array_equal(x, y):
                    bad = int(np.flatnonzero(x != y)[0])
                    raise DatasetFormatError(name(fs, i), f"the same {side} {k} as {name(first, 0)} in the same order",
                                             got=f"a different value at {side} row {bad}")
