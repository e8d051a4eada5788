"""Training samplers: PK identity sampling, class-balanced sampling, plain shuffling.

All samplers are DDP-aware without a process group being required: ``num_replicas`` and ``rank``
default to the initialised ``torch.distributed`` world (else 1 and 0). Every rank builds the same
per-epoch random stream from ``seed + epoch`` (call :meth:`set_epoch` each epoch, as with
``DistributedSampler``; Lightning does this itself) and takes its own share, so all ranks have the
same length. Sampling is vectorised with numpy; no per-sample Python loops.

With Lightning, pass ``use_distributed_sampler=False`` to the Trainer: otherwise Lightning wraps a
custom sampler in its ``DistributedSamplerWrapper``, which splits each PK batch across ranks.

Rows with a negative label (``MISSING`` = unlabelled) are never drawn by the identity samplers
(``pk``, ``balanced``); ``shuffle`` draws every row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "PKSampler",
    "PKBatchSampler",
    "BalancedSampler",
    "ShuffleSampler",
    "SAMPLERS",
    "build_sampler",
    "resolve_world",
]


def resolve_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: the given values, else the initialised process group's, else ``(1, 0)``."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ValueError(f"sampler: num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"sampler: rank must be in [0, {num_replicas}), got {rank}")
    return int(num_replicas), int(rank)


def _as_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"sampler: labels must be a 1-D array of ints, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"sampler: labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class _IdentityGroups:
    """Row indices grouped by identity: ``order[offsets[g]:offsets[g] + counts[g]]`` are identity g's rows."""

    def __init__(self, labels: np.ndarray):
        rows = np.flatnonzero(labels >= 0)
        if rows.size == 0:
            raise ValueError("sampler: labels hold no labelled rows (all labels are negative or the array is empty)")
        lab = labels[rows]
        sort = np.argsort(lab, kind="stable")
        self.order = rows[sort]
        self.ids, self.offsets, self.counts = np.unique(lab[sort], return_index=True, return_counts=True)
        # group index of every sorted row, for within-identity shuffling
        self.group_of_sorted = np.repeat(np.arange(self.ids.size), self.counts)

    @property
    def num_ids(self) -> int:
        return int(self.ids.size)


class _EpochSampler(Sampler[int]):
    """Shared epoch protocol: ``set_epoch`` picks the stream, the subclass's ``epoch_indices()``
    computes this rank's share of it (the same seed on every rank), iteration flattens it."""

    seed: int = 0
    epoch: int = 0
    per_rank: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose stream the next iteration uses (same on all ranks)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices().reshape(-1).tolist())  # type: ignore[attr-defined]


