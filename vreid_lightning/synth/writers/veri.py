"""VeRi-776 layout writer (datasets.md section 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..palette import VERI_COLOURS, VERI_TYPES
from ..schedule import View
from ..world import World
from .common import Job, RenderFn, write_lines, xml_items

__all__ = ["write_veri", "veri_name", "TEST_FRACTION"]

TEST_FRACTION = 200 / 776  # VeRi-776: 576 train ids, 200 test ids


def veri_name(v: View, suffix: str = ".jpg") -> str:
    """``VVVV_cCCC_TTTTTTTT_K.jpg`` (``.png`` in a world written as PNG)."""
    return f"{v.vid:04d}_c{v.cam:03d}_{v.timestamp:08d}_{v.crop}{suffix}"


def split_ids(vids: list[int], seed: int, test_fraction: float = TEST_FRACTION) -> tuple[list[int], list[int]]:
    """Disjoint (train, test) id lists, test ids interleaved with train ids as in VeRi."""
    n_test = int(np.clip(round(len(vids) * test_fraction), 1, len(vids) - 1))
    test = set(np.random.default_rng([seed, 8]).choice(vids, n_test, replace=False).tolist())
    return [v for v in vids if v not in test], [v for v in vids if v in test]


def write_veri(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write a VeRi-776 tree into ``out`` and return its counts."""
    suffix = getattr(render, "suffix", ".jpg")

    def name(v: View) -> str:
        return veri_name(v, suffix)

    train_ids, test_ids = split_ids(sorted(views), world.seed)
    jobs: list[Job] = []
    items_train, items_test = [], []
    queries: list[View] = []
    for vid in train_ids:
        for v in views[vid]:
            jobs.append(Job(vid, v.k, (f"image_train/{name(v)}",)))
            items_train.append(_item(world, v, name))
    for vid in test_ids:
        rng = np.random.default_rng([world.seed, 9, vid])
        cams = sorted({v.cam for v in views[vid]})
        if len(cams) < 2:
            raise RuntimeError(f"test vehicle {vid} is seen by {len(cams)} camera; queries need another camera")
        picked = {}
        for c in cams:  # one query per (test id, camera)
            in_cam = [v for v in views[vid] if v.cam == c]
            picked[in_cam[int(rng.integers(len(in_cam)))].k] = True
        for v in views[vid]:
            paths = (f"image_test/{name(v)}",) + ((f"image_query/{name(v)}",) if v.k in picked else ())
            jobs.append(Job(vid, v.k, paths))
            items_test.append(_item(world, v, name))
            if v.k in picked:
                queries.append(v)
    n = render(jobs)
    train_names = sorted(it["imageName"] for it in items_train)
    test_names = sorted(it["imageName"] for it in items_test)
    queries.sort(key=name)
    write_lines(out / "name_train.txt", train_names)
    write_lines(out / "name_test.txt", test_names)
    write_lines(out / "name_query.txt", [name(q) for q in queries])
    xml_items(out / "train_label.xml", "TrainingImages", sorted(items_train, key=lambda it: it["imageName"]))
    xml_items(out / "test_label.xml", "TestImages", sorted(items_test, key=lambda it: it["imageName"]))
    tracks = []
    for vid in test_ids:
        by_track: dict[int, list[View]] = {}
        for v in views[vid]:
            by_track.setdefault(v.track, []).append(v)
        for tr in sorted(by_track):
            vs = by_track[tr]
            tracks.append(f"{vid:04d}_c{vs[0].cam:03d} " + " ".join(name(v) for v in vs) + " ")
    write_lines(out / "test_track.txt", tracks)
    gt, jk = [], []
    for q in queries:
        same = [v for v in views[q.vid]]
        gt.append(" ".join(sorted(name(v) for v in same if v.cam != q.cam)))
        jk.append(" ".join(sorted(name(v) for v in same if v.cam == q.cam)))
    write_lines(out / "gt_image.txt", gt)
    write_lines(out / "jk_image.txt", jk)
    write_lines(out / "list_color.txt", [f"{k} {v}" for k, v in VERI_COLOURS.items()])
    write_lines(out / "list_type.txt", [f"{k} {v}" for k, v in VERI_TYPES.items()])
    write_lines(out / "camera_ID.txt", [f"c{c.cam_id:03d}" for c in world.cameras])
    pos = np.array([c.position for c in world.cameras])
    dist = np.rint(np.linalg.norm(pos[:, None] - pos[None], axis=-1)).astype(np.int64)
    write_lines(out / "camera_Dist.txt", [" ".join(str(d) for d in row) for row in dist])
    return {"images": n, "train_images": len(train_names), "query_images": len(queries),
            "test_images": len(test_names), "train_ids": len(train_ids), "test_ids": len(test_ids),
            "test_tracks": len(tracks), "cameras": len(world.cameras)}


def _item(world: World, v: View, name: Callable[[View], str] = veri_name) -> dict[str, str]:
    ident = world.identity(v.vid)
    return {"imageName": name(v), "vehicleID": f"{v.vid:04d}", "cameraID": f"c{v.cam:03d}",
            "colorID": str(ident.colour_id), "typeID": str(ident.type_id)}
