"""``generate``: build a world, schedule its views, render and write one real dataset layout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .palette import PASSENGER_TYPES
from .schedule import schedule_world
from .world import build_world, type_colour_sharing
from .writers.cityflow import write_cityflow
from .writers.common import Renderer
from .writers.compcars import write_compcars
from .writers.custom import write_custom
from .writers.vehicleid import write_vehicleid
from .writers.veri import write_veri
from .writers.veriwild import REAL_IDS as VERIWILD_IDS, write_veriwild, write_veriwild2

__all__ = ["GENERATOR_VERSION", "LAYOUTS", "LayoutSpec", "generate", "MANIFEST", "BOXES", "REAL_IDS", "ids_for_scale"]

# Bump whenever any output byte can change for the same arguments (catalogue, marks, renderer, writers).
# 1.3.0: adds synth_boxes.csv (the tight vehicle box of every image); every image and annotation byte as 1.2.1.
GENERATOR_VERSION = "1.3.0"
MANIFEST = "synth_manifest.json"
BOXES = "synth_boxes.csv"  # image,x0,y0,x1,y1 per written image (VehicleNet sec. IV-C cropped images)


@dataclass(frozen=True)
class LayoutSpec:
    """How a layout's world looks and is written."""

    style: str                      # camera style (see world.STYLES)
    cameras: int                    # default camera count
    images_per_id: int              # default mean images per identity
    min_ids: int
    max_ids: int
    min_cameras: int
    writer: Callable
    types: tuple[int, ...] | None = None
    scene: bool = False
    root: str = ""                  # what ``out`` becomes


LAYOUTS: dict[str, LayoutSpec] = {
    # VeRi-776: 20 cameras, ~64 images per id (49,357 images / 776 ids), ids 4 digits.
    "veri": LayoutSpec("surveillance", 20, 64, 2, 9999, 2, write_veri, root="VeRi/"),
    # VehicleID: no camera ids (two kinds of camera, front/rear views), ~8.4 images per id.
    "vehicleid": LayoutSpec("checkpoint", 2, 8, 2, 9_999_999, 1, write_vehicleid, root="VehicleID_V1.0/"),
    # AIC20: 40 cameras, ~110 train / ~58 test images per id.
    "cityflow": LayoutSpec("surveillance", 40, 80, 2, 9999, 2, write_cityflow, root="AIC20_ReID/"),
    # CompCars web-nature: cars only, a few photos per car, whole scenes with a box.
    "compcars": LayoutSpec("web", 8, 6, 1, 9_999_999, 1, write_compcars, types=PASSENGER_TYPES, scene=True,
                           root="CompCars root (containing data/)"),
    # data=custom: the suite's own CSV + folder-per-id layout (writers/custom.py), VeRi-like cameras.
    "custom": LayoutSpec("surveillance", 20, 20, 2, 9999, 2, write_custom, root="custom root (annotations.csv, images/)"),
    # VERI-Wild: 174 cameras, ~10 images per id (416,314 images / 40,671 ids), a month of video.
    "veriwild": LayoutSpec("surveillance", 174, 10, 8, 99_999, 2, write_veriwild, root="VERI-Wild/"),
    # VERI-Wild + the VERI-Wild 2.0 test split (test_split/) of other ids, in one folder.
    "veriwild2": LayoutSpec("surveillance", 174, 10, 10, 99_999, 2, write_veriwild2, root="VERI-Wild/ (+ 2.0)"),
}

# Identities of the real release of each layout (``--scale`` multiplies them).
REAL_IDS = {"veri": 776, "vehicleid": 26_328, "cityflow": 666, "compcars": 1_716, "veriwild": VERIWILD_IDS,
            "veriwild2": VERIWILD_IDS}


