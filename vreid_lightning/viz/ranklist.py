"""Rank lists: each query beside its top-k gallery images, true matches framed green, others red."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

__all__ = ["save_rank_list", "top_k_valid"]


def top_k_valid(dist: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray, q_cams: np.ndarray | None,
                g_cams: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the ``k`` nearest gallery items per query, junk (same id and camera) removed.

    Ties keep gallery order (stable sort), as in :func:`vreid_lightning.evaluation.evaluate_rank`.
    """
    dist = np.array(dist, dtype=np.float64, copy=True)
    if q_cams is not None and g_cams is not None:
        junk = (q_ids[:, None] == g_ids[None, :]) & (q_cams[:, None] == g_cams[None, :])
        dist[junk] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    finite = np.take_along_axis(np.isfinite(dist), order, axis=1)
    return np.where(finite, order, -1)


def _thumb(path: str, size: int, colour: tuple[int, int, int], border: int) -> Image.Image:
    with Image.open(path) as im:
        img = ImageOps.pad(im.convert("RGB"), (size - 2 * border, size - 2 * border), color=(255, 255, 255))
    return ImageOps.expand(img, border=border, fill=colour)


def save_rank_list(query_paths: Sequence[str], query_ids: Sequence[int], gallery_paths: Sequence[str],
                   gallery_ids: Sequence[int], ranked: np.ndarray, path: str | Path, size: int = 96) -> Path:
    """Draw one row per query: the query (blue frame), then its ranked gallery images.

    Args:
        query_paths, query_ids: the queries shown.
        gallery_paths, gallery_ids: the whole gallery.
        ranked: ``(Q, k)`` gallery indices per query (-1: nothing to show).
        path: PNG to write.
        size: thumbnail side in pixels.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(query_paths):
        raise ValueError(f"save_rank_list: ranked must be (num_queries, k), got shape {ranked.shape}")
    q, k = ranked.shape
    gap, label_h = 8, 14
    canvas = Image.new("RGB", ((k + 1) * size + gap, q * (size + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for r in range(q):
        y = r * (size + label_h)
        canvas.paste(_thumb(query_paths[r], size, (40, 90, 220), 4), (0, y))
        draw.text((2, y + size), f"query id {query_ids[r]}", fill=(0, 0, 0))
        for c, g in enumerate(ranked[r]):
            if g < 0:
                continue
            good = gallery_ids[g] == query_ids[r]
            x = size + gap + c * size
            canvas.paste(_thumb(gallery_paths[g], size, (30, 170, 60) if good else (220, 40, 40), 4), (x, y))
            draw.text((x + 2, y + size), f"{c + 1}: id {gallery_ids[g]}", fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
