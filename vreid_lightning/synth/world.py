"""The world model: identities (model, colour, local marks) and the cameras that see them.

Global appearance is drawn from concentrated traffic distributions, so many identities share model and
colour; what tells them apart are instance-specific local marks fixed to the 3D body (windshield
stickers, dashboard items, side decals, roof items, rear stickers, the plate). Everything is derived
from ``numpy.random.default_rng([seed, stream, id])`` streams, so any identity can be rebuilt alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .models import CATALOGUE, VehicleModel
from .palette import COLOUR_RGB, MARK_RGB, type_colour_cells

__all__ = ["Mark", "Identity", "Camera", "World", "sample_identities", "make_cameras", "build_world",
           "type_colour_sharing", "STYLES"]

# How a layout's cameras see vehicles: surveillance (VeRi, CityFlow), checkpoint (VehicleID: front or
# rear views from two kinds of camera), web (CompCars: photos from any side, near eye level).
STYLES = ("surveillance", "checkpoint", "web")

# Stream ids for the per-id random generators (kept fixed: changing them changes every world).
_S_ATTR, _S_MARKS, _S_CAMERA, _S_UNKNOWN_YEAR, _S_TYPE_COLOUR = 1, 2, 3, 4, 5

# (type, colour) is drawn by a golden-ratio (Weyl) sequence through the joint traffic distribution:
# identity ``vid`` takes the cell at u = frac(offset(seed) + vid / phi). Each identity is still a
# function of (seed, vid) alone, but the counts per cell follow the traffic weights within about one
# identity at any world size (an i.i.d. draw leaves a 100-identity world's sharing ratio to chance).
_PHI_INV = (5**0.5 - 1) / 2

_BRIGHT = np.array([0, 1, 2, 3, 4, 5, 6, 8])  # MARK_RGB rows readable on dark glass (not black)


@dataclass(frozen=True)
class Mark:
    """One instance-specific local mark.

    Attributes:
        kind: ``windshield``, ``ornament``, ``dashboard``, ``rear``, ``side``, ``roof`` or ``plate``.
        shape: ``rect``, ``circle``, ``diamond``, ``stripe``, ``box``, ``rails``, ``sunroof``, ``sign``
            or ``digits``.
        target: the face role it sits on (``windshield``, ``rearglass``, ``tail``, ``side``, ``roof``,
            ``nose``).
        u, v: centre as fractions of the target region (u left-to-right seen from outside, v upward;
            on the sides u runs rear-to-front, v bottom-to-top, and on the roof u runs right-to-left
            and v rear-to-front).
        w, h: size in metres (for stripes ``w`` is the length fraction and ``h`` the thickness).
        rgb: fill colour.
        sides: for side marks, ``both``, ``left`` or ``right``.
        code: plate digits (0-9) for ``digits``.
    """

    kind: str
    shape: str
    target: str
    u: float
    v: float
    w: float
    h: float
    rgb: tuple[int, int, int]
    sides: str = "both"
    code: tuple[int, ...] = ()


@dataclass(frozen=True)
class Identity:
    """One vehicle: its global appearance and its local marks."""

    vid: int                      # 1-based world id
    model_id: int
    type_id: int                  # VeRi type 1-9
    colour_id: int                # VeRi colour 1-10
    shade: float                  # brightness factor of the paint around the colour's base RGB
    rgb: tuple[int, int, int]     # paint colour
    year: int | None              # model year, None when unknown (CompCars ``unknown``)
    marks: tuple[Mark, ...] = field(default_factory=tuple)

    @property
    def model(self) -> VehicleModel:
        """The catalogue model of this vehicle."""
        return CATALOGUE[self.model_id]


@dataclass(frozen=True)
class Camera:
    """A camera's view, light and background distributions (angles in degrees)."""

    cam_id: int                   # 1-based
    position: tuple[float, float]  # metres on the city map (travel times)
    azimuth: float                # mean viewing angle off the road axis (0 = straight at the front)
    azimuth_std: float
    toward: float                 # probability that a vehicle drives toward the camera (front view)
    elevation: float
    distance: float               # camera distance in units of vehicle size
    res: float                    # output resolution factor (far cameras give smaller crops)
    margin: float                 # crop looseness (fraction of the box added on each side)
    gain: float                   # illumination
    cast: tuple[float, float, float]
    contrast: float
    ambient: float
    sun: tuple[float, float]      # sun azimuth, elevation
    blur: float                   # Gaussian blur sigma in output pixels
    noise: float                  # sensor noise std (0-255 scale)
    road_rgb: tuple[int, int, int]
    far_rgb: tuple[int, int, int]
    lane_rgb: tuple[int, int, int]
    lane_offset: float            # metres from the vehicle's centre line to the nearest lane line
    curb: float                   # signed distance to the road edge (sidewalk/grass beyond)
    curb_rgb: tuple[int, int, int]
    texture: int                  # seed of the background texture


