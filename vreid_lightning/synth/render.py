"""Rendering a view: perspective projection, painter's algorithm with back-face culling, a road scene
projected through the same camera, then the camera's light, blur and noise.

Drawing is PIL ``ImageDraw`` polygons on a 2x supersampled canvas reduced by a box filter. All
geometry of a view is projected in one numpy call; only the final polygon fills loop in Python.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .geometry import Mesh, build_mesh
from .schedule import View
from .world import Camera, Identity

__all__ = ["Projection", "part_order", "render_view", "encode_jpeg", "JPEG_QUALITY", "SUPERSAMPLE"]

JPEG_QUALITY = 90
SUPERSAMPLE = 2
_NEAR = 0.3


@dataclass
class Projection:
    """A pinhole camera looking at the vehicle (vehicle frame: x forward, y left, z up)."""

    eye: np.ndarray
    right: np.ndarray
    up: np.ndarray
    fwd: np.ndarray

    @classmethod
    def orbit(cls, azimuth: float, elevation: float, distance: float, target: np.ndarray) -> Projection:
        """Camera at ``distance`` metres from ``target`` in direction (azimuth, elevation) in degrees."""
        a, e = math.radians(azimuth), math.radians(elevation)
        eye = target + distance * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
        fwd = target - eye
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        return cls(eye, right, np.cross(right, fwd), fwd)

    def camera_space(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) points as (x right, y up, depth)."""
        d = pts - self.eye
        return np.stack([d @ self.right, d @ self.up, d @ self.fwd], axis=-1)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image coordinates (x right, y down) and depths of (N, 3) points."""
        c = self.camera_space(pts)
        z = np.maximum(c[:, 2], 1e-6)
        return np.stack([c[:, 0] / z, -c[:, 1] / z], axis=-1), c[:, 2]


def part_order(boxes: np.ndarray, eye: np.ndarray) -> list[int]:
    """Back-to-front order of convex parts given their axis-aligned boxes.

    Two parts separated by an axis-aligned plane are ordered by the side of that plane the camera is
    on (exact for disjoint convex parts); pairs without such a plane fall back to centre distance.
    """
    q = len(boxes)
    dist = np.linalg.norm(boxes.mean(1) - eye, axis=1)
    after: list[set[int]] = [set() for _ in range(q)]  # after[i]: parts to draw after i
    indeg = np.zeros(q, dtype=np.int64)
    for i in range(q):
        for j in range(i + 1, q):
            first = None
            for k in range(3):
                if boxes[i, 1, k] <= boxes[j, 0, k] + 1e-6:      # i below j on axis k
                    plane = (boxes[i, 1, k] + boxes[j, 0, k]) / 2
                    first = (i, j) if eye[k] > plane else (j, i)
                    break
                if boxes[j, 1, k] <= boxes[i, 0, k] + 1e-6:
                    plane = (boxes[j, 1, k] + boxes[i, 0, k]) / 2
                    first = (j, i) if eye[k] > plane else (i, j)
                    break
            if first is None:
                first = (i, j) if dist[i] >= dist[j] else (j, i)
            after[first[0]].add(first[1])
            indeg[first[1]] += 1
    order: list[int] = []
    ready = sorted((p for p in range(q) if indeg[p] == 0), key=lambda p: -dist[p])
    while ready:
        p = ready.pop(0)
        order.append(p)
        for n in sorted(after[p]):
            indeg[n] -= 1
            if indeg[n] == 0:
                ready.append(n)
        ready.sort(key=lambda p: -dist[p])
    if len(order) < q:  # a cycle: not expected for the catalogue's shapes
        order = list(np.argsort(-dist, kind="stable"))
    return order


def _clip_near(cam_pts: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of one polygon (camera space) against depth >= _NEAR."""
    out = []
    n = len(cam_pts)
    for i in range(n):
        a, b = cam_pts[i], cam_pts[(i + 1) % n]
        ina, inb = a[2] >= _NEAR, b[2] >= _NEAR
        if ina:
            out.append(a)
        if ina != inb:
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)


def _to_px(cam_pts: np.ndarray, t: np.ndarray) -> list[tuple[float, float]]:
    z = cam_pts[:, 2]
    xy = np.stack([cam_pts[:, 0] / z * t[0] + t[1], -cam_pts[:, 1] / z * t[0] + t[2]], axis=-1)
    return [tuple(p) for p in xy.tolist()]


