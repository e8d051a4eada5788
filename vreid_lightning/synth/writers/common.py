"""Shared machinery of the layout writers: render jobs, a deterministic process pool, text files."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from ..render import encode_jpeg, encode_png, render_view
from ..schedule import View, compcars_viewpoint
from ..world import World

__all__ = ["Job", "Renderer", "RenderFn", "write_lines", "xml_items", "viewpoint_label", "Progress", "IMAGE_STREAM"]

IMAGE_STREAM = 6  # rng stream of per-image randomness: default_rng([seed, IMAGE_STREAM, vid, k])


@dataclass(frozen=True)
class Job:
    """Render view ``k`` of identity ``vid`` and write the same JPEG bytes to every path in ``paths``.

    ``label`` (CompCars) is the label file to write next to it, with ``viewpoint`` on its first line.
    """

    vid: int
    k: int
    paths: tuple[str, ...]
    label: str | None = None
    viewpoint: int = 0


class Progress:
    """A progress bar on stderr: tqdm when installed, else a plain text bar."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0
        self._bar = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, n: int) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last > 0.5 or self.n >= self.total:
            self._last = now
            frac = self.n / max(self.total, 1)
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.desc} [{bar:<30}] {self.n}/{self.total} img")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


# Worker state (set once per process by _init so tasks only carry ids and paths).
_STATE: dict = {}


IMAGE_FORMATS = {"jpeg": ".jpg", "png": ".png"}  # image_format -> file suffix


def _init(world: World, views: dict[int, list[View]], out: str, image_size: int, scene: bool,
          image_format: str = "jpeg", square: bool = False) -> None:
    _STATE.update(world=world, views=views, out=Path(out), image_size=image_size, scene=scene,
                  image_format=image_format, square=square)


def _run(jobs: list[Job]) -> list[tuple[tuple[str, ...], tuple[int, int, int, int]]]:
    """Render ``jobs``; returns each job's paths with its tight vehicle box."""
    world: World = _STATE["world"]
    out: Path = _STATE["out"]
    done = []
    for job in jobs:
        view = _STATE["views"][job.vid][job.k]
        rng = np.random.default_rng([world.seed, IMAGE_STREAM, job.vid, job.k])
        img, box = render_view(world.identity(job.vid), view, world.cameras[view.cam - 1], _STATE["image_size"],
                               rng, scene=_STATE["scene"])
        if _STATE.get("square") and img.size != (_STATE["image_size"],) * 2:  # every crop warped to size x size
            w, h = img.size
            side = _STATE["image_size"]
            img = img.resize((side, side), Image.BILINEAR)
            x0, y0, x1, y1 = box
            box = (int(x0 * side / w), int(y0 * side / h), max(int(x0 * side / w) + 1, round(x1 * side / w)),
                   max(int(y0 * side / h) + 1, round(y1 * side / h)))
        data = encode_png(img) if _STATE.get("image_format") == "png" else encode_jpeg(img)
        for p in job.paths:
            (out / p).write_bytes(data)
        if job.label is not None:
            x0, y0, x1, y1 = box  # 0-based, end exclusive -> 1-based inclusive
            (out / job.label).write_text(f"{job.viewpoint}\n1\n{x0 + 1} {y0 + 1} {x1} {y1}\n", encoding="ascii")
        done.append((job.paths, tuple(int(v) for v in box)))
    return done


class Renderer:
    """Renders jobs into ``out`` with ``workers`` processes (in-process when ``workers <= 1``).

    Output bytes depend only on (world, view, image_size): every image has its own random stream,
    so the number of workers and the scheduling order never change the files. ``boxes`` collects the
    tight vehicle box of every written path (0-based pixels, end exclusive) for ``write_boxes``.
    """

    def __init__(self, world: World, views: dict[int, list[View]], out: Path, image_size: int,
                 workers: int = 2, progress: bool = True, desc: str = "synth", scene: bool = False,
                 image_format: str = "jpeg", square: bool = False) -> None:
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
        self.world, self.views, self.out = world, views, Path(out)
        self.image_size, self.workers, self.progress, self.desc, self.scene = image_size, workers, progress, desc, scene
        self.image_format, self.square = image_format, bool(square)
        self.suffix = IMAGE_FORMATS[image_format]  # file names the writers give (VeRi layout)
        self.images = 0
        self.boxes: dict[str, tuple[int, int, int, int]] = {}

    def __call__(self, jobs: Iterable[Job]) -> int:
        by_vid: dict[int, list[Job]] = {}
        for j in jobs:
            by_vid.setdefault(j.vid, []).append(j)
        dirs = {(self.out / p).parent for js in by_vid.values() for j in js for p in (*j.paths, j.label) if p}
        for d in sorted(dirs):
            d.mkdir(parents=True, exist_ok=True)
        tasks = [by_vid[v] for v in sorted(by_vid)]
        total = sum(len(t) for t in tasks)
        bar = Progress(total, self.desc, self.progress)
        args = (self.world, self.views, str(self.out), self.image_size, self.scene, self.image_format, self.square)
        try:
            if self.workers <= 1:
                _init(*args)
                results = map(_run, tasks)
                for done in results:
                    self._collect(done, bar)
            else:
                ctx = mp.get_context("spawn")  # safe when the caller has threads (torch, loaders)
                with ctx.Pool(self.workers, initializer=_init, initargs=args) as pool:
                    for done in pool.imap_unordered(_run, tasks, chunksize=1):
                        self._collect(done, bar)
        finally:
            bar.close()
        self.images += total
        return total

    def _collect(self, done: list[tuple[tuple[str, ...], tuple[int, int, int, int]]], bar: Progress) -> None:
        for paths, box in done:
            for p in paths:
                self.boxes[p] = box
        bar.update(len(done))

    def write_boxes(self, path: Path) -> int:
        """The boxes file of every image written (``evaluate --extract-crops``, ``tta.read_boxes``): CSV
        ``image,x0,y0,x1,y1``, the image's path relative to the layout root, 0-based pixels, end exclusive."""
        return write_lines(Path(path), ["image,x0,y0,x1,y1"] + [f"{p},{b[0]},{b[1]},{b[2]},{b[3]}"
                                                              for p, b in sorted(self.boxes.items())])


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write ASCII lines with ``\\n`` endings; returns the number of lines."""
    lines = list(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    return len(lines)


def xml_items(path: Path, root: str, items: list[dict[str, str]]) -> None:
    """A VeRi-style label XML with the gb2312 declaration (content is ASCII, as in the release)."""
    lines = ['<?xml version="1.0" encoding="gb2312" ?>', f'<{root} Version="1.0">', f'<Items number="{len(items)}">']
    for it in items:
        attrs = " ".join(f'{k}="{v}"' for k, v in it.items())
        lines.append(f"<Item {attrs} />")
    lines += ["</Items>", f"</{root}>"]
    write_lines(path, lines)


def viewpoint_label(world: World, view: View) -> int:
    """CompCars viewpoint of a view, with ~3% marked uncertain (-1) as annotators did."""
    if np.random.default_rng([world.seed, 7, view.vid, view.k]).random() < 0.03:
        return -1
    return compcars_viewpoint(view.azimuth)


RenderFn = Callable[[Iterable[Job]], int]