@dataclass(frozen=True)
class World:
    """Identities plus cameras plus the style that decides how views are scheduled."""

    seed: int
    style: str
    identities: tuple[Identity, ...]
    cameras: tuple[Camera, ...]

    def identity(self, vid: int) -> Identity:
        """The identity with world id ``vid`` (1-based)."""
        return self.identities[vid - 1]


def _contrasting(rng: np.random.Generator, body: np.ndarray, pool: np.ndarray, min_dist: float = 120.0) -> tuple:
    """A mark colour from ``pool`` rows of MARK_RGB that stands out against ``body``."""
    cand = MARK_RGB[pool]
    ok = np.linalg.norm(cand - body[None], axis=1) >= min_dist
    choices = pool[ok] if ok.any() else pool
    return tuple(int(c) for c in MARK_RGB[rng.choice(choices)])


def _sample_marks(rng: np.random.Generator, type_id: int, body: np.ndarray) -> tuple[Mark, ...]:
    """The local marks of one vehicle: always windshield stickers and a plate, usually more."""
    all_pool = np.arange(len(MARK_RGB))
    marks: list[Mark] = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))):
        w = rng.uniform(0.09, 0.18)
        v = rng.uniform(0.58, 0.88) if rng.random() < 0.75 else rng.uniform(0.2, 0.88)
        shape = "rect" if rng.random() < 0.7 else "circle"
        marks.append(Mark("windshield", shape, "windshield", rng.uniform(0.08, 0.92), v, w, w * rng.uniform(0.7, 1.3),
                          _contrasting(rng, body, _BRIGHT, 0)))
    if rng.random() < 0.2:
        marks.append(Mark("ornament", "diamond", "windshield", 0.5 + rng.normal(0, 0.05), 0.72, rng.uniform(0.07, 0.11),
                          rng.uniform(0.1, 0.15), _contrasting(rng, body, np.array([1, 2, 5]), 0)))
    if rng.random() < 0.3:
        marks.append(Mark("dashboard", "rect", "windshield", rng.uniform(0.25, 0.75), rng.uniform(0.07, 0.14),
                          rng.uniform(0.2, 0.42), rng.uniform(0.05, 0.08), _contrasting(rng, body, _BRIGHT, 0)))
    has_rear = rng.random() < 0.55
    has_side = rng.random() < 0.45
    has_roof = type_id not in (7, 8) and rng.random() < 0.4
    if not (has_rear or has_side or has_roof):  # every vehicle has a cue visible from behind or the side
        has_rear = rng.random() < 0.6
        has_side = not has_rear
    if has_rear:
        for _ in range(int(rng.integers(1, 3))):
            on_glass = type_id not in (8,) and rng.random() < 0.6
            w = rng.uniform(0.1, 0.26)
            marks.append(Mark("rear", "rect" if rng.random() < 0.6 else "circle",
                              "rearglass" if on_glass else "tail", rng.uniform(0.15, 0.85),
                              rng.uniform(0.3, 0.8) if on_glass else rng.uniform(0.5, 0.8), w,
                              w * rng.uniform(0.5, 1.2),
                              _contrasting(rng, body, _BRIGHT if on_glass else all_pool, 0 if on_glass else 120)))
    if has_side:
        sides = "both" if rng.random() < 0.75 else ("left" if rng.random() < 0.5 else "right")
        if rng.random() < 0.6:
            a, b = rng.uniform(0.0, 0.35), rng.uniform(0.65, 1.0)
            marks.append(Mark("side", "stripe", "side", (a + b) / 2, rng.uniform(0.35, 0.8), b - a,
                              rng.uniform(0.05, 0.13), _contrasting(rng, body, all_pool), sides))
        else:
            w = rng.uniform(0.28, 0.6) * (2.0 if type_id in (7, 8) else 1.0)
            marks.append(Mark("side", "rect" if rng.random() < 0.5 else "circle", "side", rng.uniform(0.3, 0.7),
                              rng.uniform(0.4, 0.65), w, w * rng.uniform(0.5, 1.0), _contrasting(rng, body, all_pool),
                              sides))
    if has_roof:
        shape = str(rng.choice(["box", "rails", "sunroof", "sign"], p=[0.35, 0.3, 0.2, 0.15]))
        size = {"box": (rng.uniform(0.9, 1.4), rng.uniform(0.5, 0.75)), "rails": (0.9, 0.05),
                "sunroof": (rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.7)), "sign": (0.32, 0.6)}[shape]
        rgb = {"box": _contrasting(rng, body, np.array([0, 7, 4, 2])), "rails": (20, 20, 22),
               "sunroof": (18, 22, 30), "sign": _contrasting(rng, body, np.array([0, 1, 2]))}[shape]
        marks.append(Mark("roof", shape, "roof", rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.6), size[0], size[1], rgb))
    marks.append(Mark("plate", "digits", "nose", 0.5, 0.25, 0.44, 0.14,
                      (250, 250, 250), code=tuple(int(d) for d in rng.integers(0, 10, 7))))
    return tuple(marks)