def _background(draw: ImageDraw.ImageDraw, proj: Projection, cam: Camera, view: View, t: np.ndarray,
                canvas: tuple[int, int], web: bool) -> None:
    """Ground plane (road, curb side, lane dashes) drawn through the view's camera."""
    big = 80.0
    ground = np.array([[-big, -big, 0], [big, -big, 0], [big, big, 0], [-big, big, 0]], dtype=np.float64)
    poly = _clip_near(proj.camera_space(ground))
    if len(poly) >= 3:
        draw.polygon(_to_px(poly, t), fill=cam.road_rgb)
    side = 1.0 if cam.curb > 0 else -1.0
    y0, y1 = cam.curb, side * big
    curb = np.array([[-big, y0, 0.01], [big, y0, 0.01], [big, y1, 0.01], [-big, y1, 0.01]])
    poly = _clip_near(proj.camera_space(curb))
    if len(poly) >= 3:
        draw.polygon(_to_px(poly, t), fill=cam.curb_rgb)
    if web:
        return
    # lane dashes: 3 m dashes every 9 m on lines 3.5 m apart, parallel to the vehicle's heading
    ys = view.lane + 3.5 * np.arange(-3, 4)
    ys = ys[(ys * side) < abs(cam.curb)]
    xs = np.arange(-45.0, 45.0, 9.0) + (view.timestamp % 9)
    X, Y = np.meshgrid(xs, ys)
    X, Y = X.ravel(), Y.ravel()
    w = 0.08
    z = np.full_like(X, 0.02)
    quads = np.stack([np.stack([X, Y - w, z], -1), np.stack([X + 3, Y - w, z], -1),
                      np.stack([X + 3, Y + w, z], -1), np.stack([X, Y + w, z], -1)], 1)
    cp = proj.camera_space(quads.reshape(-1, 3)).reshape(-1, 4, 3)
    ok = (cp[:, :, 2] > _NEAR).all(1)
    z = np.maximum(cp[:, :, 2], 1e-6)
    px = cp[:, :, 0] / z * t[0] + t[1]
    py = -cp[:, :, 1] / z * t[0] + t[2]
    ok &= (px.max(1) > 0) & (px.min(1) < canvas[0]) & (py.max(1) > 0) & (py.min(1) < canvas[1])
    for i in np.flatnonzero(ok):
        draw.polygon(list(zip(px[i].tolist(), py[i].tolist())), fill=cam.lane_rgb)


