"""The common index every dataset parser produces.

A parser reads a real released layout (VeRi-776, VehicleID, CityFlow, CompCars) and returns a
:class:`ReIDDataset`: named :class:`Split` tables with one row per image. Columns are numpy arrays so
that label remapping, protocol construction and sampling are vectorised. Missing values use -1
(``MISSING``): a camera-less dataset has ``camids == -1``; an unlabelled attribute is -1 and is
ignored by attribute losses, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vreid_lightning.errors import DatasetFormatError

__all__ = ["MISSING", "Split", "ReIDDataset", "DatasetFormatError"]

MISSING = -1


@dataclass
class Split:
    """One split (train, query, gallery, a VehicleID test list ...) as columns.

    Attributes:
        paths: absolute image paths (str), one per row.
        pids: vehicle ids as ints, as in the annotation (not remapped).
        camids: camera ids as ints (``c001`` -> 1), ``MISSING`` when the dataset has none.
        timestamps: time/frame position, ``MISSING`` when unknown.
        tracks: track index (same vehicle, same camera), ``MISSING`` when unknown.
        attributes: attribute name -> int array (dataset's own ids, ``MISSING`` = unlabelled),
            e.g. ``colour``, ``type``, ``model``, ``viewpoint``, ``make``.
        boxes: optional (N, 4) int array ``x1 y1 x2 y2`` (0-based, exclusive end) to crop to.
    """

    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    timestamps: np.ndarray | None = None
    tracks: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        self.pids = np.asarray(self.pids, dtype=np.int64)
        self.camids = np.asarray(self.camids, dtype=np.int64)
        self.timestamps = (
            np.full(n, MISSING, np.int64) if self.timestamps is None else np.asarray(self.timestamps, np.int64)
        )
        self.tracks = np.full(n, MISSING, np.int64) if self.tracks is None else np.asarray(self.tracks, np.int64)
        self.attributes = {k: np.asarray(v, dtype=np.int64) for k, v in self.attributes.items()}
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.int64).reshape(n, 4)
        for name, col in [("pids", self.pids), ("camids", self.camids), ("timestamps", self.timestamps),
                          ("tracks", self.tracks), *self.attributes.items()]:
            if len(col) != n:
                raise ValueError(f"Split column {name!r} has {len(col)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_ids(self) -> int:
        return int(np.unique(self.pids).size)

    @property
    def num_cams(self) -> int:
        cams = self.camids[self.camids != MISSING]
        return int(np.unique(cams).size)

    def subset(self, index: np.ndarray | list[int]) -> "Split":
        """Rows ``index`` as a new Split (used by protocols and validation splits)."""
        idx = np.asarray(index, dtype=np.int64)
        return Split(
            paths=[self.paths[i] for i in idx],
            pids=self.pids[idx],
            camids=self.camids[idx],
            timestamps=self.timestamps[idx],
            tracks=self.tracks[idx],
            attributes={k: v[idx] for k, v in self.attributes.items()},
            boxes=None if self.boxes is None else self.boxes[idx],
        )

    @staticmethod
    def concat(splits: list["Split"]) -> "Split":
        """Row-wise concatenation; attribute columns missing in a part are filled with ``MISSING``."""
        names = sorted({k for s in splits for k in s.attributes})
        has_boxes = any(s.boxes is not None for s in splits)
        return Split(
            paths=[p for s in splits for p in s.paths],
            pids=np.concatenate([s.pids for s in splits]) if splits else np.zeros(0, np.int64),
            camids=np.concatenate([s.camids for s in splits]) if splits else np.zeros(0, np.int64),
            timestamps=np.concatenate([s.timestamps for s in splits]) if splits else None,
            tracks=np.concatenate([s.tracks for s in splits]) if splits else None,
            attributes={
                k: np.concatenate([s.attributes.get(k, np.full(len(s), MISSING, np.int64)) for s in splits])
                for k in names
            },
            boxes=(
                np.concatenate([s.boxes if s.boxes is not None else np.full((len(s), 4), MISSING, np.int64)
                                for s in splits])
                if has_boxes else None
            ),
        )

    def summary(self) -> dict:
        """JSON-able counts: images, ids, cameras, attribute coverage."""
        out = {"images": len(self), "ids": self.num_ids, "cameras": self.num_cams}
        if self.attributes:
            out["attribute_coverage"] = {
                k: round(float((v != MISSING).mean()) if len(v) else 0.0, 4) for k, v in self.attributes.items()
            }
        return out


@dataclass
class ReIDDataset:
    """A parsed dataset.

    Attributes:
        name: ``veri``, ``vehicleid``, ``cityflow``, ``compcars``.
        root: the folder that was read.
        train: the training split.
        query, gallery: image-to-image evaluation sets (VeRi, CityFlow validation); None otherwise.
        test_lists: VehicleID-style test sets keyed by size (``"800"``, ``"1600"`` ...): the protocol
            draws gallery/query from each.
        protocol: ``"image"`` (query vs gallery, junk = same id and camera) or ``"vehicleid"``.
        attribute_classes: attribute name -> number of classes (for classifier heads).
        warnings: things a user should know (erratum fixes, skipped files ...), each one line.
        attribute_names: attribute name -> {class id: display name} where the dataset ships names
            (VehicleID ``model_names.txt`` / ``color_names.txt``), for pictures and reports.
        diagnostics: machine-readable counts behind the warnings (e.g. CompCars ``missing_files``,
            CityFlow ``untracked_train_images``): shown by ``inspect`` and recorded in results.json's
            provenance.
    """

    name: str
    root: Path
    train: Split
    query: Split | None = None
    gallery: Split | None = None
    test_lists: dict[str, Split] = field(default_factory=dict)
    protocol: str = "image"
    attribute_classes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    attribute_names: dict[str, dict[int, str]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, Split]:
        out: dict[str, Split] = {"train": self.train}
        if self.query is not None:
            out["query"] = self.query
        if self.gallery is not None:
            out["gallery"] = self.gallery
        for k, v in self.test_lists.items():
            out[f"test_{k}"] = v
        return out

    def summary(self) -> dict:
        return {
            "dataset": self.name,
            "root": str(self.root),
            "protocol": self.protocol,
            "splits": {k: v.summary() for k, v in self.splits().items()},
            "attribute_classes": dict(self.attribute_classes),
            "warnings": list(self.warnings),
            "attribute_names": {k: len(v) for k, v in self.attribute_names.items()},
            "diagnostics": dict(self.diagnostics),
        }
