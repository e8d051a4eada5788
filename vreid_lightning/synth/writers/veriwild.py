"""VERI-Wild layout writer (docs/datasets.md "VERI-Wild"), and VERI-Wild 2.0's test split beside it.

VERI-Wild splits its 40,671 ids into 30,671 training and 10,000 test ids, with nested test sets of 3,000,
5,000 and 10,000 ids and one query image per test id (CVPR 2019, Table 2). Here a quarter of the ids
(10,000 / 40,671) are test ids; ``test_3000.txt`` / ``test_5000.txt`` / ``test_10000.txt`` keep their real
names and hold 30 %, 50 % and 100 % of them, nested. ``test_<N>.txt`` lists every image of its ids, the
query included (the release's counts, 41,861 = 3,000 queries + 38,861, read as gallery lines + queries).
``vehicle_info.txt`` has the header line, then ``<vid>/<imgid>;camera;time;model;type;colour`` with the
time as ``YYYY-MM-DD HH:MM:SS`` and model/type/colour as names.

``version=2`` (``--layout veriwild2``) also writes VERI-Wild 2.0's test set from other ids:
``test_split/{A,B,All}_{query,gallery}.txt`` (``<relative path> <vid>``, PVEN's reading) with its images in
``query/query/query_final/`` and ``gallery/gallery/gallery_final/`` (PVEN ``preprocess_veriwild2.py``'s tree);
A and B are the two halves of the 2.0 ids, All their union; one query per id, not repeated in the gallery.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from ..palette import VERI_COLOURS
from ..schedule import FPS, View
from ..world import World
from .common import Job, RenderFn, write_lines

__all__ = ["write_veriwild", "write_veriwild2", "TEST_SIZES", "REAL_IDS", "INFO_HEADER", "test_set_ids"]

TEST_SIZES = (3000, 5000, 10000)
REAL_IDS = 40_671          # VERI-Wild: 40,671 ids (30,671 train + 10,000 test)
TEST_FRACTION = 10_000 / REAL_IDS
V2_FRACTION = 0.2          # veriwild2: share of the ids kept for the 2.0 test set (other vehicles)
INFO_HEADER = "id/image;Camera ID;Time;Model;Type;Color"   # PVEN reads these column names
_EPOCH = datetime(2018, 3, 1, tzinfo=timezone.utc)          # any start: a month of video (README)


def test_set_ids(test_ids: list[int]) -> dict[int, list[int]]:
    """Nested id lists per test size: 30 %, 50 %, 100 % of ``test_ids`` (real: 3k / 5k / 10k of 10k)."""
    n = len(test_ids)
    return {s: test_ids[:max(1, int(round(n * s / TEST_SIZES[-1])))] for s in TEST_SIZES}


def _time(v: View) -> str:
    return (_EPOCH + timedelta(seconds=v.timestamp // FPS)).strftime("%Y-%m-%d %H:%M:%S")


def _split(vids: list[int], seed: int, v2: bool) -> tuple[list[int], list[int], list[int]]:
    rng = np.random.default_rng([seed, 23])
    perm = rng.permutation(vids).tolist()
    n = len(perm)
    n_v2 = int(round(n * V2_FRACTION)) if v2 else 0
    n_test = max(1, int(round((n - n_v2) * TEST_FRACTION)))
    if n - n_v2 - n_test < 1 or (v2 and n_v2 < 2):
        raise ValueError(f"{n} ids are too few for the VERI-Wild{'2' if v2 else ''} layout (need train, test"
                         f"{' and 2.0 test' if v2 else ''} ids)")
    test, v2_ids = perm[:n_test], perm[n_test:n_test + n_v2]
    return sorted(perm[n_test + n_v2:]), test, v2_ids


def _write(world: World, views: dict[int, list[View]], out: Path, render: RenderFn, v2: bool) -> dict:
    vids = sorted(views)
    train_ids, test_ids, v2_ids = _split(vids, world.seed, v2)
    rng = np.random.default_rng([world.seed, 24])
    v1 = [v for vid in sorted(train_ids + test_ids) for v in views[vid]]
    order = rng.permutation(len(v1))
    imgid = {(v1[i].vid, v1[i].k): f"{n + 1:06d}" for n, i in enumerate(order)}
    key = {(v.vid, v.k): f"{v.vid:05d}/{imgid[(v.vid, v.k)]}" for v in v1}
    jobs = [Job(v.vid, v.k, (f"images/{key[(v.vid, v.k)]}.jpg",)) for v in v1]
    split = out / "train_test_split"
    info = [INFO_HEADER]
    for v in sorted(v1, key=lambda v: key[(v.vid, v.k)]):
        ident = world.identity(v.vid)
        info.append(f"{key[(v.vid, v.k)]};{v.cam};{_time(v)};{ident.model.name};{ident.model.type_name};"
                    f"{VERI_COLOURS[ident.colour_id]}")
    counts: dict = {"train_ids": len(train_ids), "test_ids": len(test_ids), "vehicle_info_lines": len(info) - 1}
    counts["train_images"] = write_lines(split / "train_list.txt",
                                         sorted(key[(v.vid, v.k)] for vid in train_ids for v in views[vid]))
    write_lines(split / "vehicle_info.txt", info)
    query = {vid: views[vid][int(np.random.default_rng([world.seed, 25, vid]).integers(len(views[vid])))]
             for vid in test_ids}
    for size, ids in test_set_ids(test_ids).items():
        gallery = write_lines(split / f"test_{size}.txt", sorted(key[(v.vid, v.k)] for vid in ids for v in views[vid]))
        queries = write_lines(split / f"test_{size}_query.txt", sorted(key[(query[vid].vid, query[vid].k)]
                                                                        for vid in ids))
        counts[f"test_{size}"] = {"ids": len(ids), "query": queries, "gallery_lines": gallery,
                                  "gallery": gallery - queries}
    if v2:
        jobs += _write_v2(world, views, out, v2_ids, counts)
    counts["images"] = render(jobs)
    return counts


def _write_v2(world: World, views: dict[int, list[View]], out: Path, ids: list[int], counts: dict) -> list[Job]:
    """VERI-Wild 2.0's test lists and the jobs rendering their images."""
    rng = np.random.default_rng([world.seed, 26])
    jobs: list[Job] = []
    lines: dict[str, dict[int, list[str]]] = {"query": {}, "gallery": {}}
    all_views = [v for vid in ids for v in views[vid]]
    order = rng.permutation(len(all_views))
    names = {(all_views[i].vid, all_views[i].k): f"{n + 1:06d}.jpg" for n, i in enumerate(order)}
    for vid in ids:
        q = int(rng.integers(len(views[vid])))
        for j, v in enumerate(views[vid]):
            phase = "query" if j == q else "gallery"
            rel = f"{phase}/{phase}_final/{names[(v.vid, v.k)]}"
            jobs.append(Job(v.vid, v.k, (f"{phase}/{rel}",)))
            lines[phase].setdefault(vid, []).append(f"{rel} {vid}")
    half = len(ids) // 2
    subsets = {"A": ids[:half], "B": ids[half:], "All": ids}
    folder = out / "test_split"
    for subset, sub_ids in subsets.items():
        entry = {"ids": len(sub_ids)}
        for phase in ("query", "gallery"):
            entry[phase] = write_lines(folder / f"{subset}_{phase}.txt",
                                       sorted(line for vid in sub_ids for line in lines[phase][vid]))
        counts[f"2.0-{subset}"] = entry
    counts["v2_ids"] = len(ids)
    return jobs


def write_veriwild(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write a VERI-Wild tree into ``out`` and return its counts."""
    return _write(world, views, out, render, v2=False)


def write_veriwild2(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write a VERI-Wild tree plus the VERI-Wild 2.0 test split (``test_split/``) into ``out``."""
    return _write(world, views, out, render, v2=True)