def ids_for_scale(layout: str, scale: float) -> int:
    """Identities of a world ``scale`` times the real release's size (at least the layout's minimum)."""
    if layout not in REAL_IDS:
        raise ValueError(f"--scale: layout {layout!r} has no real release to scale; use --ids (layouts with a "
                         f"release size: {', '.join(REAL_IDS)})")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    return max(LAYOUTS[layout].min_ids, int(round(REAL_IDS[layout] * scale)))


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"out {out} is not empty; pass overwrite=True (--overwrite) to replace a "
                                  f"synthetic world written there before")
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"out {out} is not empty and holds no {MANIFEST}: refusing to delete a "
                                  f"directory the synthetic world did not write")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def generate(layout: str, out: str | Path, ids: int, seed: int = 0, image_size: int = 128,
             cameras: int | None = None, workers: int = 2, progress: bool = True,
             images_per_id: int | None = None, overwrite: bool = False, image_format: str = "jpeg",
             square: bool = False) -> dict:
    """Generate a synthetic world and write it in a real dataset layout.

    Args:
        layout: ``veri``, ``vehicleid``, ``cityflow``, ``compcars``, ``veriwild`` or ``veriwild2``.
        out: the layout root to create (it becomes the VeRi root / VehicleID_V1.0 / AIC20_ReID /
            the CompCars root holding ``data/``); must be empty or absent unless ``overwrite``.
        ids: number of identities (vehicles).
        seed: world seed; the same arguments give byte-identical files.
        image_size: long side of a crop at full resolution (crops vary 0.5-1.2x with camera
            distance; CompCars scenes are twice as wide).
        cameras: number of cameras (layout default if None: VeRi 20, CityFlow 40, VehicleID 2 kinds,
            CompCars 8 photo styles).
        workers: rendering processes (<= 1: in this process).
        progress: show a progress bar on stderr.
        images_per_id: mean images per identity (layout default if None: VeRi 64, CityFlow 80,
            VehicleID 8, CompCars 6).
        overwrite: replace a synthetic world previously written to ``out``.
        image_format: ``jpeg`` (the real datasets' format) or ``png`` (lossless: the same pixels for every
            decoder, as the authors' conformance checks want; VeRi layout only).
        square: warp every crop to ``image_size`` x ``image_size`` (images stored at the network's input
            size, as the RAM authors' pre-resized ``train-images-224``).

    Returns:
        The manifest (also written as ``synth_manifest.json`` in ``out``): parameters and counts.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}, expected one of {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    _check_int(f"ids (layout {layout!r})", ids, spec.min_ids, spec.max_ids)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("image_size", image_size, 32, 2048)
    cameras = spec.cameras if cameras is None else cameras
    _check_int(f"cameras (layout {layout!r})", cameras, spec.min_cameras, 999)
    _check_int("workers", workers, 0, 256)
    images_per_id = spec.images_per_id if images_per_id is None else images_per_id
    _check_int("images_per_id", images_per_id, 2, 10_000)
    if image_format != "jpeg" and layout != "veri":
        raise ValueError(f"image_format={image_format!r} is written for the veri layout only (got layout {layout!r})")
    out = Path(out)
    _prepare_out(out, overwrite)
    world = build_world(ids, seed, spec.style, cameras, spec.types)
    views = schedule_world(world, images_per_id)
    render = Renderer(world, views, out, image_size, workers, progress, desc=f"synth {layout}", scene=spec.scene,
                      image_format=image_format, square=square)
    counts = spec.writer(world, views, out, render)
    render.write_boxes(out / BOXES)
    manifest = {
        "generator_version": GENERATOR_VERSION, "layout": layout, "ids": ids, "seed": seed,
        "image_size": image_size, "cameras": cameras, "images_per_id": images_per_id, "style": spec.style,
        **({"image_format": image_format} if image_format != "jpeg" else {}), **({"square": True} if square else {}),
        "type_colour_sharing": round(type_colour_sharing(world.identities), 4),
        "models": len({i.model_id for i in world.identities}), "counts": counts, "boxes": BOXES,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="ascii")
    return manifest


