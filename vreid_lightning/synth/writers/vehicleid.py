"""VehicleID (VehicleID_V1.0) layout writer (datasets.md section 2).

Test list sizes are scaled to the world: VehicleID V1.0 splits its 26,328 ids in half (13,164 train,
13,164 test) and publishes nested test lists of 800, 1,600 and 2,400 ids. Here the ids are split in
half the same way and the three files keep their real names but hold ``round(n_test * k / 3)`` ids
for k = 1, 2, 3 (so ``test_list_2400.txt`` holds every test id), nested like small < medium < large.
``attribute/model_names.txt`` (UTF-8, Chinese names) and ``color_names.txt`` (CRLF endings) are written
as released: ``<name> <id>`` per line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models import CATALOGUE
from ..palette import VEHICLEID_COLOURS, veri_to_vehicleid_colour
from ..schedule import View
from ..world import World
from .common import Job, RenderFn, write_lines

__all__ = ["write_vehicleid", "TEST_LISTS", "MODEL_LABELLED", "COLOUR_LABELLED"]

TEST_LISTS = (800, 1600, 2400)
MODEL_LABELLED = 0.45   # fraction of vehicles with a model label
COLOUR_LABELLED = 0.75  # fraction of the model-labelled vehicles that also have a colour label
# VeRi type -> Chinese body-style word, for model_names.txt (the release's model names are Chinese)
_TYPE_CN = {1: "轿车", 2: "越野车", 3: "面包车", 4: "两厢车", 5: "商务车", 6: "皮卡", 7: "客车", 8: "货车", 9: "旅行车"}


def write_names(out: Path) -> None:
    """``model_names.txt`` (UTF-8, LF) and ``color_names.txt`` (ASCII, CRLF), ``<name> <id>`` per line."""
    folder = out / "attribute"
    folder.mkdir(parents=True, exist_ok=True)
    models = "".join(f"品牌{m.make_id:02d}-{_TYPE_CN[m.type_id]}{m.model_id:02d}款 {m.model_id}\n" for m in CATALOGUE)
    (folder / "model_names.txt").write_bytes(models.encode("utf-8"))
    colours = "".join(f"{name} {cid}\r\n" for cid, name in sorted(VEHICLEID_COLOURS.items()))
    (folder / "color_names.txt").write_bytes(colours.encode("ascii"))


def test_list_sizes(n_test: int) -> dict[int, int]:
    """Ids per test list for ``n_test`` test vehicles (largest list = all of them)."""
    return {name: max(1, int(round(n_test * (i + 1) / len(TEST_LISTS)))) for i, name in enumerate(TEST_LISTS)}


def write_vehicleid(world: World, views: dict[int, list[View]], out: Path, render: RenderFn) -> dict:
    """Write a VehicleID_V1.0 tree into ``out`` and return its counts."""
    vids = sorted(views)
    rng = np.random.default_rng([world.seed, 10])
    all_views = [v for vid in vids for v in views[vid]]
    order = rng.permutation(len(all_views))
    stem = {(all_views[i].vid, all_views[i].k): f"{n + 1:07d}" for n, i in enumerate(order)}
    jobs = [Job(v.vid, v.k, (f"image/{stem[(v.vid, v.k)]}.jpg",)) for v in all_views]
    n = render(jobs)
    write_lines(out / "attribute" / "img2vid.txt",
                sorted(f"{stem[(v.vid, v.k)]} {v.vid}" for v in all_views))
    perm = rng.permutation(vids)
    n_train = int(np.clip(len(vids) // 2, 1, len(vids) - 1))
    train_ids, test_ids = sorted(perm[:n_train].tolist()), perm[n_train:].tolist()

    def lines(ids) -> list[str]:
        rows = [(vid, stem[(v.vid, v.k)]) for vid in ids for v in views[vid]]
        return [f"{s} {vid}" for vid, s in sorted(rows)]

    split = out / "train_test_split"
    write_lines(split / "train_list.txt", lines(train_ids))
    sizes = test_list_sizes(len(test_ids))
    counts = {"images": n, "ids": len(vids), "train_ids": len(train_ids), "train_images": len(lines(train_ids))}
    for name, size in sizes.items():
        k = write_lines(split / f"test_list_{name}.txt", lines(test_ids[:size]))
        counts[f"test_list_{name}"] = {"ids": size, "images": k}
    model_rows, colour_rows = [], []
    for vid in vids:
        r = np.random.default_rng([world.seed, 12, vid])
        if r.random() < MODEL_LABELLED:
            ident = world.identity(vid)
            model_rows.append(f"{vid} {ident.model_id}")
            c = veri_to_vehicleid_colour(ident.colour_id, ident.shade)
            if c >= 0 and r.random() < COLOUR_LABELLED:
                colour_rows.append(f"{vid} {c}")
    write_lines(out / "attribute" / "model_attr.txt", model_rows)
    write_lines(out / "attribute" / "color_attr.txt", colour_rows)
    write_names(out)
    counts.update(model_labelled=len(model_rows), colour_labelled=len(colour_rows))
    return counts