def _texture(arr: np.ndarray, cam: Camera, rng: np.random.Generator, strength: float = 0.13) -> np.ndarray:
    """Multiply a low-frequency, camera-specific stain pattern and fine grain into the background."""
    h, w = arr.shape[:2]
    base = np.random.default_rng(cam.texture).normal(0, 1, (7, 7)).astype(np.float32)
    base += rng.normal(0, 0.35, (7, 7)).astype(np.float32)
    low = np.asarray(Image.fromarray(base, mode="F").resize((w, h), Image.BILINEAR))
    grain = rng.normal(0, 0.045, (h // 2 + 1, w // 2 + 1)).astype(np.float32).repeat(2, 0).repeat(2, 1)[:h, :w]
    return arr * (1.0 + strength * low + grain)[..., None]


def _sky(arr: np.ndarray, horizon: float) -> None:
    """Fill the rows above the horizon (web photos) with a vertical gradient."""
    h = arr.shape[0]
    top = int(np.clip(horizon, 0, h))
    if top > 0:
        g = np.linspace(0.0, 1.0, top, dtype=np.float32)[:, None, None]
        arr[:top] = (1 - g) * np.array([150, 182, 222], np.float32) + g * np.array([214, 222, 228], np.float32)


def render_view(ident: Identity, view: View, cam: Camera, image_size: int, rng: np.random.Generator,
                mark_kinds: frozenset[str] | None = None, scene: bool = False,
                ) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Render one image of ``ident`` seen by ``cam`` from ``view``.

    Args:
        ident: the vehicle.
        view: viewpoint, distance and resolution of this image.
        cam: camera (light, blur, noise, background).
        image_size: long side of a crop at resolution factor 1 (crops vary with camera distance).
        rng: the image's random stream (crop jitter, texture, noise).
        mark_kinds: which instance marks to draw (``geometry.MARK_KINDS[1:]``); all if None.
        scene: render a larger scene (CompCars) instead of a loose crop.

    Returns:
        The RGB image and the vehicle box ``(x0, y0, x1, y1)`` in 0-based pixels, end exclusive.
    """
    mesh: Mesh = build_mesh(ident, None if mark_kinds is None else frozenset(mark_kinds))
    target = np.array([0.0, 0.0, mesh.height * 0.45])
    proj = Projection.orbit(view.azimuth, view.elevation, view.distance * mesh.size, target)
    xy, depth = proj.project(mesh.points)
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    bw, bh = x1 - x0, y1 - y0
    margins = cam.margin * rng.uniform(0.6, 1.4, 4)
    if scene:
        out_w = int(round(2 * image_size * view.res))
        out_h = int(round(out_w * 0.75))
        frac = min(rng.uniform(0.5, 0.88), 0.85 * out_h * bw / (out_w * bh))
        scale = frac * out_w / bw
        ox = rng.uniform(0.1, 0.9) * (out_w - bw * scale)
        oy = rng.uniform(0.1, 0.9) * (out_h - bh * scale)
        offset = np.array([ox - x0 * scale, oy - y0 * scale])
    else:
        cx0, cx1 = x0 - margins[0] * bw, x1 + margins[1] * bw
        cy0, cy1 = y0 - margins[2] * bh, y1 + margins[3] * bh
        long_side = image_size * view.res
        scale = long_side / max(cx1 - cx0, cy1 - cy0)
        out_w = max(16, int(round((cx1 - cx0) * scale)))
        out_h = max(16, int(round((cy1 - cy0) * scale)))
        offset = np.array([-cx0 * scale, -cy0 * scale])
    ss = SUPERSAMPLE
    cw, ch = out_w * ss, out_h * ss
    t = np.array([scale * ss, offset[0] * ss, offset[1] * ss])
    # background: sky / far colour, ground through the camera, then texture
    img = Image.new("RGB", (cw, ch), cam.far_rgb)
    draw = ImageDraw.Draw(img)
    _background(draw, proj, cam, view, t, (cw, ch), scene)
    arr = _texture(np.asarray(img, dtype=np.float32), cam, rng)
    if scene:
        d = np.array([proj.fwd[0], proj.fwd[1], 0.0])
        d /= max(np.linalg.norm(d), 1e-9)
        hy = -(d @ proj.up) / max(d @ proj.fwd, 1e-6) * t[0] + t[2]
        _sky(arr, hy - 2)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img, "RGBA")
    # soft shadow under the vehicle
    fx0, fx1, fy0, fy1 = mesh.footprint
    sun_az = math.radians(view.azimuth + cam.sun[0])
    sh = 0.35 * np.array([math.cos(sun_az), math.sin(sun_az)])
    shadow = np.array([[fx0 - 0.15, fy0 - 0.1, 0.01], [fx1 + 0.15, fy0 - 0.1, 0.01],
                       [fx1 + 0.15, fy1 + 0.1, 0.01], [fx0 - 0.15, fy1 + 0.1, 0.01]])
    shadow[:, :2] -= sh
    poly = _clip_near(proj.camera_space(shadow))
    if len(poly) >= 3:
        draw.polygon(_to_px(poly, t), fill=(0, 0, 0, 120))
    # vehicle: cull faces, order parts, shade, LOD, draw
    eye = proj.eye
    visible = np.einsum("fk,fk->f", mesh.normals, eye[None] - mesh.centroids) > 1e-9
    e, a = math.radians(cam.sun[1]), sun_az
    sun = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    lam = np.clip(mesh.normals @ sun, 0, None)
    shade = cam.ambient + (1 - cam.ambient) * lam + 0.12 * mesh.normals[:, 2]
    pf = mesh.face
    poly_shade = np.where(mesh.glass, 0.85 + 0.25 * lam[pf], shade[pf]).astype(np.float32)
    rgb = np.clip(mesh.rgb * poly_shade[:, None], 0, 255).astype(np.int64)
    px = xy * t[0] + t[1:][None]
    ext = np.maximum(np.maximum.reduceat(px[:, 0], mesh.starts) - np.minimum.reduceat(px[:, 0], mesh.starts),
                     np.maximum.reduceat(px[:, 1], mesh.starts) - np.minimum.reduceat(px[:, 1], mesh.starts))
    keep = visible[pf] & (ext >= mesh.detail)
    rank = np.empty(len(mesh.boxes), dtype=np.int64)
    rank[part_order(mesh.boxes, eye)] = np.arange(len(mesh.boxes))
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(rank[mesh.face_part[pf[idx]]], kind="stable")]
    pts = px.tolist()
    starts, counts, colours = mesh.starts.tolist(), mesh.counts.tolist(), rgb.tolist()
    for i in idx.tolist():
        s = starts[i]
        draw.polygon(pts[s:s + counts[i]], fill=tuple(colours[i]))
    img = img.reduce(ss)
    # camera: light, colour cast, contrast, blur, noise
    out = np.asarray(img, dtype=np.float32)
    gain = cam.gain * rng.uniform(0.92, 1.08)
    out = out * (gain * np.asarray(cam.cast, np.float32))[None, None]
    out = (out - 110.0) * cam.contrast + 110.0
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    sigma = cam.blur * rng.uniform(0.7, 1.3)
    if sigma > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(sigma))
    out = np.asarray(img, dtype=np.float32) + rng.normal(0, cam.noise, (out_h, out_w, 1)).astype(np.float32) * \
        np.array([1.0, 0.95, 1.05], np.float32) + rng.normal(0, cam.noise * 0.5, (out_h, out_w, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    bx0 = int(math.floor(x0 * scale + offset[0]))
    by0 = int(math.floor(y0 * scale + offset[1]))
    bx1 = int(math.ceil(x1 * scale + offset[0]))
    by1 = int(math.ceil(y1 * scale + offset[1]))
    box = (max(0, bx0), max(0, by0), min(out_w, bx1), min(out_h, by1))
    return img, box


def encode_png(img: Image.Image) -> bytes:
    """Deterministic lossless PNG bytes (no metadata): the same pixels for every decoder."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def encode_jpeg(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Deterministic JPEG bytes (fixed quality, no EXIF or timestamps)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()

