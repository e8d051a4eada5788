"""Samplers: PK structure under simulated DDP ranks, determinism, balanced vs naive frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vreid_lightning.data.samplers import (
    BalancedSampler,
    PKBatchSampler,
    PKSampler,
    ShuffleSampler,
    build_sampler,
)


def skewed_labels(num_ids: int = 40, seed: int = 0) -> np.ndarray:
    """Labels with 1..~30 images per identity (several below K=4), shuffled rows, non-contiguous ids."""
    rng = np.random.default_rng(seed)
    counts = 1 + (rng.pareto(1.5, num_ids) * 4).astype(int).clip(0, 29)
    counts[:3] = [1, 2, 3]
    ids = rng.permutation(1000)[:num_ids] * 7 + 3
    return rng.permutation(np.repeat(ids, counts))


def ranks_batches(labels: np.ndarray, p: int, k: int, world: int, epoch: int = 0, seed: int = 5):
    out = []
    for r in range(world):
        s = PKSampler(labels, p, k, seed=seed, num_replicas=world, rank=r)
        s.set_epoch(epoch)
        out.append(np.array(list(s)).reshape(-1, p * k))
    return out


def test_pk_two_ranks_disjoint_and_structured():
    labels = skewed_labels()
    p, k = 4, 4
    b0, b1 = ranks_batches(labels, p, k, world=2)
    assert b0.shape == b1.shape
    assert len(b0) == len(b1) == np.unique(labels).size // (p * 2)
    for x0, x1 in zip(b0, b1):
        ids0, ids1 = labels[x0], labels[x1]
        assert set(ids0).isdisjoint(ids1)
        for ids in (ids0, ids1):
            u, c = np.unique(ids, return_counts=True)
            assert u.size == p and np.all(c == k)
            # identity-major layout: K consecutive rows per identity
            assert np.all(ids.reshape(p, k) == ids.reshape(p, k)[:, :1])
    # each identity at most once per epoch over all ranks
    all_ids = np.concatenate([labels[b.reshape(-1, k)[:, 0]] for b in (b0, b1)])
    assert np.unique(all_ids).size == all_ids.size


def test_pk_lengths_equal_and_deterministic():
    labels = skewed_labels()
    s0 = PKSampler(labels, 3, 4, seed=1, num_replicas=2, rank=0)
    s1 = PKSampler(labels, 3, 4, seed=1, num_replicas=2, rank=1)
    assert len(s0) == len(s1) == len(list(s0)) == len(list(s1))
    again = PKSampler(labels, 3, 4, seed=1, num_replicas=2, rank=0)
    assert list(s0) == list(again)
    s0.set_epoch(1)
    assert list(s0) != list(again)
    again.set_epoch(1)
    assert list(s0) == list(again)
    other_seed = PKSampler(labels, 3, 4, seed=2, num_replicas=2, rank=0)
    assert list(other_seed) != list(PKSampler(labels, 3, 4, seed=1, num_replicas=2, rank=0))


def test_pk_small_identities_sampled_k_times_with_replacement():
    labels = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3])
    s = PKSampler(labels, p=4, k=4, seed=0)
    idx = np.array(list(s))
    assert idx.size == 16
    for pid, n in [(0, 1), (1, 2), (2, 3), (3, 6)]:
        rows = idx[labels[idx] == pid]
        assert rows.size == 4
        # all of a small identity's images are used; a large identity's K images are distinct
        assert np.unique(rows).size == min(n, 4)


def test_pk_single_rank_covers_all_identities():
    labels = skewed_labels(num_ids=37)
    s = PKSampler(labels, p=4, k=2, seed=3, drop_last=False)
    idx = np.array(list(s))
    assert len(s) == idx.size == int(np.ceil(37 / 4)) * 8
    assert set(labels[idx]) == set(np.unique(labels))
    batches = labels[idx].reshape(-1, 8)
    assert all(np.unique(b).size == 4 for b in batches)  # the wrapped last batch still has P distinct ids
    dropped = PKSampler(labels, p=4, k=2, seed=3, drop_last=True)
    assert len(dropped) == (37 // 4) * 8


def test_pk_ignores_negative_labels_and_batch_sampler_matches():
    labels = np.concatenate([skewed_labels(), np.full(50, -1)])
    flat = PKSampler(labels, 2, 4, seed=7)
    assert np.all(labels[np.array(list(flat))] >= 0)
    bs = PKBatchSampler(labels, 2, 4, seed=7)
    assert bs.sampler.seed == 7 and len(bs) * 8 == len(flat)
    assert [i for b in bs for i in b] == list(flat)
    data = TensorDataset(torch.arange(labels.size))
    loader = DataLoader(data, batch_size=8, sampler=flat, shuffle=False)
    first = next(iter(loader))[0].numpy()
    assert np.unique(labels[first]).size == 2


def test_balanced_is_uniform_over_identities_and_shuffle_follows_data():
    labels = skewed_labels(num_ids=20, seed=1)
    ids, counts = np.unique(labels, return_counts=True)
    n = 40_000
    bal = np.array(list(BalancedSampler(labels, num_samples=n, seed=0)))
    freq = np.array([(labels[bal] == i).sum() for i in ids])
    expected = n / ids.size
    chi2 = ((freq - expected) ** 2 / expected).sum()
    assert chi2 < 50  # df = 19: p(chi2 > 50) ~ 1e-4 under uniformity
    # the skew is strong: naive frequencies would be far from uniform
    naive_chi2 = ((counts / counts.sum() * n - expected) ** 2 / expected).sum()
    assert naive_chi2 > 20 * chi2
    # within an identity, images are uniform
    big = ids[np.argmax(counts)]
    rows, c = np.unique(bal[labels[bal] == big], return_counts=True)
    assert rows.size == counts.max() and c.min() > 0.5 * c.mean()

    shuf = np.array(list(ShuffleSampler(labels, seed=0)))
    assert np.array_equal(np.sort(shuf), np.arange(labels.size))  # every row exactly once
    assert not np.array_equal(shuf, np.arange(labels.size))


def test_balanced_and_shuffle_ranks():
    labels = skewed_labels()
    b = [BalancedSampler(labels, num_samples=101, seed=4, num_replicas=2, rank=r) for r in range(2)]
    assert len(b[0]) == len(b[1]) == 51
    s = [ShuffleSampler(labels, seed=4, num_replicas=2, rank=r) for r in range(2)]
    x0, x1 = np.array(list(s[0])), np.array(list(s[1]))
    assert len(x0) == len(x1) == int(np.ceil(labels.size / 2))
    assert set(x0) | set(x1) == set(range(labels.size))
    pad = 2 * len(x0) - labels.size
    assert len(set(x0) & set(x1)) == pad  # only the wrap-round padding repeats
    s[0].set_epoch(3)
    assert list(s[0]) != list(x0)


def test_build_sampler_and_errors():
    labels = skewed_labels()
    pk = build_sampler("pk", labels, batch_size=16, k=4, seed=0)
    assert isinstance(pk, PKSampler) and (pk.p, pk.k) == (4, 4)
    assert isinstance(build_sampler("balanced", labels, 16), BalancedSampler)
    assert isinstance(build_sampler("shuffle", labels, 16), ShuffleSampler)
    with pytest.raises(ValueError, match="unknown sampler 'random'.*pk, balanced, shuffle"):
        build_sampler("random", labels, 16)
    with pytest.raises(ValueError, match="batch_size=18 is not divisible by k=4"):
        build_sampler("pk", labels, 18, k=4)
    with pytest.raises(ValueError, match="unexpected argument.*'p'"):
        build_sampler("pk", labels, 16, p=4)
    with pytest.raises(ValueError, match="need at least 100 distinct identities"):
        PKSampler(labels, p=50, k=4, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        PKSampler(labels, 2, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="p and k must be >= 1"):
        PKSampler(labels, 0, 4)
    with pytest.raises(ValueError, match="no labelled rows"):
        BalancedSampler(np.full(5, -1))
    with pytest.raises(ValueError, match="labels must be integers"):
        PKSampler(np.array([0.5, 1.0]), 1, 1)
