"""CompCars (web-nature part) layout writer (datasets.md section 4).

Each identity is one photographed car; its images go to ``data/image/<make>/<model>/<year>/`` with
``<year>`` the identity's model year or ``unknown`` (about 8% of cars). Images are whole scenes with
a label file holding the viewpoint and the 1-based car box. The classification split puts about half
of each (make, model, year) class's images in train (at least one) and the rest in test.
``car_type.mat`` and ``make_model_name.mat`` (MATLAB files) are not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models import CATALOGUE
from ..palette import VERI_TO_COMPCARS_TYPE
from ..schedule import View
from ..world import World
from .common import Job, RenderFn, viewpoint_label, write_lines

__all__ = ["write_compcars", "ATTRIBUTES_HEADER"]

ATTRIBUTES_HEADER = "model_id maximum_speed displacement door_number seat_number type"


def _attribute_rows() -> list[str]:
    rows = []
    for m in CATALOGUE:
        r = np.random.default_rng([4242, m.model_id])  # catalogue-level: the same in every world
        speed, disp, doors, seats = m.specs
        vals = [speed, disp, doors, seats]
        unknown = r.random(4) < 0.12  # unknown values are 0 in attributes.txt
        vals = [0 if u else v for u, v in zip(unknown, vals)]
        disp_s = "0" if vals[1] == 0 else f"{vals[1]:.1f}"
        rows.append(f"{m.model_id + 1} {vals[0]} {disp_s} {vals[2]} {vals[3]} {VERI_TO_COMPCARS_TYPE[m.type_id]}")
    return rows


def write_compcars(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write a CompCars tree (``out/data/...``) into ``out`` and return its counts."""
    data = out / "data"
    jobs: list[Job] = []
    by_class: dict[tuple[int, int, str], list[str]] = {}
    used: set[str] = set()
    for vid in sorted(views):
        ident = world.identity(vid)
        model = ident.model
        year = "unknown" if ident.year is None else str(ident.year)
        folder = f"{model.make_id}/{model.model_id + 1}/{year}"
        for v in views[vid]:
            r = np.random.default_rng([world.seed, 11, vid, v.k])
            while True:
                stem = f"{int(r.integers(0, 16 ** 14, dtype=np.int64)):014x}"
                if stem not in used:
                    used.add(stem)
                    break
            rel = f"{folder}/{stem}.jpg"
            by_class.setdefault((model.make_id, model.model_id + 1, year), []).append(rel)
            jobs.append(Job(vid, v.k, (f"data/image/{rel}",), label=f"data/label/{folder}/{stem}.txt",
                            viewpoint=viewpoint_label(world, v)))
    n = render(jobs)
    write_lines(data / "misc" / "attributes.txt", [ATTRIBUTES_HEADER] + _attribute_rows())
    rng = np.random.default_rng([world.seed, 15])
    train, test = [], []
    for key in sorted(by_class):
        rels = sorted(by_class[key])
        perm = rng.permutation(len(rels))
        n_train = max(1, int(round(len(rels) * 0.5)))
        train += [rels[i] for i in perm[:n_train]]
        test += [rels[i] for i in perm[n_train:]]
    split = data / "train_test_split" / "classification"
    write_lines(split / "train.txt", sorted(train))
    write_lines(split / "test.txt", sorted(test))
    return {"images": n, "cars": len(views), "classes": len(by_class),
            "models": len({k[1] for k in by_class}), "makes": len({k[0] for k in by_class}),
            "unknown_year_images": sum(len(v) for k, v in by_class.items() if k[2] == "unknown"),
            "train_images": len(train), "test_images": len(test)}