def sample_identities(ids: int, seed: int, types: tuple[int, ...] | None = None) -> tuple[Identity, ...]:
    """Draw ``ids`` identities: (type, colour) from the joint traffic distribution, model, then marks.

    Args:
        ids: number of identities (world ids ``1..ids``).
        seed: world seed.
        types: restrict to these VeRi types (e.g. passenger cars for CompCars); all types if None.
    """
    if ids < 1:
        raise ValueError(f"ids must be >= 1, got {ids}")
    cells, cumulative = type_colour_cells(types)
    by_type = {t: [m for m in CATALOGUE if m.type_id == t] for t in {t for t, _ in cells}}
    pops = {t: np.array([m.popularity for m in ms]) / sum(m.popularity for m in ms) for t, ms in by_type.items()}
    offset = float(np.random.default_rng([seed, _S_TYPE_COLOUR]).random())
    out: list[Identity] = []
    for vid in range(1, ids + 1):
        rng = np.random.default_rng([seed, _S_ATTR, vid])
        u = (offset + vid * _PHI_INV) % 1.0
        type_id, colour_id = cells[min(int(np.searchsorted(cumulative, u, side="right")), len(cells) - 1)]
        models = by_type[type_id]
        model = models[rng.choice(len(models), p=pops[type_id])]
        shade = float(rng.uniform(0.88, 1.12))
        base = np.asarray(COLOUR_RGB[colour_id], dtype=np.float64)
        rgb = tuple(int(c) for c in np.clip(base * shade + rng.normal(0, 3, 3), 0, 255))
        year = int(rng.choice(model.years)) if rng.random() >= 0.08 else None
        marks = _sample_marks(np.random.default_rng([seed, _S_MARKS, vid]), type_id, np.asarray(rgb, np.float32))
        out.append(Identity(vid, model.model_id, type_id, colour_id, shade, rgb, year, marks))
    return tuple(out)


