"""The RAM authors' batch composition: identities, colours and models drawn by group (``CarcontImageData``).

Their Caffe data layer for the RAM step (liu-xb/RAM caffe/src/caffe/layers/carcont_image_data_layer.cpp,
``load_batch``; parameters train_RAM_finetune.prototxt:13-27: ni 10, nii 3, nc 10, nic 2, nm 9, nim 2)
builds every batch of 68 images in three blocks:

1. the groups of rows by identity, by colour and by model are each shuffled (``random_shuffle`` of the
   group lists at every batch);
2. for the first ``ni`` identity groups, ``nii`` rows each drawn uniformly WITH replacement
   (``my_rand2``: ``rand() % size``); then for the first ``nc`` colour groups ``nic`` rows each; then for the
   first ``nm`` model groups ``nim`` rows each (group ``i % groups`` when there are fewer groups);
3. the blocks are concatenated in that order (ids, colours, models).

Empty colour/model groups are dropped (the layer erases them); rows with an unknown attribute
(label < 0, which the authors' list never has) belong to no group of that attribute. The layer is
endless; here an epoch is ``num_batches`` batches (default: ``len(rows) // batch``). The same seed gives the same
batches; every rank draws its own batches from the stream ``(seed, epoch, rank)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vreid_lightning.data.samplers import _EpochSampler, resolve_world

__all__ = ["GroupBlockSampler", "CARCONT_RAM"]

#: The RAM step's blocks (train_RAM_finetune.prototxt:17-27): (label, groups per batch, rows per group).
CARCONT_RAM: tuple[tuple[str, int, int], ...] = (("pid", 10, 3), ("colour", 10, 2), ("type", 9, 2))


def _groups(labels: np.ndarray) -> list[np.ndarray]:
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    if rows.size == 0:
        return []
    order = rows[np.argsort(labels[rows], kind="stable")]
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


class GroupBlockSampler(_EpochSampler):
    """Flat index stream of batches made of blocks drawn by label groups (the authors' CarcontImageData).

    Args:
        labels: label name -> (N,) int labels (``pid`` and the attributes; < 0 = unknown).
        blocks: ``[(label name, groups per batch, rows per group), ...]`` in batch order.
        seed: seed of the draws.
        num_batches: batches per epoch (default ``N // batch size``, at least 1).
        num_replicas, rank: DDP world (default: the initialised process group, else 1 and 0).

    Use with ``DataLoader(batch_size=self.batch_size, sampler=self, drop_last=True)``.
    """

    def __init__(self, labels: Mapping[str, np.ndarray], blocks: Sequence[Sequence[Any]] = CARCONT_RAM,
                 seed: int = 0, num_batches: int | None = None, num_replicas: int | None = None,
                 rank: int | None = None):
        self.blocks = [(str(b[0]), int(b[1]), int(b[2])) for b in blocks]
        if not self.blocks or any(g < 1 or k < 1 for _, g, k in self.blocks):
            raise ValueError(f"GroupBlockSampler: blocks must be (label, groups >= 1, rows >= 1) triples, "
                             f"got {blocks!r}")
        missing = [name for name, _, _ in self.blocks if name not in labels]
        if missing:
            raise ValueError(f"GroupBlockSampler: no labels {missing} for the blocks; have {sorted(labels)}")
        self.groups = {name: _groups(labels[name]) for name, _, _ in self.blocks}
        empty = [name for name, grp in self.groups.items() if not grp]
        if empty:
            raise ValueError(f"GroupBlockSampler: label(s) {empty} have no labelled row to draw")
        n = len(next(iter(labels.values())))
        self.batch_size = sum(g * k for _, g, k in self.blocks)
        self.num_batches = max(1, n // self.batch_size) if num_batches is None else int(num_batches)
        if self.num_batches < 1:
            raise ValueError(f"GroupBlockSampler: num_batches must be >= 1, got {num_batches}")
        self.num_replicas, self.rank = resolve_world(num_replicas, rank)
        self.per_rank = self.num_batches * self.batch_size
        self.seed, self.epoch = int(seed), 0

    def batch(self, rng: np.random.Generator) -> np.ndarray:
        """One batch: for each block, the first groups of a fresh shuffle, rows drawn with replacement."""
        out = []
        for name, n_groups, per_group in self.blocks:
            groups = self.groups[name]
            order = rng.permutation(len(groups))
            for i in range(n_groups):
                g = groups[order[i % len(groups)]]
                out.append(g[rng.integers(0, len(g), per_group)])
        return np.concatenate(out)

    def epoch_indices(self) -> np.ndarray:
        """This rank's indices for the current epoch: ``num_batches`` batches back to back."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return np.concatenate([self.batch(rng) for _ in range(self.num_batches)])