class PKSampler(_EpochSampler):
    """P identities x K images per batch, as a flat index stream (DataLoader ``batch_size=P*K``, no shuffle).

    Each epoch shuffles the identity list with ``seed + epoch``; step ``s`` takes the next
    ``P * num_replicas`` identities and rank ``r`` gets its own ``P`` of them, so the ranks' identities in
    one step are disjoint. Each identity therefore appears about once per epoch (the remainder that does
    not fill a step is dropped with ``drop_last=True``, else the last step wraps round to the start of
    the permutation). For each chosen identity K distinct images are drawn uniformly; an identity with
    fewer than K images contributes all of them once and fills the rest by sampling its images with
    replacement. A batch lists its identities one after another, K rows each.

    Args:
        labels: (N,) integer identity label per dataset row; negative labels are never drawn.
        p: identities per batch (per rank).
        k: images per identity.
        seed: shared seed; all ranks must use the same one.
        num_replicas: world size; default from ``torch.distributed`` when initialised, else 1.
        rank: this rank; default from ``torch.distributed`` when initialised, else 0.
        drop_last: drop the identities that do not fill a whole step (else wrap round).
    """

    def __init__(
        self,
        labels: np.ndarray,
        p: int,
        k: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ):
        if int(p) < 1 or int(k) < 1:
            raise ValueError(f"PKSampler: p and k must be >= 1, got p={p}, k={k}")
        self.p, self.k = int(p), int(k)
        self.seed = int(seed)
        self.epoch = 0
        self.drop_last = bool(drop_last)
        self.num_replicas, self.rank = resolve_world(num_replicas, rank)
        self.groups = _IdentityGroups(_as_labels(labels))
        per_step = self.p * self.num_replicas
        n = self.groups.num_ids
        if n < per_step:
            raise ValueError(
                f"PKSampler: {n} labelled identities cannot fill one step of p={self.p} identities x "
                f"num_replicas={self.num_replicas} (need at least {per_step} distinct identities)"
            )
        self.num_steps = n // per_step if self.drop_last else math.ceil(n / per_step)
        self.per_rank = self.num_steps * self.p * self.k

    def epoch_indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, shape ``(num_steps, P, K)``."""
        g = self.groups
        rng = np.random.default_rng(self.seed + self.epoch)
        n, per_step = g.num_ids, self.p * self.num_replicas
        perm = rng.permutation(n)
        need = self.num_steps * per_step
        perm = np.resize(perm, need)  # wraps round when drop_last=False, truncates otherwise
        # (steps, ranks, P) -> this rank's identities per step
        chosen = perm.reshape(self.num_steps, self.num_replicas, self.p)[:, self.rank, :].reshape(-1)

        # shuffle rows within each identity: sort by (group, random key)
        keys = rng.random(g.order.size)
        shuffled = g.order[np.lexsort((keys, g.group_of_sorted))]
        counts = g.counts[chosen][:, None]
        pos = np.arange(self.k)[None, :]
        # every identity draws with-replacement positions; they are used only beyond its own count
        fill = (rng.random((n, self.k))[chosen] * counts).astype(np.int64)
        pick = np.where(pos < counts, pos, fill)
        idx = shuffled[g.offsets[chosen][:, None] + pick]
        return idx.reshape(self.num_steps, self.p, self.k)


class PKBatchSampler(Sampler[list[int]]):
    """:class:`PKSampler` as a batch sampler: yields one list of ``P*K`` indices per step.

    Use as ``DataLoader(dataset, batch_sampler=PKBatchSampler(...))``. ``sampler`` is the wrapped
    :class:`PKSampler` (Lightning calls its ``set_epoch``).
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, **kwargs: Any):
        self.sampler = PKSampler(labels, p, k, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.sampler.num_steps

    def __iter__(self) -> Iterator[list[int]]:
        idx = self.sampler.epoch_indices()
        return iter(idx.reshape(idx.shape[0], -1).tolist())


class BalancedSampler(_EpochSampler):
    """Class-balanced sampling with replacement: each identity equally likely, images uniform within it.

    VehicleNet (TMM 2020) Sec. V-C, Table VIII "balanced sampling", compared with naive sampling
    (:class:`ShuffleSampler`). All ranks draw the same global stream of ``num_replicas * len(self)``
    indices from ``seed + epoch``; rank ``r`` takes every ``num_replicas``-th one starting at ``r``.

    Args:
        labels: (N,) integer identity label per row; negative labels are never drawn.
        num_samples: draws per epoch over all ranks; default: the number of labelled rows (the same
            epoch size as naive sampling). Rounded up to a multiple of ``num_replicas``.
        seed: shared seed; all ranks must use the same one.
        num_replicas: world size; default from ``torch.distributed`` when initialised, else 1.
        rank: this rank; default from ``torch.distributed`` when initialised, else 0.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        self.groups = _IdentityGroups(_as_labels(labels))
        self.num_replicas, self.rank = resolve_world(num_replicas, rank)
        total = self.groups.order.size if num_samples is None else int(num_samples)
        if total < 1:
            raise ValueError(f"BalancedSampler: num_samples must be >= 1, got {num_samples}")
        self.per_rank = math.ceil(total / self.num_replicas)
        self.seed = int(seed)
        self.epoch = 0

    def epoch_indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, shape ``(len(self),)``."""
        g = self.groups
        rng = np.random.default_rng(self.seed + self.epoch)
        total = self.per_rank * self.num_replicas
        ident = rng.integers(0, g.num_ids, total)
        within = (rng.random(total) * g.counts[ident]).astype(np.int64)
        return g.order[g.offsets[ident] + within][self.rank :: self.num_replicas]


class ShuffleSampler(_EpochSampler):
    """Naive sampling: every row once per epoch in a shared random order, dealt round the ranks.

    VehicleNet (TMM 2020) Sec. V-C, Table VIII "naive sampling". Same semantics as
    ``torch.utils.data.DistributedSampler(shuffle=True)`` (permutation from ``seed + epoch``, padded by
    wrapping round so that every rank has ``ceil(N / num_replicas)`` rows, or truncated with
    ``drop_last``), but needs no process group and accepts the label array the other samplers take.

    Args:
        labels: (N,) labels (only the length is used) or an int N.
        seed: shared seed; all ranks must use the same one.
        num_replicas: world size; default from ``torch.distributed`` when initialised, else 1.
        rank: this rank; default from ``torch.distributed`` when initialised, else 0.
        drop_last: truncate to a multiple of ``num_replicas`` instead of padding.
    """

    def __init__(
        self,
        labels: np.ndarray | int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ):
        self.n = int(labels) if isinstance(labels, (int, np.integer)) else len(labels)
        self.num_replicas, self.rank = resolve_world(num_replicas, rank)
        if self.n < self.num_replicas:
            raise ValueError(f"ShuffleSampler: {self.n} rows cannot be dealt to {self.num_replicas} ranks")
        self.per_rank = self.n // self.num_replicas if drop_last else math.ceil(self.n / self.num_replicas)
        self.seed = int(seed)
        self.epoch = 0

    def epoch_indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, shape ``(len(self),)``."""
        perm = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        perm = np.resize(perm, self.per_rank * self.num_replicas)
        return perm[self.rank :: self.num_replicas]


SAMPLERS = ("pk", "balanced", "shuffle")


def build_sampler(name: str, labels: np.ndarray, batch_size: int, **kwargs: Any) -> Sampler[int]:
    """Build a training sampler by name (``pk``, ``balanced``, ``shuffle``).

    Args:
        name: sampler name.
        labels: (N,) identity label per training row.
        batch_size: per-rank batch size of the DataLoader; for ``pk`` it must be a multiple of ``k``
            and gives ``p = batch_size // k``.
        **kwargs: the sampler's own arguments; ``pk`` takes ``k`` (default 4, the usual FastReID
            ``num_instance``), ``seed``, ``num_replicas``, ``rank``, ``drop_last``.

    Returns:
        A flat index sampler for ``DataLoader(batch_size=batch_size, sampler=...)``.
    """
    if name not in SAMPLERS:
        raise ValueError(f"build_sampler: unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    if int(batch_size) < 1:
        raise ValueError(f"build_sampler: batch_size must be >= 1, got {batch_size}")
    allowed = {
        "pk": {"k", "seed", "num_replicas", "rank", "drop_last"},
        "balanced": {"num_samples", "seed", "num_replicas", "rank"},
        "shuffle": {"seed", "num_replicas", "rank", "drop_last"},
    }[name]
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"build_sampler: sampler {name!r} got unexpected argument(s) {unknown}; expected some of {sorted(allowed)}"
        )
    if name == "pk":
        k = int(kwargs.pop("k", 4))
        if k < 1 or batch_size % k:
            raise ValueError(f"build_sampler: batch_size={batch_size} is not divisible by k={k} for the 'pk' sampler")
        return PKSampler(labels, p=batch_size // k, k=k, **kwargs)
    if name == "balanced":
        return BalancedSampler(labels, **kwargs)
    return ShuffleSampler(labels, **kwargs)
