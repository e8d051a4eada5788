"""A preview grid: one row per identity, columns = that identity seen by its cameras."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .palette import VERI_COLOURS
from .render import render_view
from .schedule import View, schedule_identity
from .world import World, build_world
from .writers.common import IMAGE_STREAM

__all__ = ["render_identity_views", "pick_preview_ids", "make_preview"]


def render_identity_views(world: World, vid: int, count: int = 8, image_size: int = 128,
                          images_per_id: int = 64, mark_kinds: frozenset[str] | None = None,
                          ) -> list[tuple[View, Image.Image]]:
    """Up to ``count`` images of identity ``vid`` from distinct cameras, ordered by viewing angle.

    The images are the ones the dataset writers produce for these views (same random streams).
    """
    views = schedule_identity(world, world.identity(vid), images_per_id)
    tracks: dict[int, list[View]] = {}
    for v in views:
        tracks.setdefault(v.track, []).append(v)
    by_cam: dict[int, View] = {}
    for tr in tracks.values():  # the middle frame of each camera's first track
        by_cam.setdefault(tr[0].cam, tr[len(tr) // 2])
    chosen = sorted(by_cam.values(), key=lambda v: v.azimuth % 360.0)
    if len(chosen) > count:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, count).round().astype(int)]
    out = []
    for v in chosen:
        rng = np.random.default_rng([world.seed, IMAGE_STREAM, vid, v.k])
        img, _ = render_view(world.identity(vid), v, world.cameras[v.cam - 1], image_size, rng, mark_kinds)
        out.append((v, img))
    return out


def pick_preview_ids(world: World, ids: int) -> list[int]:
    """Identities worth comparing: half from the most common (model, colour) group, the rest varied."""
    groups = Counter((i.model_id, i.colour_id) for i in world.identities)
    (model, colour), _ = groups.most_common(1)[0]
    same = [i.vid for i in world.identities if (i.model_id, i.colour_id) == (model, colour)]
    picked = same[:max(2, ids // 2)][:ids]
    seen_types = {world.identity(v).type_id for v in picked}
    for i in world.identities:
        if len(picked) >= ids:
            break
        if i.vid not in picked and i.type_id not in seen_types:
            picked.append(i.vid)
            seen_types.add(i.type_id)
    for i in world.identities:
        if len(picked) >= ids:
            break
        if i.vid not in picked:
            picked.append(i.vid)
    return picked


def make_preview(out: str | Path, ids: int = 6, seed: int = 0, image_size: int = 128, columns: int = 8,
                 world_ids: int = 776) -> Path:
    """Write a PNG grid (rows: identities; columns: cameras/viewpoints) of a VeRi-style world.

    The first rows share model and colour, so only their local marks tell them apart.
    """
    if ids < 1 or columns < 1:
        raise ValueError(f"ids and columns must be >= 1, got ids={ids}, columns={columns}")
    world = build_world(max(world_ids, ids), seed)
    cell, label_w = image_size + 8, 150
    rows = []
    for vid in pick_preview_ids(world, ids):
        rows.append((vid, render_identity_views(world, vid, columns, image_size)))
    grid = Image.new("RGB", (label_w + columns * cell, len(rows) * cell + 20), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    draw.text((4, 4), f"synthetic VeRi world, seed {seed}: rows = identities, columns = cameras "
                      f"(sorted by viewing angle)", fill=(0, 0, 0))
    for r, (vid, imgs) in enumerate(rows):
        ident = world.identity(vid)
        y = 20 + r * cell
        kinds = sorted({m.kind for m in ident.marks} - {"plate"})
        text = (f"id {vid:04d}\n{ident.model.type_name} {VERI_COLOURS[ident.colour_id]}\nmodel {ident.model_id}"
                f"\nmarks:\n" + "\n".join(kinds))
        draw.multiline_text((4, y + 2), text, fill=(0, 0, 0), spacing=1)
        for c, (v, img) in enumerate(imgs):
            x = label_w + c * cell
            grid.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
            draw.text((x + 2, y + cell - 11), f"c{v.cam:03d} {v.azimuth % 360:.0f}", fill=(200, 0, 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    return out
