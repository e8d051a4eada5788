"""The VehicleNet merge (Zheng et al. TMM 2020, Sec. III-A): one training set from several sources.

Each source's training rows keep their images; their labels are moved into disjoint ranges so that no
vehicle id of one source is the class of another: with ``relabel=True`` (default) each source's ids
become ``offset + 0 .. ids-1`` (sorted order), so the merged labels are contiguous classes (CityFlow +
VeRi-776 + CompCars + VehicleID = 31,805 classes in the paper); with ``relabel=False`` the original ids
are shifted by ``offset`` (the previous sources' largest id + 1). Cameras and tracks are shifted the
same way (``MISSING`` stays ``MISSING``). Attribute label spaces differ between sources (VeRi ``colour``
is 1-10, VehicleID ``colour`` 0-6), so attributes are renamed ``<source>.<attribute>``; the new
``source`` column is the source's index. Only the named split (``train``) is merged: a target's
query/gallery is never part of it.

A *source* (any dataset but the target) may contribute every labelled image it has, not just its
training split: :func:`source_split` with ``splits="all"`` joins the training split with the labelled
evaluation splits (VeRi's gallery, VehicleID's test lists), each image once. That is what VehicleNet's
counts say (Table II: +49,357 VeRi-776 images and +221,567 VehicleID images are the whole datasets,
Table I), while ``splits="train"`` keeps to the training splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .base import MISSING, ReIDDataset, Split
from .registry import canonical_name, load_dataset

__all__ = ["merge_datasets", "load_vehiclenet", "source_split", "VEHICLENET_OPTIONS", "SOURCE_SPLITS"]

VEHICLENET_OPTIONS: dict[str, dict] = {
    "compcars": {"use_all": True},  # CompCars is extra training data: train.txt + test.txt (Sec. III-A)
    "cityflow": {"val_ids": 0},     # as a source, CityFlow's whole labelled training set (no validation split)
}
SOURCE_SPLITS = ("all", "train")


def source_split(dataset: ReIDDataset, splits: str = "all") -> Split:
    """The labelled images a source contributes to the merge.

    Args:
        dataset: the source.
        splits: ``train`` (its training split) or ``all`` (training split plus every labelled evaluation
            split, an image listed in several of them, e.g. a VeRi query also in the gallery, once).

    Returns:
        A split whose rows all carry an identity.
    """
    if splits not in SOURCE_SPLITS:
        raise ValueError(f"source splits={splits!r}; expected one of {SOURCE_SPLITS}")
    if splits == "train":
        return dataset.train
    parts = [dataset.train] + [s for k, s in dataset.splits().items() if k != "train"]
    merged = Split.concat(parts)
    labelled = merged.pids != MISSING
    # one row per image: VeRi's query images are copies of gallery images under the same file name
    keys = [(Path(p).name, int(i), int(c)) for p, i, c in zip(merged.paths, merged.pids, merged.camids)]
    seen: set[tuple[str, int, int]] = set()
    keep = []
    for row, key in enumerate(keys):
        if labelled[row] and key not in seen:
            seen.add(key)
            keep.append(row)
    return merged.subset(np.asarray(keep, dtype=np.int64))


def _shift(values: np.ndarray, offset: int) -> tuple[np.ndarray, int]:
    """``values + offset`` keeping ``MISSING``; also the span this source occupies (largest + 1)."""
    known = values != MISSING
    span = int(values[known].max()) + 1 if known.any() else 0
    return np.where(known, values + offset, MISSING), span


def merge_datasets(datasets: list[ReIDDataset], split: str = "train",
                   relabel: bool = True, source_splits: str | None = None) -> tuple[Split, list[dict]]:
    """Concatenate one split of each dataset with disjoint label spaces.

    Args:
        datasets: the sources, in order (their index is the ``source`` attribute).
        split: the split to merge (``train``; any key of ``ReIDDataset.splits()``).
        relabel: map each source's ids to contiguous ``0..ids-1`` before offsetting.
        source_splits: None: ``split`` of every dataset; ``all`` or ``train``: the first dataset (the
            target) gives ``split``, the others :func:`source_split` of theirs.

    Returns:
        The merged split and per source ``{"name", "root", "images", "ids", "id_offset",
        "camera_offset", "track_offset", "attribute_classes"}``.
    """
    if not datasets:
        raise ValueError("merge_datasets: expected at least one dataset")
    names = [d.name for d in datasets]
    parts, summary = [], []
    id_offset = camera_offset = track_offset = 0
    for index, dataset in enumerate(datasets):
        available = dataset.splits()
        if index > 0 and source_splits is not None:
            part, used = source_split(dataset, source_splits), source_splits
        elif split not in available:
            raise ValueError(f"merge_datasets: dataset {dataset.name!r} ({dataset.root}) has no split {split!r}; "
                             f"it has {sorted(available)}")
        else:
            part, used = available[split], split
        if (part.pids < 0).any():
            raise ValueError(f"merge_datasets: split {split!r} of {dataset.name!r} has unlabelled rows (pid < 0)")
        prefix = dataset.name if names.count(dataset.name) == 1 else f"{dataset.name}{index}"
        if relabel:
            unique, inverse = np.unique(part.pids, return_inverse=True)
            pids, id_span = inverse.reshape(-1) + id_offset, int(unique.size)
        else:
            pids, id_span = _shift(part.pids, id_offset)
        camids, camera_span = _shift(part.camids, camera_offset)
        tracks, track_span = _shift(part.tracks, track_offset)
        attributes = {f"{prefix}.{k}": v for k, v in part.attributes.items()}
        attributes["source"] = np.full(len(part), index, np.int64)
        parts.append(Split(paths=list(part.paths), pids=pids, camids=camids, timestamps=part.timestamps,
                           tracks=tracks, attributes=attributes, boxes=part.boxes))
        summary.append({"name": dataset.name, "root": str(dataset.root), "splits": used, "images": len(part),
                        "ids": part.num_ids,
                        "id_offset": id_offset, "camera_offset": camera_offset, "track_offset": track_offset,
                        "attribute_classes": {f"{prefix}.{k}": v for k, v in dataset.attribute_classes.items()},
                        "diagnostics": dict(dataset.diagnostics)})
        id_offset += id_span
        camera_offset += camera_span
        track_offset += track_span
    return Split.concat(parts), summary


def load_vehiclenet(roots: Mapping[str, str | Path], options: Mapping[str, Mapping] | None = None,
                    relabel: bool = True) -> tuple[Split, list[dict]]:
    """Load each source with the VehicleNet defaults and merge their training splits.

    Args:
        roots: dataset name -> root, in merge order, e.g. ``{"cityflow": ..., "veri": ..., ...}``.
        options: per dataset name, parser options overriding :data:`VEHICLENET_OPTIONS`.
        relabel: see :func:`merge_datasets`.
    """
    options = {canonical_name(k): dict(v) for k, v in (options or {}).items()}
    datasets = []
    for name, root in roots.items():
        key = canonical_name(name)
        datasets.append(load_dataset(key, root, **{**VEHICLENET_OPTIONS.get(key, {}), **options.get(key, {})}))
    return merge_datasets(datasets, "train", relabel=relabel)
