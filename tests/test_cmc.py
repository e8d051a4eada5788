"""CMC curves of a test: the evaluator's own CMC (image protocol, junk removed) and VehicleID's mean over
its repeated random galleries; the PNG is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vreid_lightning.data.datamodule import EvalSet
from vreid_lightning.data.datasets.base import Split
from vreid_lightning.evaluation.protocols import image_protocol, vehicleid_protocol
from vreid_lightning.viz.cmc import save_cmc_curve, eval_set_cmc_curves


def _feats(pids: np.ndarray, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(int(pids.max()) + 1, 16, generator=g)
    return centers[torch.as_tensor(pids)] + noise * torch.randn(len(pids), 16, generator=g)


def test_image_protocol_curve_is_the_evaluators(tmp_path: Path):
    pids = np.repeat(np.arange(20), 4)
    cams = np.tile(np.arange(4), 20)
    split = Split([f"x{i}.jpg" for i in range(80)], pids, cams)
    q = np.arange(0, 80, 4)
    g = np.setdiff1d(np.arange(80), q)
    es = EvalSet(split, "image", {"query": q, "gallery": g})
    feats = _feats(pids, 1.5)
    (curve,) = eval_set_cmc_curves(feats, es, "cosine").values()
    ref = image_protocol(feats[q], feats[g], pids[q], pids[g], cams[q], cams[g], metric="cosine")
    assert len(curve) == 50 and np.all(np.diff(curve) >= 0) and curve[-1] == 1.0
    assert (curve[0], curve[4], curve[9]) == (ref["rank1"], ref["rank5"], ref["rank10"])
    png = save_cmc_curve({"all queries": curve}, tmp_path / "cmc.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vehicleid_curves_average_the_repeated_galleries():
    pids = np.repeat(np.arange(30), 3)
    split = Split([f"x{i}.jpg" for i in range(90)], pids, np.full(90, -1))
    groups = {"10": np.arange(30), "30": np.arange(90)}
    es = EvalSet(split, "vehicleid", groups, {"repeats": 3, "seed": 0})
    feats = _feats(pids, 1.0)
    curves = eval_set_cmc_curves(feats, es, "cosine")
    assert list(curves) == ["test size 10", "test size 30"]
    assert len(curves["test size 10"]) == 10  # at most the gallery size (one image per vehicle)
    ref = vehicleid_protocol(feats[groups["30"]], pids[groups["30"]], repeats=3, seed=0, metric="cosine")
    assert np.isclose(curves["test size 30"][0], ref["rank1"]) and np.isclose(curves["test size 30"][4], ref["rank5"])
