"""Rank lists: each query beside its top-k gallery images, true matches framed green, false positives red.

False positives (a gallery image of another identity ranked above or among the true matches) get a
thicker red frame than the green one of a true match, so failure cases read at a glance (RNN-HA Fig. 4:
"Red boxes denote false positives"; VehicleNet Fig. 6); ``legend=True`` adds a colour key above the rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

__all__ = ["save_rank_list", "select_queries", "top_k_valid", "save_test_rank_list", "save_outcome_rank_list",
           "QUERY_RGB", "MATCH_RGB", "FALSE_POSITIVE_RGB", "UNKNOWN_RGB"]

QUERY_RGB = (40, 90, 220)
MATCH_RGB = (30, 170, 60)
FALSE_POSITIVE_RGB = (220, 40, 40)
UNKNOWN_RGB = (150, 150, 150)  # an unlabelled query (id -1): neither a match nor a false positive


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


def select_queries(ranked: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray, successes: int,
                   failures: int) -> np.ndarray:
    """Query rows for a rank-list figure: first ``successes`` queries whose rank-1 is a true match, then
    ``failures`` whose rank-1 is a false positive (RNN-HA Fig. 4: eight successes above four failures),
    each of a distinct identity (over both groups), in query order. Fewer are returned when fewer exist.

    Args:
        ranked: ``(Q, k)`` gallery indices per query (-1: none), as from :func:`top_k_valid`.
        q_ids, g_ids: query and gallery identities.
        successes, failures: how many of each to pick.
    """
    ranked = np.asarray(ranked)
    q_ids, g_ids = np.asarray(q_ids), np.asarray(g_ids)
    top = ranked[:, 0] if ranked.shape[1] else np.full(len(ranked), -1)
    right = (top >= 0) & (g_ids[np.maximum(top, 0)] == q_ids)
    wrong = (top >= 0) & ~right
    picked: list[int] = []
    seen: set[int] = set()  # one query per identity over the whole figure
    for mask, n in ((right, successes), (wrong, failures)):
        taken = 0
        for i in np.flatnonzero(mask):
            if taken >= n:
                break
            if int(q_ids[i]) not in seen:
                seen.add(int(q_ids[i]))
                picked.append(int(i))
                taken += 1
    return np.asarray(picked, dtype=np.int64)


def save_rank_list(query_paths: Sequence[str], query_ids: Sequence[int], gallery_paths: Sequence[str],
                   gallery_ids: Sequence[int], ranked: np.ndarray, path: str | Path, size: int = 96,
                   border: int = 4, false_positive_border: int = 8, legend: bool = False,
                   distances: np.ndarray | None = None) -> Path:
    """Draw one row per query: the query (blue frame), then its ranked gallery images.

    True matches are framed green (``border`` px), false positives red (``false_positive_border`` px).

    Args:
        query_paths, query_ids: the queries shown.
        gallery_paths, gallery_ids: the whole gallery.
        ranked: ``(Q, k)`` gallery indices per query (-1: nothing to show).
        path: PNG to write.
        size: thumbnail side in pixels.
        border: frame width of the query and of true matches.
        false_positive_border: frame width of false positives.
        legend: draw the colour legend above the rows.
        distances: ``(Q, k)`` distances of ``ranked``, written under each image when given. A query with
            id -1 (unlabelled) gets grey frames and ``?`` for ids.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(query_paths):
        raise ValueError(f"save_rank_list: ranked must be (num_queries, k), got shape {ranked.shape}")
    if not 0 <= border < size // 2 or not 0 <= false_positive_border < size // 2:
        raise ValueError(f"save_rank_list: borders must be in [0, size/2), got {border}, {false_positive_border}")
    q, k = ranked.shape
    gap, label_h = 8, 14
    top = label_h + 4 if legend else 0
    canvas = Image.new("RGB", ((k + 1) * size + gap, top + q * (size + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    if legend:
        x = 2
        for text, colour in (("query", QUERY_RGB), ("true match", MATCH_RGB), ("false positive", FALSE_POSITIVE_RGB)):
            draw.rectangle((x, 3, x + 10, 13), fill=colour)
            draw.text((x + 14, 2), text, fill=(0, 0, 0))
            x += 14 + 8 * len(text) + 12
    for r in range(q):
        y = top + r * (size + label_h)
        canvas.paste(_thumb(query_paths[r], size, QUERY_RGB, border), (0, y))
        known = int(query_ids[r]) >= 0
        draw.text((2, y + size), f"query id {query_ids[r] if known else '?'}", fill=(0, 0, 0))
        for c, g in enumerate(ranked[r]):
            if g < 0:
                continue
            good = gallery_ids[g] == query_ids[r]
            x = size + gap + c * size
            frame = ((MATCH_RGB, border) if good else (FALSE_POSITIVE_RGB, false_positive_border)) if known \
                else (UNKNOWN_RGB, border)
            canvas.paste(_thumb(gallery_paths[g], size, *frame), (x, y))
            label = f"id {gallery_ids[g]}" if int(gallery_ids[g]) >= 0 else ""
            if distances is not None:
                label = f"{distances[r][c]:.3f} {label}"
            draw.text((x + 2, y + size), f"{c + 1}: {label}".rstrip(), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path



def _ranked(feats: Any, eval_set: Any, metric: str, k: int, num_queries: int | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query rows, gallery rows, top-k valid gallery positions per query)`` of the protocol's query/gallery
    split; with ``num_queries``, only the first queries of that many distinct identities."""
    import torch

    from vreid_lightning.data.eval_sets import one_image_per_identity
    from vreid_lightning.evaluation.distance import compute_distance
    from vreid_lightning.evaluation.protocol_registry import get_protocol

    q_rows, g_rows, cams = get_protocol(eval_set).query_gallery(eval_set)
    if num_queries is not None:
        q_rows = one_image_per_identity(eval_set, num_queries, rows=q_rows)
    pids, dev = eval_set.split.pids, feats.device
    dist = compute_distance(feats[torch.as_tensor(q_rows, device=dev)], feats[torch.as_tensor(g_rows, device=dev)],
                            metric=metric).cpu().numpy()
    ranked = top_k_valid(dist, pids[q_rows], pids[g_rows], None if cams is None else cams[q_rows],
                         None if cams is None else cams[g_rows], k)
    return q_rows, g_rows, ranked


def save_test_rank_list(feats: Any, eval_set: Any, metric: str, num_queries: int, path: str | Path) -> Path:
    """Top-10 rank list of the first ``num_queries`` queries of distinct identities (junk removed)."""
    q_rows, g_rows, ranked = _ranked(feats, eval_set, metric, 10, num_queries)
    split = eval_set.split
    return save_rank_list([split.paths[i] for i in q_rows], split.pids[q_rows].tolist(),
                          [split.paths[i] for i in g_rows], split.pids[g_rows].tolist(), ranked, path)


def save_outcome_rank_list(feats: Any, eval_set: Any, metric: str, successes: int, failures: int,
                           path: str | Path, k: int = 5) -> Path:
    """Top-``k`` lists of ``successes`` queries whose rank-1 is right, then ``failures`` whose rank-1 is wrong,
    one per identity (RNN-HA Fig. 4). VehicleID: the first test size's first seeded gallery draw."""
    q_rows, g_rows, ranked = _ranked(feats, eval_set, metric, k)
    split = eval_set.split
    q_ids, g_ids = split.pids[q_rows], split.pids[g_rows]
    pick = select_queries(ranked, q_ids, g_ids, successes, failures)
    return save_rank_list([split.paths[i] for i in q_rows[pick]], q_ids[pick].tolist(),
                          [split.paths[i] for i in g_rows], g_ids.tolist(), ranked[pick], path, legend=True)
