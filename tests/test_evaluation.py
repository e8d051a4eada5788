"""Exact ranking metrics, distances and protocols against a plain sort-everything reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vreid_lightning.evaluation import (
    RankAccumulator,
    compute_distance,
    cosine_distance,
    euclidean_distance,
    evaluate_features,
    evaluate_rank,
    gallery_distance_fn,
    image_protocol,
    vehicleid_draw,
    vehicleid_protocol,
    vehicleid_protocol_repeats,
)
from vreid_lightning.data.datamodule import EvalSet
from vreid_lightning.data.datasets.base import Split
from vreid_lightning.evaluation.features import row_index
from vreid_lightning.evaluation.protocol_registry import run_protocol
from vreid_lightning.evaluation.saved_features import from_eval_set

# ----------------------------------------------------------------------------------------------
# Reference: per query, stable sort of the whole row, junk removed, then AP / CMC / mINP.
# ----------------------------------------------------------------------------------------------


def reference_eval(distmat, q_ids, g_ids, q_cams=None, g_cams=None, max_rank=50):
    distmat = np.asarray(distmat)
    q_ids, g_ids = np.asarray(q_ids), np.asarray(g_ids)
    aps, inps, cmcs, num_valid = [], [], [], 0
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        matches = g_ids[order] == q_ids[i]
        if q_cams is None:
            keep = np.ones(len(order), dtype=bool)
        else:
            junk = matches & (np.asarray(g_cams)[order] == np.asarray(q_cams)[i])
            keep = ~junk
        hits = matches[keep]
        if not hits.any():
            continue
        num_valid += 1
        ranks_of_positives = np.nonzero(hits)[0] + 1  # 1-based ranks in the junk-free ranking
        precisions = [(k + 1) / r for k, r in enumerate(ranks_of_positives)]
        aps.append(sum(precisions) / len(precisions))
        inps.append(len(ranks_of_positives) / ranks_of_positives[-1])
        cmc = np.zeros(max_rank)
        for k in range(max_rank):
            cmc[k] = 1.0 if ranks_of_positives[0] <= k + 1 else 0.0
        cmcs.append(cmc)
    if num_valid == 0:
        return {"num_valid_queries": 0, "num_queries": distmat.shape[0]}
    return {
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "cmc": np.mean(cmcs, axis=0),
        "num_valid_queries": num_valid,
        "num_queries": distmat.shape[0],
    }


def assert_same(result, expected, max_rank):
    assert result["num_valid_queries"] == expected["num_valid_queries"]
    assert result["num_queries"] == expected["num_queries"]
    assert abs(result["mAP"] - expected["mAP"]) <= 1e-9
    assert abs(result["mINP"] - expected["mINP"]) <= 1e-9
    assert isinstance(result["cmc"], np.ndarray) and result["cmc"].dtype == np.float64
    assert result["cmc"].shape == (max_rank,)
    np.testing.assert_allclose(result["cmc"], expected["cmc"], rtol=0, atol=1e-9)


def random_problem(rng, nq, ng, n_ids=6, n_cams=3, levels=5, dtype=np.float32):
    """Integer-valued distances (many ties), few ids: queries without positives and all-junk rows."""
    d = rng.integers(0, levels, (nq, ng)).astype(dtype)
    return (
        d,
        rng.integers(0, n_ids + 2, nq),  # ids >= n_ids never occur in the gallery
        rng.integers(0, n_ids, ng),
        rng.integers(0, n_cams, nq),
        rng.integers(0, n_cams, ng),
    )


# ----------------------------------------------------------------------------------------------
# evaluate_rank
# ----------------------------------------------------------------------------------------------


def test_hand_computed_example():
    # q0: id 1 cam 0. Gallery idx 2 (id 1, cam 0) is junk. Valid ranking: 1(neg) 0(pos) 4(neg) 3(pos)
    #     -> positive ranks 2, 4: AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4.
    # q1: id 2 cam 1. Ties at 0.2 keep gallery order: 3(neg) 0(neg) 1(pos) 4(pos) 2
    #     -> positive ranks 3, 4: AP = (1/3 + 2/4) / 2 = 5/12, INP = 2/4.
    # q2: id 3 has no gallery image: excluded.
    dist = np.array(
        [[0.3, 0.1, 0.2, 0.5, 0.4], [0.2, 0.2, 0.9, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32
    )
    out = evaluate_rank(dist, [1, 2, 3], [1, 2, 1, 1, 2], [0, 1, 0], [1, 0, 0, 1, 0], max_rank=5)
    assert out["num_valid_queries"] == 2 and out["num_queries"] == 3
    assert out["mAP"] == pytest.approx((0.5 + 5 / 12) / 2, abs=1e-12)
    assert out["mINP"] == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(out["cmc"], [0.0, 0.5, 1.0, 1.0, 1.0], atol=1e-12)
    # Without the junk rule, gallery idx 2 (d=0.2) is a positive of q0 ranked 2nd.
    out = evaluate_rank(dist[:1], [1], [1, 2, 1, 1, 2], max_rank=5)
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    np.testing.assert_allclose(out["cmc"], [0.0, 1.0, 1.0, 1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_cams", [True, False])
def test_matches_reference_with_ties(dtype, use_cams):
    rng = np.random.default_rng(0)
    for trial in range(25):
        nq, ng = int(rng.integers(1, 25)), int(rng.integers(1, 50))
        d, qi, gi, qc, gc = random_problem(rng, nq, ng, dtype=dtype)
        if not use_cams:
            qc = gc = None
        expected = reference_eval(d, qi, gi, qc, gc, max_rank=10)
        if expected["num_valid_queries"] == 0:
            with pytest.raises(ValueError, match="at least one query with a valid positive"):
                evaluate_rank(d, qi, gi, qc, gc, max_rank=10)
            continue
        for chunk in (1, 7, None):
            assert_same(evaluate_rank(d, qi, gi, qc, gc, max_rank=10, chunk_size=chunk), expected, 10)


def test_torch_inputs_and_label_containers_match_numpy():
    rng = np.random.default_rng(1)
    d, qi, gi, qc, gc = random_problem(rng, 30, 80, n_ids=4)
    expected = reference_eval(d, qi, gi, qc, gc, max_rank=20)
    as_torch = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qi), torch.from_numpy(gi),
                             torch.from_numpy(qc), torch.from_numpy(gc), max_rank=20, chunk_size=7)
    as_lists = evaluate_rank(d.tolist(), qi.tolist(), gi.tolist(), qc.tolist(), gc.tolist(), max_rank=20)
    assert_same(as_torch, expected, 20)
    assert_same(as_lists, expected, 20)


def test_all_junk_rows_and_queries_without_positives_are_excluded():
    dist = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    # q0: only same-camera matches (all junk); q1: id absent; q2: one valid positive at idx 2.
    out = evaluate_rank(dist, [5, 9, 7], [5, 5, 7], [0, 0, 1], [0, 0, 0], max_rank=3)
    assert out["num_valid_queries"] == 1 and out["num_queries"] == 3
    assert out["mAP"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(out["cmc"], [0.0, 0.0, 1.0])


def test_real_valued_float64_ties_and_signed_zero():
    rng = np.random.default_rng(2)
    for _ in range(10):
        d, qi, gi, qc, gc = random_problem(rng, 20, 40, levels=3, dtype=np.float64)
        d = d + rng.integers(0, 3, d.shape) * 1e-13  # not float32-representable, with exact ties
        expected = reference_eval(d, qi, gi, qc, gc, max_rank=8)
        assert_same(evaluate_rank(d, qi, gi, qc, gc, max_rank=8, chunk_size=3), expected, 8)
    d = np.array([[0.0, -0.0, 0.0, -0.0, -1.0]], dtype=np.float32)  # -0.0 == 0.0: gallery order
    for g_ids in ([1, 2, 1, 2, 2], [2, 1, 2, 1, 2], [2, 2, 2, 1, 1]):
        expected = reference_eval(d, [1], np.array(g_ids), max_rank=5)
        assert_same(evaluate_rank(d, [1], g_ids, max_rank=5), expected, 5)


def test_integer_and_half_distances():
    rng = np.random.default_rng(3)
    d, qi, gi, qc, gc = random_problem(rng, 15, 30, n_ids=3)
    expected = reference_eval(d, qi, gi, qc, gc, max_rank=5)
    assert_same(evaluate_rank(d.astype(np.int64) - 2, qi, gi, qc, gc, max_rank=5), expected, 5)
    assert_same(evaluate_rank(torch.from_numpy(d).half(), qi, gi, qc, gc, max_rank=5), expected, 5)


def test_nan_distances():
    d = np.array([[0.5, np.nan, 0.2, 0.7]], dtype=np.float32)
    # NaN of a negative ranks last, as in np.argsort.
    out = evaluate_rank(d, [1], [1, 2, 2, 1], max_rank=4)
    assert_same(out, reference_eval(d, [1], np.array([1, 2, 2, 1]), max_rank=4), 4)
    with pytest.raises(ValueError, match="NaN distance for a query's positives"):
        evaluate_rank(d, [2], [1, 2, 2, 1])


def test_row_blocks_within_a_chunk(monkeypatch):
    """Chunks larger than the 63-bit key allows are split into row blocks."""
    rng = np.random.default_rng(4)
    d, qi, gi, qc, gc = random_problem(rng, 23, 30, n_ids=3)
    acc = RankAccumulator(gi, gc, max_rank=6)
    acc._gbits = 29  # as for a 2^29 gallery: blocks of 4 rows
    acc.update(torch.from_numpy(d), qi, qc)
    assert_same(acc.compute(), reference_eval(d, qi, gi, qc, gc, max_rank=6), 6)


def test_bad_input_messages():
    d = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"distmat: expected a 2-D"):
        evaluate_rank(np.zeros(3), [1], [1, 2, 3])
    with pytest.raises(ValueError, match=r"q_ids: expected a 1-D array of length 2"):
        evaluate_rank(d, [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"distmat: expected a \(C, 4\) chunk"):
        evaluate_rank(d, [1, 2], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="q_cams/g_cams: expected both or neither"):
        evaluate_rank(d, [1, 2], [1, 2, 3], q_cams=[0, 0])
    with pytest.raises(ValueError, match="g_ids: expected integer labels"):
        evaluate_rank(d, [1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="chunk_size: expected a positive int"):
        evaluate_rank(d, [1, 2], [1, 2, 3], chunk_size=0)
    with pytest.raises(ValueError, match="at least one query with a valid positive"):
        evaluate_rank(d, [7, 8], [1, 2, 3])


# ----------------------------------------------------------------------------------------------
# Distances and evaluate_features
# ----------------------------------------------------------------------------------------------


def test_distance_helpers_match_plain_formulas():
    torch.manual_seed(0)
    q, g = torch.randn(6, 5, dtype=torch.float64) + 2.0, torch.randn(9, 5, dtype=torch.float64) + 2.0
    plain_euclid = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1).sqrt()
    qn, gn = q / q.norm(dim=1, keepdim=True), g / g.norm(dim=1, keepdim=True)
    plain_cos = 1.0 - (qn[:, None, :] * gn[None, :, :]).sum(-1)
    torch.testing.assert_close(euclidean_distance(q, g), plain_euclid, rtol=0, atol=1e-10)
    torch.testing.assert_close(cosine_distance(q, g), plain_cos, rtol=0, atol=1e-12)
    torch.testing.assert_close(compute_distance(q, g, "euclidean"), plain_euclid, rtol=0, atol=1e-10)
    torch.testing.assert_close(compute_distance(q, g, "cosine"), plain_cos, rtol=0, atol=1e-12)
    q32, g32 = q.float() * 100, g.float() * 100  # large common offset: still accurate, never < 0
    d32 = euclidean_distance(q32, g32)
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), plain_euclid * 100, rtol=1e-5, atol=1e-3)
    self_d = euclidean_distance(q32, q32)
    assert bool((self_d >= 0).all()) and not bool(torch.isnan(self_d).any())
    assert float(self_d.diagonal().max()) < 1e-3 * float(self_d.median())  # rounding only
    with pytest.raises(ValueError, match="metric: expected one of"):
        compute_distance(q, g, "manhattan")
    with pytest.raises(ValueError, match="same dimension"):
        compute_distance(q, g[:, :3])


def test_cosine_distance_holds_no_gallery_copy_and_stays_within_rounding():
    torch.manual_seed(0)
    q, g = torch.randn(7, 64) + 0.5, torch.randn(300, 64) * 3.0 + 0.5
    fn = gallery_distance_fn(g, "cosine")
    held = []
    for cell in fn.__closure__:  # the tensors the distance function keeps (directly or in a dict)
        try:
            v = cell.cell_contents
        except ValueError:  # a name the cosine branch never binds
            continue
        held += list(v.values()) if isinstance(v, dict) else [v]
    big = [t for t in held if isinstance(t, torch.Tensor) and t.numel() >= g.numel()]
    assert big and all(t.data_ptr() == g.data_ptr() for t in big)  # the caller's gallery, no (G, D) copy
    qd, gd = q.double(), g.double()
    exact = 1.0 - (qd / qd.norm(dim=1, keepdim=True)) @ (gd / gd.norm(dim=1, keepdim=True)).T
    d = fn(q)
    assert d.dtype == torch.float32
    assert float((d.double() - exact).abs().max()) < 4 * torch.finfo(torch.float32).eps  # last bits only
    assert bool((fn(g[:5]).diagonal() <= 2 * torch.finfo(torch.float32).eps).all())  # self-distance ~ 0


def test_consecutive_rows_are_views_and_evaluate_like_copies():
    assert row_index(np.arange(3, 7), 10) == slice(3, 7)
    for rows in ([3, 5, 6], [8, 9, 10], [], [2, 1]):  # gap, out of range, empty, descending: an index array
        assert isinstance(row_index(np.asarray(rows, dtype=np.int64), 10), np.ndarray)
    torch.manual_seed(1)
    ids = np.repeat(np.arange(10), 4)
    cams = np.tile(np.arange(4), 10)
    feats = torch.randn(10, 16)[ids] + 0.7 * torch.randn(40, 16)
    split = Split(paths=[f"{i}.jpg" for i in range(40)], pids=ids, camids=cams, timestamps=np.arange(40))
    q, g = np.arange(0, 40, 4), np.arange(40)
    shuffled = EvalSet(split, "image", {"query": q, "gallery": np.r_[g[1:], g[:1]]}, {})
    consecutive = EvalSet(split, "image", {"query": q, "gallery": g}, {})
    fs = from_eval_set(feats, consecutive, "cosine")
    assert np.shares_memory(fs.views[""][1], feats.numpy())  # the gallery is a view of the features
    expected = image_protocol(feats[q].clone(), feats.clone(), ids[q], ids, cams[q], cams)
    assert run_protocol(feats, consecutive, "cosine") == expected
    assert run_protocol(feats, shuffled, "cosine")["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluate_features_equals_evaluate_rank(metric):
    rng = np.random.default_rng(5)
    nq, ng, n_ids = 40, 120, 10
    centres = rng.standard_normal((n_ids, 8))
    gi, qi = rng.integers(0, n_ids, ng), rng.integers(0, n_ids, nq)
    gc, qc = rng.integers(0, 4, ng), rng.integers(0, 4, nq)
    g = torch.tensor(centres[gi] + rng.standard_normal((ng, 8)), dtype=torch.float32)
    q = torch.tensor(centres[qi] + rng.standard_normal((nq, 8)), dtype=torch.float32)
    g[5] = g[3]  # duplicate gallery features: exact distance ties
    full = evaluate_rank(compute_distance(q, g, metric), qi, gi, qc, gc, max_rank=15)
    assert_same(full, reference_eval(compute_distance(q, g, metric).numpy(), qi, gi, qc, gc, 15), 15)
    for chunk in (1, 7, None):
        assert_same(evaluate_features(q, g, qi, gi, qc, gc, metric, 15, chunk), full, 15)
    assert_same(evaluate_features(q.numpy(), g.numpy(), qi, gi, None, None, metric, 15),
                evaluate_rank(compute_distance(q, g, metric), qi, gi, max_rank=15), 15)


def test_image_protocol_keys_and_values():
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((5, 4))
    gi, qi = np.repeat(np.arange(5), 6), np.arange(5)
    gc, qc = np.tile(np.arange(6), 5), np.zeros(5, dtype=np.int64)
    g = torch.tensor(centres[gi] + 0.3 * rng.standard_normal((30, 4)), dtype=torch.float32)
    q = torch.tensor(centres[qi], dtype=torch.float32)
    out = image_protocol(q, g, qi, gi, qc, gc, "euclidean")
    assert set(out) == {"mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries", "num_queries"}
    ref = reference_eval(compute_distance(q, g, "euclidean").numpy(), qi, gi, qc, gc, 10)
    assert out["num_valid_queries"] == 5
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-9)
    assert (out["rank1"], out["rank5"], out["rank10"]) == pytest.approx(tuple(ref["cmc"][[0, 4, 9]]), abs=1e-9)


# ----------------------------------------------------------------------------------------------
# VehicleID protocol
# ----------------------------------------------------------------------------------------------


def vehicleid_problem(seed=7, n_ids=30, per_id=(2, 7), dim=6, noise=1.2):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(100, 100 + n_ids), rng.integers(*per_id, n_ids))
    rng.shuffle(ids)
    centres = rng.standard_normal((ids.max() + 1, dim))
    feats = torch.tensor(centres[ids] + noise * rng.standard_normal((len(ids), dim)), dtype=torch.float32)
    return feats, ids


def test_vehicleid_draw_one_gallery_image_per_id():
    _, ids = vehicleid_problem()
    draws = [vehicleid_draw(ids, seed=0, repeat=r) for r in range(5)]
    for q_idx, g_idx in draws:
        assert np.array_equal(np.sort(ids[g_idx]), np.unique(ids))  # each id exactly once
        assert np.array_equal(np.sort(np.concatenate([q_idx, g_idx])), np.arange(len(ids)))
    again = vehicleid_draw(ids, seed=0, repeat=3)
    assert np.array_equal(again[1], draws[3][1])
    assert len({tuple(g) for _, g in draws}) == 5  # repeats draw different galleries
    assert not np.array_equal(vehicleid_draw(ids, seed=1, repeat=0)[1], draws[0][1])


def test_vehicleid_draw_is_uniform_within_an_id():
    ids = np.array([0, 0, 0, 1])
    picks = np.array([vehicleid_draw(ids, seed=0, repeat=r)[1][0] for r in range(600)])
    counts = np.bincount(picks, minlength=3)
    assert counts.sum() == 600 and counts.min() > 150  # each of the three images ~200 times


def test_vehicleid_protocol_repeats_seed_and_std():
    feats, ids = vehicleid_problem()
    runs = vehicleid_protocol_repeats(feats, ids, repeats=4, seed=0)
    assert len({tuple(sorted(r.items())) for r in runs}) > 1  # repeats differ from each other
    q_idx, g_idx = vehicleid_draw(ids, seed=0, repeat=2)
    direct = evaluate_rank(compute_distance(feats[q_idx], feats[g_idx]), ids[q_idx], ids[g_idx], max_rank=10)
    assert runs[2]["mAP"] == pytest.approx(direct["mAP"], abs=1e-12)
    assert runs[2]["rank5"] == pytest.approx(direct["cmc"][4], abs=1e-12)
    out = vehicleid_protocol(feats, ids, repeats=4, seed=0)
    assert out == vehicleid_protocol(feats.numpy(), ids, repeats=4, seed=0)  # same seed: identical
    assert out != vehicleid_protocol(feats, ids, repeats=4, seed=1)
    for k in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        values = np.array([r[k] for r in runs])
        assert out[k] == pytest.approx(values.mean(), abs=1e-12)
        assert out[f"{k}_std"] == pytest.approx(values.std(), abs=1e-12)  # population std
    assert out["mAP_std"] > 0.0
    with pytest.raises(ValueError, match="repeats: expected a positive int"):
        vehicleid_protocol(feats, ids, repeats=0)
    with pytest.raises(ValueError, match="feats/ids: expected"):
        vehicleid_protocol(feats[:-1], ids)


# ----------------------------------------------------------------------------------------------
# GPU path
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_tensors_match_reference():
    rng = np.random.default_rng(8)
    d, qi, gi, qc, gc = random_problem(rng, 50, 200, n_ids=8)
    expected = reference_eval(d, qi, gi, qc, gc, max_rank=10)
    dev = torch.device("cuda")
    out = evaluate_rank(torch.from_numpy(d).to(dev), torch.from_numpy(qi).to(dev), torch.from_numpy(gi).to(dev),
                        torch.from_numpy(qc).to(dev), torch.from_numpy(gc).to(dev), max_rank=10, chunk_size=7)
    assert_same(out, expected, 10)
    torch.manual_seed(0)
    q, g = torch.randn(30, 16), torch.randn(300, 16)
    qi, gi = rng.integers(0, 10, 30), rng.integers(0, 10, 300)
    on_cpu = evaluate_features(q, g, qi, gi, metric="cosine", max_rank=10)
    on_gpu = evaluate_features(q.to(dev), g.to(dev), qi, gi, metric="cosine", max_rank=10, chunk_size=8)
    assert on_gpu["num_valid_queries"] == on_cpu["num_valid_queries"]
    assert on_gpu["mAP"] == pytest.approx(on_cpu["mAP"], abs=1e-4)  # GPU matmul rounding may differ
    gpu_dist = compute_distance(q.to(dev), g.to(dev))
    expected = reference_eval(gpu_dist.cpu().numpy(), qi, gi, None, None, 10)
    assert_same(evaluate_rank(gpu_dist, qi, gi, max_rank=10), expected, 10)
