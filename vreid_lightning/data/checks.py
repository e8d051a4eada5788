"""Checks of the evaluation data made before any training: valid queries, readable images.

- :func:`check_eval_queries`: under the image protocol a query counts only if the gallery holds its
  identity from another camera; a split where no query does would fail only after training.
- :func:`check_eval_images`: every query/gallery image is fully decoded (threads), so a corrupt or
  truncated image is one error naming it now, not after hours of training (``data.verify_eval_images``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vreid_lightning.errors import DatasetFormatError

__all__ = ["count_valid_queries", "check_eval_queries", "check_eval_images"]


def count_valid_queries(eval_set: Any) -> tuple[int, int]:
    """``(valid, total)`` queries of an image-protocol eval set (valid: a same-id gallery image from another
    camera, or any same-id gallery image when the data has no cameras)."""
    split = eval_set.split
    q, g = eval_set.groups["query"], eval_set.groups["gallery"]
    qp, gp, qc, gc = split.pids[q], split.pids[g], split.camids[q], split.camids[g]
    has_cams = bool((split.camids >= 0).all())
    pairs = {(int(p), int(c)) for p, c in zip(gp, gc)}
    cams_of: dict[int, set[int]] = {}
    for p, c in pairs:
        cams_of.setdefault(p, set()).add(c)
    valid = sum(1 for p, c in zip(qp, qc) if int(p) in cams_of and (not has_cams or cams_of[int(p)] - {int(c)}))
    return valid, len(q)


def check_eval_queries(eval_set: Any, where: str, split_name: str) -> None:
    """One error naming the split when no query has a valid positive (image protocol only)."""
    from vreid_lightning.evaluation.protocol_registry import get_protocol

    if not get_protocol(eval_set).fixed_query_gallery:
        return  # VehicleID: the gallery is drawn from the queries' own identities
    valid, total = count_valid_queries(eval_set)
    if valid == 0:
        raise DatasetFormatError(where, f"at least one {split_name} query whose identity is in the gallery from "
                                        f"another camera (queries without one are skipped by the protocol)",
                                 got=f"none of {total} queries")


def _problem(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # a full decode: also catches truncated files
    except (OSError, SyntaxError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def check_eval_images(eval_set: Any, split_name: str) -> None:
    """Decode every image of ``eval_set``; the first unreadable one is one error naming it."""
    paths = [str(p) for p in eval_set.split.paths]
    if not paths:
        return
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        problems = list(pool.map(_problem, paths, chunksize=64))
    bad = np.flatnonzero([p is not None for p in problems])
    if bad.size:
        i = int(bad[0])
        raise DatasetFormatError(Path(paths[i]), f"a readable image ({split_name} image, decoded before training; "
                                                 f"{bad.size} unreadable; data.verify_eval_images=false skips this check)",
                                 got=problems[i])
