"""The suite's own simple layout (``data=custom``, docs/datasets.md): ``images/<id>/cCCC_TTTTTTTT_K.jpg``
and ``annotations.csv`` with ``path,id,camera,timestamp,split,colour,type`` (VeRi's colour and type ids as
attribute columns).

Identities split as VeRi's writer does (:func:`.veri.split_ids`); of each test identity, one query per camera
(``split=query``) and every other image in the gallery. The same tree without the CSV is the folder-per-id
layout (cameras from the file names by the parser's default ``c(\\d+)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..schedule import View
from ..world import World
from .common import Job, RenderFn, write_lines
from .veri import split_ids

__all__ = ["write_custom", "custom_path"]


def custom_path(v: View) -> str:
    """``images/VVVV/cCCC_TTTTTTTT_K.jpg``."""
    return f"images/{v.vid:04d}/c{v.cam:03d}_{v.timestamp:08d}_{v.crop}.jpg"


def write_custom(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write the custom layout into ``out`` and return its counts."""
    train_ids, test_ids = split_ids(sorted(views), world.seed)
    jobs: list[Job] = []
    rows: list[tuple[str, int, int, int, str, int, int]] = []
    for vid in sorted(views):
        picked: set[int] = set()
        if vid in test_ids:
            rng = np.random.default_rng([world.seed, 9, vid])
            for c in sorted({v.cam for v in views[vid]}):  # one query per (test id, camera)
                in_cam = [v for v in views[vid] if v.cam == c]
                picked.add(in_cam[int(rng.integers(len(in_cam)))].k)
        for v in views[vid]:
            split = "train" if vid in train_ids else ("query" if v.k in picked else "gallery")
            jobs.append(Job(vid, v.k, (custom_path(v),)))
            ident = world.identity(vid)
            rows.append((custom_path(v), vid, v.cam, v.timestamp, split, ident.colour_id, ident.type_id))
    n = render(jobs)
    rows.sort()
    write_lines(out / "annotations.csv", ["path,id,camera,timestamp,split,colour,type"]
                + [f"{p},{i},c{c:03d},{t},{s},{col},{typ}" for p, i, c, t, s, col, typ in rows])
    count = {s: sum(r[4] == s for r in rows) for s in ("train", "query", "gallery")}
    return {"images": n, "train_images": count["train"], "query_images": count["query"],
            "gallery_images": count["gallery"], "train_ids": len(train_ids), "test_ids": len(test_ids),
            "cameras": len(world.cameras)}
