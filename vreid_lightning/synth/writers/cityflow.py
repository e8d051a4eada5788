"""CityFlow / AI City Challenge 2020 re-ID (AIC20_ReID) layout writer (datasets.md section 3).

Half the ids (a non-contiguous subset) are labelled training vehicles; the other half appear only in
the unlabelled query and test sets. Up to three queries per test vehicle are taken from distinct
cameras out of tracks with at least two frames, so every query keeps same-id test images in other
cameras; query images are not repeated in the test set (as in AIC20).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..schedule import View
from ..world import World
from .common import Job, RenderFn, write_lines, xml_items

__all__ = ["write_cityflow", "QUERIES_PER_ID"]

QUERIES_PER_ID = 3  # AIC20: 1,052 queries for 333 test ids


def _tracks(vs: list[View]) -> list[list[View]]:
    by: dict[int, list[View]] = {}
    for v in vs:
        by.setdefault(v.track, []).append(v)
    return [by[t] for t in sorted(by)]


def write_cityflow(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write an AIC20_ReID tree into ``out`` and return its counts."""
    vids = sorted(views)
    rng = np.random.default_rng([world.seed, 13])
    n_train = int(np.clip(len(vids) // 2, 1, len(vids) - 1))
    perm = rng.permutation(vids)
    train_ids, test_ids = sorted(perm[:n_train].tolist()), sorted(perm[n_train:].tolist())
    # training set: tracks in random order, frames of a track numbered consecutively
    train_tracks = [tr for vid in train_ids for tr in _tracks(views[vid])]
    train_tracks = [train_tracks[i] for i in rng.permutation(len(train_tracks))]
    query: list[View] = []
    test_tracks: list[list[View]] = []
    for vid in test_ids:
        r = np.random.default_rng([world.seed, 14, vid])
        tracks = _tracks(views[vid])
        cams = {t[0].cam for t in tracks}
        eligible = [i for i, t in enumerate(tracks) if len(t) >= 2]
        chosen_cams: set[int] = set()
        picks: set[tuple[int, int]] = set()
        for i in r.permutation(eligible).tolist():
            t = tracks[i]
            if len(picks) >= QUERIES_PER_ID or t[0].cam in chosen_cams or len(cams) < 2:
                continue
            chosen_cams.add(t[0].cam)
            q = t[int(r.integers(len(t)))]
            picks.add((q.vid, q.k))
            query.append(q)
        for t in tracks:
            rest = [v for v in t if (v.vid, v.k) not in picks]
            if rest:
                test_tracks.append(rest)
    test_tracks = [test_tracks[i] for i in rng.permutation(len(test_tracks))]
    query = [query[i] for i in rng.permutation(len(query))]
    jobs: list[Job] = []
    names: dict[str, list[str]] = {"train": [], "query": [], "test": []}
    ids: dict[tuple[int, int], int] = {}

    def add(split: str, v: View) -> str:
        num = len(names[split]) + 1
        name = f"{num:06d}.jpg"
        names[split].append(name)
        ids[(v.vid, v.k)] = num
        jobs.append(Job(v.vid, v.k, (f"image_{split}/{name}",)))
        return name

    items = []
    for tr in train_tracks:
        for v in tr:
            items.append({"imageName": add("train", v), "vehicleID": f"{v.vid:04d}", "cameraID": f"c{v.cam:03d}"})
    for v in query:
        add("query", v)
    for tr in test_tracks:
        for v in tr:
            add("test", v)
    n = render(jobs)
    for split in ("train", "query", "test"):
        write_lines(out / f"name_{split}.txt", names[split])
    xml_items(out / "train_label.xml", "TrainingImages", items)
    for split, tracks in (("train", train_tracks), ("test", test_tracks)):
        write_lines(out / f"{split}_track.txt",
                    [" ".join(f"{ids[(v.vid, v.k)]:06d}.jpg" for v in t) + " " for t in tracks])
        write_lines(out / f"{split}_track_id.txt", [" ".join(str(ids[(v.vid, v.k)]) for v in t) + " " for t in tracks])
    return {"images": n, "train_images": len(names["train"]), "query_images": len(names["query"]),
            "test_images": len(names["test"]), "train_ids": len(train_ids), "test_ids": len(test_ids),
            "train_tracks": len(train_tracks), "test_tracks": len(test_tracks), "cameras": len(world.cameras)}