def make_cameras(n: int, seed: int, style: str = "surveillance") -> tuple[Camera, ...]:
    """``n`` cameras with their own view, light, blur/noise and background distributions."""
    if style not in STYLES:
        raise ValueError(f"unknown camera style {style!r}, expected one of {STYLES}")
    if n < 1:
        raise ValueError(f"cameras must be >= 1, got {n}")
    cams = []
    for c in range(1, n + 1):
        r = np.random.default_rng([seed, _S_CAMERA, c])
        u = r.uniform
        if style == "surveillance":
            az, az_std, toward = float(np.clip(r.normal(0, 35), -75, 75)), u(5, 14), u(0.3, 0.85)
            el, dist, res, margin = u(10, 36), u(1.7, 3.6), u(0.7, 1.05), u(0.05, 0.16)
        elif style == "checkpoint":  # VehicleID: near-frontal or near-rear views, high mounting
            az, az_std, toward = u(-10, 10), u(4, 9), 0.5
            el, dist, res, margin = u(18, 32), u(1.8, 2.6), u(0.85, 1.05), u(0.03, 0.08)
        else:  # web photos: any side, near eye level, close
            az, az_std, toward = 0.0, 0.0, 0.5
            el, dist, res, margin = u(2, 12), u(1.5, 2.4), u(0.9, 1.1), u(0.04, 0.1)
        night = r.random() < 0.15 and style != "web"
        road = r.integers(62, 140) + r.integers(-4, 5, 3)
        cams.append(Camera(
            cam_id=c, position=(float(u(0, 1000)), float(u(0, 1000))), azimuth=float(az),
            azimuth_std=float(az_std), toward=float(toward), elevation=float(el), distance=float(dist),
            res=float(res), margin=float(margin),
            gain=float(u(0.45, 0.7) if night else u(0.8, 1.25)),
            cast=tuple(float(x) for x in (u(0.92, 1.08, 3) if not night
                                          else (u(1.0, 1.15), u(0.92, 1.03), u(0.75, 0.9)))),
            contrast=float(u(0.75, 1.15)), ambient=float(u(0.45, 0.7)), sun=(float(u(0, 360)), float(u(25, 70))),
            blur=float(u(0.0, 0.9)), noise=float(u(1.5, 7.0)),
            road_rgb=tuple(int(x) for x in np.clip(road, 0, 255)),
            far_rgb=tuple(int(x) for x in r.integers(50, 170) + r.integers(-25, 26, 3)),
            lane_rgb=(240, 240, 235) if r.random() < 0.75 else (235, 200, 40),
            lane_offset=float(u(0.8, 2.4)), curb=float(u(3.0, 9.0) * (1 if r.random() < 0.5 else -1)),
            curb_rgb=tuple(int(x) for x in ((r.integers(60, 110), r.integers(110, 160), r.integers(50, 90))
                                            if r.random() < 0.4 else r.integers(140, 200) + r.integers(-6, 7, 3))),
            texture=int(r.integers(0, 2**31 - 1)),
        ))
    return tuple(cams)


def build_world(ids: int, seed: int = 0, style: str = "surveillance", cameras: int = 20,
                types: tuple[int, ...] | None = None) -> World:
    """Identities and cameras of one world (no rendering)."""
    return World(seed=seed, style=style, identities=sample_identities(ids, seed, types),
                 cameras=make_cameras(cameras, seed, style))


def type_colour_sharing(identities: tuple[Identity, ...] | list[Identity], min_others: int = 3) -> float:
    """Fraction of identities whose (type, colour) pair is shared with at least ``min_others`` others."""
    if not identities:
        return 0.0
    counts = Counter((i.type_id, i.colour_id) for i in identities)
    return sum(counts[(i.type_id, i.colour_id)] > min_others for i in identities) / len(identities)
