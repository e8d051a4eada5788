"""3D meshes of identities: convex parts, faces and the decals (lights, glass, wheels, marks) on them.

A :class:`Mesh` is flat numpy arrays so a view is one projection of all points. Decals are planar
polygons given in a face's (u, v) coordinates and lifted to 3D by bilinear interpolation of the face's
corners, so a mark is glued to its face: it is visible exactly when that face is (back-face culling)
and drawn right after it (painter's algorithm between convex parts, see ``render.part_order``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .models import PartSpec, VehicleModel
from .world import Identity, Mark

__all__ = ["Mesh", "MARK_KINDS", "build_mesh", "FACE_CORNERS"]

# Poly kind codes: 0 is the vehicle itself, the rest are instance-specific mark kinds.
MARK_KINDS: tuple[str, ...] = ("body", "windshield", "ornament", "dashboard", "rear", "side", "roof", "plate")
_KIND = {k: i for i, k in enumerate(MARK_KINDS)}

# Corner indices (p00, p10, p11, p01) of each face into PartSpec.vertices(): u runs left-to-right as
# seen from outside, v upward (on the top face: u from +y to -y, v from rear to front).
FACE_CORNERS: dict[str, tuple[int, int, int, int]] = {
    "front": (1, 2, 6, 5), "rear": (3, 0, 4, 7), "left": (2, 3, 7, 6), "right": (0, 1, 5, 4), "top": (7, 4, 5, 6),
}

GLASS = (40, 50, 62)
DARK = (27, 27, 30)
TYRE = (14, 14, 16)
HEADLIGHT = (236, 238, 232)
TAILLIGHT = (196, 22, 28)
PLATE_BLUE, PLATE_YELLOW = (22, 62, 172), (228, 188, 30)
# Inset of the glass pane inside a windshield / rear-window face (u0, v0, u1, v1).
WINDSHIELD_GLASS = (0.05, 0.06, 0.95, 0.93)
REAR_GLASS = (0.08, 0.10, 0.92, 0.90)
# Seven-segment strokes (x0, y0, x1, y1) in a unit digit cell, and the segments lit per digit.
_SEGMENTS = {"a": (0.1, 0.86, 0.9, 1.0), "b": (0.76, 0.5, 0.9, 1.0), "c": (0.76, 0.0, 0.9, 0.5),
             "d": (0.1, 0.0, 0.9, 0.14), "e": (0.1, 0.0, 0.24, 0.5), "f": (0.1, 0.5, 0.24, 1.0),
             "g": (0.1, 0.43, 0.9, 0.57)}
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


@dataclass
class Mesh:
    """Flat arrays of one identity's polygons.

    Attributes:
        points: (P, 3) all polygon vertices.
        starts, counts: (N,) slice of ``points`` per polygon.
        face: (N,) face index of each polygon (visibility and shading come from the face).
        rgb: (N, 3) float32 colour before lighting.
        kind: (N,) ``MARK_KINDS`` index (0 = vehicle, else an instance mark kind).
        detail: (N,) minimum on-canvas extent in pixels to bother drawing (level of detail).
        glass: (N,) True for glass panes (shaded flatter).
        normals, centroids: (F, 3) per face. face_part: (F,) part index of each face.
        boxes: (Q, 2, 3) axis-aligned box of each convex part (for the painter's order).
        footprint: (x0, x1, y0, y1) ground rectangle under the vehicle (shadow, crop).
        size: characteristic size in metres (camera distance is given in these units).
        height: roof height in metres.
    """

    points: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    face: np.ndarray
    rgb: np.ndarray
    kind: np.ndarray
    detail: np.ndarray
    glass: np.ndarray
    normals: np.ndarray
    centroids: np.ndarray
    face_part: np.ndarray
    boxes: np.ndarray
    footprint: tuple[float, float, float, float]
    size: float
    height: float


class _Builder:
    """Accumulates faces and polygons."""

    def __init__(self) -> None:
        self.polys: list[np.ndarray] = []
        self.face: list[int] = []
        self.rgb: list[tuple] = []
        self.kind: list[int] = []
        self.detail: list[float] = []
        self.glass: list[bool] = []
        self.normals: list[np.ndarray] = []
        self.centroids: list[np.ndarray] = []
        self.face_part: list[int] = []
        self.boxes: list[np.ndarray] = []

    def add_part(self, verts: np.ndarray) -> int:
        self.boxes.append(np.stack([verts.min(0), verts.max(0)]))
        return len(self.boxes) - 1

    def add_face(self, corners: np.ndarray, part: int, part_centre: np.ndarray, rgb: tuple) -> int:
        n = np.cross(corners[1] - corners[0], corners[3] - corners[0])
        if np.linalg.norm(n) < 1e-9:  # degenerate side (a cabin tapering to an edge)
            n = np.cross(corners[2] - corners[1], corners[3] - corners[1])
        c = corners.mean(0)
        if np.dot(n, c - part_centre) < 0:
            n = -n
        self.normals.append(n / max(np.linalg.norm(n), 1e-12))
        self.centroids.append(c)
        self.face_part.append(part)
        f = len(self.normals) - 1
        self.poly(f, corners, rgb)
        return f

    def poly(self, face: int, pts: np.ndarray, rgb: tuple, kind: str = "body", detail: float = 0.0,
             glass: bool = False) -> None:
        self.polys.append(np.asarray(pts, dtype=np.float64))
        self.face.append(face)
        self.rgb.append(rgb)
        self.kind.append(_KIND[kind])
        self.detail.append(detail)
        self.glass.append(glass)


class _Face:
    """Bilinear (u, v) -> 3D map of one quadrilateral face and its metric size."""

    def __init__(self, corners: np.ndarray) -> None:
        self.c = corners
        self.width = float(np.linalg.norm(self.at(1, 0.5) - self.at(0, 0.5)))
        self.height = float(np.linalg.norm(self.at(0.5, 1) - self.at(0.5, 0)))

    def at(self, u, v) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)[..., None]
        v = np.asarray(v, dtype=np.float64)[..., None]
        p00, p10, p11, p01 = self.c
        return (1 - u) * (1 - v) * p00 + u * (1 - v) * p10 + u * v * p11 + (1 - u) * v * p01

    def rect(self, u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
        return self.at([u0, u1, u1, u0], [v0, v0, v1, v1])

    def ellipse(self, uc: float, vc: float, ru: float, rv: float, n: int = 12) -> np.ndarray:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return self.at(uc + ru * np.cos(t), vc + rv * np.sin(t))

    def shape(self, shape: str, uc: float, vc: float, ru: float, rv: float) -> np.ndarray:
        if shape == "circle":
            return self.ellipse(uc, vc, ru, rv, 10)
        if shape == "diamond":
            return self.at([uc, uc + ru, uc, uc - ru], [vc - rv, vc, vc + rv, vc])
        return self.rect(uc - ru, vc - rv, uc + ru, vc + rv)


def _sub(region: tuple[float, float, float, float], u: float, v: float) -> tuple[float, float]:
    """Map (u, v) fractions of an inset region to fractions of the whole face."""
    u0, v0, u1, v1 = region
    return u0 + u * (u1 - u0), v0 + v * (v1 - v0)


def _digits(b: _Builder, face: int, f: _Face, code: tuple[int, ...], uc: float, vc: float, ru: float,
            rv: float, rgb: tuple) -> None:
    n = len(code)
    cell_w = 2 * ru * 0.84 / n
    u_start = uc - ru * 0.84
    for i, d in enumerate(code):
        cu0 = u_start + i * cell_w + cell_w * 0.12
        cw = cell_w * 0.76
        cv0, ch = vc - rv * 0.62, rv * 1.24
        for s in _DIGITS[d]:
            x0, y0, x1, y1 = _SEGMENTS[s]
            b.poly(face, f.rect(cu0 + x0 * cw, cv0 + y0 * ch, cu0 + x1 * cw, cv0 + y1 * ch), rgb, "plate", 2.5)


def _plate(b: _Builder, face: int, f: _Face, model: VehicleModel, mark: Mark | None, vc: float) -> None:
    ru, rv = 0.22 / f.width, 0.07 / f.height
    big = model.type_id in (7, 8)
    b.poly(face, f.rect(0.5 - ru, vc - rv, 0.5 + ru, vc + rv), PLATE_YELLOW if big else PLATE_BLUE)
    if mark is not None:
        _digits(b, face, f, mark.code, 0.5, vc, ru, rv, (20, 20, 20) if big else (245, 245, 245))


def _nose(b: _Builder, face: int, f: _Face, spec: PartSpec, model: VehicleModel, plate: Mark | None) -> None:
    if model.bumper_dark:
        b.poly(face, f.rect(0.0, 0.0, 1.0, 0.2), DARK)
    st = model.headlight_style
    for left in (False, True):
        m = (lambda u: 1 - u) if left else (lambda u: u)
        if st == 0:
            pts = f.rect(m(0.04), 0.6, m(0.22), 0.84)
        elif st == 1:
            pts = f.at([m(0.04), m(0.27), m(0.24), m(0.04)], [0.6, 0.7, 0.86, 0.84])
        elif st == 2:
            pts = f.rect(m(0.03), 0.74, m(0.29), 0.86)
        else:
            pts = f.ellipse(m(0.13), 0.72, 0.075 / f.width, 0.075 / f.height, 10)
        b.poly(face, pts, HEADLIGHT)
    gs = model.grille_style
    grilles = {0: [(0.3, 0.45, 0.7, 0.8)], 1: [(0.41, 0.38, 0.59, 0.86)],
               2: [(0.3, 0.48, 0.48, 0.8), (0.52, 0.48, 0.7, 0.8)], 3: [(0.28, 0.46, 0.72, 0.82)]}[gs]
    for g in grilles:
        b.poly(face, f.rect(*g), DARK)
    if gs == 3:
        for vv in (0.55, 0.64, 0.73):
            b.poly(face, f.rect(0.29, vv, 0.71, vv + 0.03), (170, 172, 175), detail=1.5)
    _plate(b, face, f, model, plate, 0.26)
    _tyres_below(b, face, f, spec)


def _tyres_below(b: _Builder, face: int, f: _Face, spec: PartSpec) -> None:
    """Tyres seen under the bumper in front/rear views (extrapolated below the face)."""
    if spec.z0 < 0.2:
        return
    v_ground = -spec.z0 / (spec.z1 - spec.z0)
    for u0, u1 in ((0.06, 0.2), (0.8, 0.94)):
        b.poly(face, f.rect(u0, v_ground, u1, 0.02), TYRE)


def _tail(b: _Builder, face: int, f: _Face, spec: PartSpec, model: VehicleModel, plate: Mark | None,
          marks: list[Mark]) -> None:
    if model.bumper_dark:
        b.poly(face, f.rect(0.0, 0.0, 1.0, 0.18), DARK)
    st = model.taillight_style
    if spec.name == "cargo":
        b.poly(face, f.rect(0.495, 0.05, 0.505, 0.97), DARK, detail=1.5)  # door seam
        lights = [(0.03, 0.02, 0.1, 0.08), (0.9, 0.02, 0.97, 0.08)]
    elif st == 0:
        lights = [(0.03, 0.6, 0.2, 0.82), (0.8, 0.6, 0.97, 0.82)]
    elif st == 1:
        lights = [(0.03, 0.68, 0.97, 0.8)]
    else:
        lights = [(0.02, 0.4, 0.1, 0.9), (0.9, 0.4, 0.98, 0.9)]
    for r in lights:
        b.poly(face, f.rect(*r), TAILLIGHT)
    _plate(b, face, f, model, plate, 0.3 if spec.name != "cargo" else 0.06)
    for m in marks:
        b.poly(face, f.shape(m.shape, m.u, m.v, m.w / 2 / f.width, m.h / 2 / f.height), m.rgb, "rear")
    _tyres_below(b, face, f, spec)


def _glass(b: _Builder, face: int, f: _Face, region: tuple, marks: list[Mark], windshield: bool) -> None:
    b.poly(face, f.rect(*region), GLASS, glass=True)
    if windshield:  # a fixed reflection streak (same for every vehicle of a model)
        b.poly(face, f.at([0.55, 0.7, 0.5, 0.35], [0.1, 0.1, 0.9, 0.9]), (60, 72, 86), glass=True)
    gw = f.width * (region[2] - region[0])
    gh = f.height * (region[3] - region[1])
    for m in marks:
        u, v = _sub(region, m.u, m.v)
        ru = m.w / 2 / gw * (region[2] - region[0])
        rv = m.h / 2 / gh * (region[3] - region[1])
        b.poly(face, f.shape(m.shape, u, v, ru, rv), m.rgb, m.kind)


def _side_glass(b: _Builder, face: int, f: _Face, n: int) -> None:
    u0, u1, gap = 0.06, 0.94, 0.035
    w = (u1 - u0 - gap * (n - 1)) / n
    for i in range(n):
        a = u0 + i * (w + gap)
        b.poly(face, f.rect(a, 0.12, a + w, 0.88), GLASS, glass=True)


def _side(b: _Builder, face: int, f: _Face, spec: PartSpec, model: VehicleModel, left: bool,
          marks: list[Mark]) -> None:
    xr, xf = spec.xr0, spec.xf0
    h = spec.z1 - spec.z0

    def uv(x: float, z: float) -> tuple[float, float]:
        u = (xf - x) / (xf - xr) if left else (x - xr) / (xf - xr)
        return u, (z - spec.z0) / h

    r = model.wheel_radius
    for ax in model.axles:
        if xr - 0.05 <= ax <= xf + 0.05:
            uc, vc = uv(ax, r)
            for scale, rgb in ((1.12, DARK), (1.0, TYRE), (0.55, (model.hub_grey,) * 3)):
                b.poly(face, f.ellipse(uc, vc, scale * r / f.width, scale * r / f.height, 14), rgb)
    if spec.name == "body" and model.type_id not in (7, 8):
        for k in range(1, max(model.windows, 2)):  # door seams under the window pillars
            x = xf - (xf - xr) * (0.3 + 0.4 * k / max(model.windows, 2))
            u, _ = uv(x, 0)
            b.poly(face, f.rect(u - 0.003, 0.25, u + 0.003, 0.97), DARK, detail=1.5)
    for m in marks:
        if m.sides != "both" and (m.sides == "left") != left:
            continue
        u = m.u if not left else 1 - m.u  # m.u runs rear-to-front on both sides
        if m.shape == "stripe":
            ru, rv = m.w / 2, m.h / 2 / f.height
        else:
            ru, rv = m.w / 2 / f.width, m.h / 2 / f.height
        b.poly(face, f.shape("rect" if m.shape == "stripe" else m.shape, u, m.v, ru, rv), m.rgb, "side")


def _roof(b: _Builder, face: int, f: _Face, spec: PartSpec, marks: list[Mark], extra: list) -> None:
    for m in marks:
        if m.shape == "rails":
            for uu in (0.1, 0.9):
                b.poly(face, f.rect(uu - 0.03, 0.08, uu + 0.03, 0.92), m.rgb, "roof")
        elif m.shape == "sunroof":
            b.poly(face, f.shape("rect", m.u, m.v, m.h / 2 / f.width, m.w / 2 / f.height), m.rgb, "roof",
                   glass=True)
        else:  # a box or sign standing on the roof: a convex part of its own
            xc = spec.xr1 + m.v * (spec.xf1 - spec.xr1)
            yc = spec.w1 * (1 - 2 * m.u) * 0.3
            height = 0.32 if m.shape == "box" else 0.24
            length = min(m.w, 0.9 * (spec.xf1 - spec.xr1))
            top_len = length * (0.85 if m.shape == "box" else 0.6)
            extra.append((PartSpec("roof_" + m.shape, xc - length / 2, xc + length / 2, m.h / 2, spec.z1,
                                   xc - top_len / 2, xc + top_len / 2, m.h / 2 * 0.92, spec.z1 + height), m.rgb))


def _add_part(b: _Builder, spec: PartSpec, model: VehicleModel, rgb: tuple,
              by_target: dict[str, list[Mark]], plate: Mark | None, extra: list, kind: str = "body") -> None:
    verts = spec.vertices()
    part = b.add_part(verts)
    centre = verts.mean(0)
    for name, idx in FACE_CORNERS.items():
        corners = verts[list(idx)]
        role = spec.roles.get(name, "paint")
        f = _Face(corners)
        face = b.add_face(corners, part, centre, DARK if role == "dark" else rgb)
        if kind != "body":  # a roof item: every face is mark-coloured and belongs to the mark
            b.kind[-1] = _KIND[kind]
        elif role == "nose":
            _nose(b, face, f, spec, model, plate)
        elif role == "tail":
            _tail(b, face, f, spec, model, plate, by_target.get("tail", []))
        elif role == "windshield":
            _glass(b, face, f, WINDSHIELD_GLASS, by_target.get("windshield", []), True)
        elif role == "rearglass":
            _glass(b, face, f, REAR_GLASS, by_target.get("rearglass", []), False)
        elif role == "sideglass":
            _side_glass(b, face, f, model.windows)
        elif role == "side":
            own = by_target.get("side", []) if spec.name in ("body", "cargo") else []
            _side(b, face, f, spec, model, name == "left", own)
        elif role == "roof":
            _roof(b, face, f, spec, by_target.get("roof", []), extra)
        elif role == "bed":
            cab = next(p for p in model.parts if p.name == "cabin")
            vb = (cab.xr0 - spec.xr1) / (spec.xf1 - spec.xr1)
            b.poly(face, f.rect(0.07, 0.02, 0.93, vb - 0.02), (38, 38, 40))


@lru_cache(maxsize=256)
def build_mesh(ident: Identity, mark_kinds: frozenset[str] | None = None) -> Mesh:
    """The 3D mesh of an identity, with only the marks in ``mark_kinds`` (all marks if None)."""
    model = ident.model
    marks = [m for m in ident.marks if mark_kinds is None or m.kind in mark_kinds]
    by_target: dict[str, list[Mark]] = {}
    for m in marks:
        if m.kind != "plate":
            by_target.setdefault(m.target, []).append(m)
    plate = next((m for m in marks if m.kind == "plate"), None)
    b = _Builder()
    extra: list = []
    for spec in model.parts:
        _add_part(b, spec, model, ident.rgb, by_target, plate, extra)
    for spec, rgb in extra:
        _add_part(b, spec, model, rgb, {}, None, [], kind="roof")
    counts = np.array([len(p) for p in b.polys], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    allv = np.concatenate([s.vertices() for s in model.parts])
    fp = (float(allv[:, 0].min()), float(allv[:, 0].max()), float(allv[:, 1].min()), float(allv[:, 1].max()))
    return Mesh(
        points=np.concatenate(b.polys), starts=starts, counts=counts, face=np.array(b.face, dtype=np.int64),
        rgb=np.array(b.rgb, dtype=np.float32), kind=np.array(b.kind, dtype=np.int64),
        detail=np.array(b.detail, dtype=np.float32), glass=np.array(b.glass, dtype=bool),
        normals=np.array(b.normals), centroids=np.array(b.centroids), face_part=np.array(b.face_part),
        boxes=np.array(b.boxes), footprint=fp, size=float(max(model.length, 3.5)), height=model.height,
    )
