"""Pictures: rank lists (junk removed, stable order) and their PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vreid_lightning.viz.ranklist import save_rank_list, top_k_valid


def test_top_k_valid_removes_junk_and_keeps_gallery_order_on_ties():
    dist = np.array([[0.1, 0.5, 0.5, 0.0, 0.9]])
    q_ids, g_ids = np.array([1]), np.array([1, 2, 3, 1, 1])
    q_cams, g_cams = np.array([5]), np.array([6, 6, 6, 5, 7])
    ranked = top_k_valid(dist, q_ids, g_ids, q_cams, g_cams, k=5)
    assert ranked.tolist() == [[0, 1, 2, 4, -1]]  # item 3 is junk (same id, same camera); ties 1,2 in order
    assert top_k_valid(dist, q_ids, g_ids, None, None, k=2).tolist() == [[3, 0]]


def test_save_rank_list_draws_one_row_per_query(tmp_path: Path):
    paths = []
    for i, colour in enumerate(["red", "green", "blue", "gray"]):
        p = tmp_path / f"{i}.jpg"
        Image.new("RGB", (40, 30), colour).save(p)
        paths.append(str(p))
    out = save_rank_list(paths[:2], [1, 2], paths, [1, 2, 1, 3], np.array([[0, 2, 3], [1, -1, -1]]),
                         tmp_path / "rl.png", size=50, legend=False)
    img = Image.open(out).convert("RGB")
    assert img.size == (4 * 50 + 8, 2 * (50 + 14))
    # first ranked item of query 1 is a true match: green frame; third is another id: red frame
    assert img.getpixel((50 + 8 + 1, 1)) == (30, 170, 60)
    assert img.getpixel((50 + 8 + 2 * 50 + 1, 1)) == (220, 40, 40)
