"""k-reciprocal re-ranking: the chunked sparse version equals the dense released algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerank_reference import reference_from_features
from vreid_lightning.evaluation import compute_distance, evaluate_rank
from vreid_lightning.evaluation.rerank import k_reciprocal_chunks, k_reciprocal_distances, rerank_evaluate


def _problem(seed: int, nq: int, ng: int, dim: int = 6, n_ids: int = 6, dup: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, nq + ng)
    x = rng.normal(size=(nq + ng, dim)) + 2.0 * rng.normal(size=(n_ids, dim))[ids]
    if dup:  # exact duplicates: tied distances everywhere they appear
        src, dst = rng.integers(0, nq + ng, dup), rng.integers(0, nq + ng, dup)
        x[dst], ids[dst] = x[src], ids[src]
    cams = rng.integers(0, 3, nq + ng)
    return x[:nq], x[nq:], ids[:nq], ids[nq:], cams[:nq], cams[nq:]


def _check(q, g, qi, gi, qc, gc, **kw):
    ref = reference_from_features(q, g, **kw)
    fast = k_reciprocal_distances(q, g, chunk_size=5, **kw)
    assert fast.shape == ref.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=0)
    a, b = evaluate_rank(fast, qi, gi, qc, gc), evaluate_rank(ref, qi, gi, qc, gc)
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-12)
    np.testing.assert_array_equal(a["cmc"], b["cmc"])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed,nq,ng,k1,k2,dup", [
    (0, 12, 40, 20, 6, 0),    # paper defaults, k1 larger than every identity's image count
    (1, 9, 35, 4, 1, 12),     # ties from duplicated features, no local query expansion
    (2, 15, 30, 5, 3, 20),    # many ties, odd k1 (round(2.5) = 2, half to even as np.around)
    (3, 4, 2, 20, 6, 0),      # tiny gallery: k1 + 1 > N
    (4, 1, 1, 3, 2, 0),       # one query, one gallery image
    (5, 20, 60, 7, 4, 0),
])
def test_matches_dense_reference(metric, seed, nq, ng, k1, k2, dup):
    q, g, qi, gi, qc, gc = _problem(seed, nq, ng, dup=dup)
    if ng == 1:
        gi[:] = qi[0]
        gc[:] = (qc[0] + 1) % 3
    _check(q, g, qi, gi, qc, gc, k1=k1, k2=k2, lambda_value=0.3, metric=metric)


@pytest.mark.parametrize("margin", [0, 1])
def test_rows_tied_across_the_pool_edge_are_redone_exactly(margin, monkeypatch):
    # margin 0: every row's k-th value is its pool's largest, so every row is redone from its exact row;
    # margin 1 with duplicated features: a mix of pooled rows and redone ones
    import vreid_lightning.evaluation.rerank as rr

    monkeypatch.setattr(rr, "POOL_MARGIN", margin)
    q, g, qi, gi, qc, gc = _problem(2, 15, 30, dup=20)
    _check(q, g, qi, gi, qc, gc, k1=5, k2=3, lambda_value=0.3, metric="euclidean")


def test_lambda_one_is_the_normalised_squared_distance():
    # lambda = 1 leaves only the original term: d(q, g)^2 / max_x d(q, x)^2 over queries + gallery
    q = np.array([[0.0, 0.0], [3.0, 0.0]])
    g = np.array([[0.0, 1.0], [3.0, 4.0], [0.0, 2.0]])
    out = k_reciprocal_distances(q, g, k1=2, k2=1, lambda_value=1.0)
    d2 = compute_distance(torch.as_tensor(q), torch.as_tensor(np.vstack([q, g])), "euclidean").numpy() ** 2
    expected = d2[:, 2:] / d2.max(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out[0], [1 / 25, 25 / 25, 4 / 25], rtol=1e-6)  # hand-computed row


def test_known_jaccard_of_two_separate_pairs():
    # two far-apart pairs {q0, g0} and {q1, g1}, k1 = 1, k2 = 1: each pair is mutually nearest, so
    # V[i] is supported on the pair: V[q0] = (1, a) / (1 + a) on (q0, g0), V[g0] = (a, 1) / (1 + a),
    # a = exp(-1 / 10001) (squared distance 1 normalised by the row maximum 100^2 + 1), so inside a
    # pair s = 2a / (1 + a) and the Jaccard distance is 1 - s / (2 - s); across pairs it is 1
    q = np.array([[0.0, 0.0], [100.0, 0.0]])
    g = np.array([[0.0, 1.0], [100.0, 1.0]])
    jac = k_reciprocal_distances(q, g, k1=1, k2=1, lambda_value=0.0)
    a = np.exp(-1 / 10001)
    s = 2 * a / (1 + a)
    np.testing.assert_allclose(jac, [[1 - s / (2 - s), 1.0], [1.0, 1 - s / (2 - s)]], atol=1e-6)  # float32


def test_chunks_types_and_streaming_evaluation():
    q, g, qi, gi, qc, gc = _problem(7, 10, 50)
    whole = k_reciprocal_distances(torch.as_tensor(q), torch.as_tensor(g), k1=6, k2=3)
    assert isinstance(whole, torch.Tensor)
    parts = list(k_reciprocal_chunks(q, g, k1=6, k2=3, chunk_size=3))
    assert [s for s, _ in parts] == [0, 3, 6, 9] and parts[-1][1].shape == (1, 50)
    torch.testing.assert_close(torch.cat([b for _, b in parts]), whole, atol=1e-6, rtol=0)
    streamed = rerank_evaluate(q, g, qi, gi, qc, gc, k1=6, k2=3, chunk_size=4)
    dense = evaluate_rank(whole, qi, gi, qc, gc)
    assert streamed["mAP"] == pytest.approx(dense["mAP"], abs=1e-12)


def test_rerank_helps_a_structured_problem():
    # identities with a camera offset: re-ranking must not lower mAP where neighbours are informative
    q, g, qi, gi, qc, gc = _problem(11, 30, 120, dim=8, n_ids=10)
    base = evaluate_rank(compute_distance(torch.as_tensor(q), torch.as_tensor(g), "euclidean"), qi, gi, qc, gc)
    rr = rerank_evaluate(q, g, qi, gi, qc, gc, k1=8, k2=3)
    assert rr["mAP"] >= base["mAP"]


@pytest.mark.parametrize("kw,msg", [
    ({"k1": 0}, "k1"), ({"k2": 1.5}, "k2"), ({"lambda_value": 2.0}, "lambda_value"), ({"metric": "l1"}, "metric"),
])
def test_bad_parameters(kw, msg):
    q, g, *_ = _problem(0, 3, 5)
    with pytest.raises(ValueError, match=msg):
        k_reciprocal_distances(q, g, **kw)


def test_dimension_mismatch():
    with pytest.raises(ValueError, match="dimensions differ"):
        k_reciprocal_distances(np.zeros((2, 3)), np.zeros((4, 5)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    q, g, *_ = _problem(3, 20, 80, dup=10)
    cpu = k_reciprocal_distances(torch.as_tensor(q), torch.as_tensor(g), k1=10, k2=4)
    gpu = k_reciprocal_distances(torch.as_tensor(q).cuda(), torch.as_tensor(g).cuda(), k1=10, k2=4)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_every_distance_tied():
    # identical gallery images: every row's k1 + 1 boundary falls inside a tie (the exact slow path)
    rng = np.random.default_rng(2)
    q = rng.normal(size=(3, 4))
    g = np.repeat(rng.normal(size=(2, 4)), [9, 8], axis=0)
    qi, gi = np.array([0, 1, 0]), np.repeat([0, 1], [9, 8])
    _check(q, g, qi, gi, np.zeros(3, int), np.ones(17, int), k1=5, k2=3, lambda_value=0.3, metric="euclidean")
