"""When and how each identity is seen: per-image camera, timestamp, track and viewpoint.

Surveillance worlds (VeRi, CityFlow) send each vehicle along a route through a subset of cameras on
the city map; every pass in front of a camera is a track of consecutive frames whose viewpoint and
scale drift slightly (the vehicle approaches or drives away). Checkpoint worlds (VehicleID) give
near-frontal or near-rear views; web worlds (CompCars) give independent photos from any side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .world import Camera, Identity, World

__all__ = ["View", "schedule_identity", "schedule_world", "compcars_viewpoint"]

_S_SCHEDULE = 5
FPS = 25            # frame rate of the timestamps
FRAME_STEP = 5      # frames between consecutive crops of a track (VeRi names step by 5)
MAX_TRACK = 10      # longest track; longer stays in one camera are split into later passes
# Arrival rate of the labelled vehicles: an identity's first sighting is uniform over ids x ARRIVAL
# frames, i.e. one new vehicle per minute on average (VeRi-776: 776 ids in 24 h, one per 111 s;
# CityFlow: 666 ids in 3.25 h, one per 18 s). A vehicle's own sightings span ~10-15 minutes, so a
# time window of tens of minutes keeps a realistic share of the other vehicles (before generator
# 1.2.1 the starts spread over 17 h whatever the number of ids: ~6 vehicles per hour).
ARRIVAL = 60 * FPS


@dataclass(frozen=True)
class View:
    """One image of one identity.

    Attributes:
        vid: world id. k: image index within the identity (the image's random stream).
        cam: 1-based camera id. timestamp: frame number. track: track index within the identity.
        crop: crop index K (several crops of one frame). azimuth: degrees, 0 = front view, 90 = the
        vehicle's left side, 180 = rear. elevation: degrees. distance: camera distance in vehicle
        sizes. res: output resolution factor. lane: lateral offset of the lane lines (metres).
    """

    vid: int
    k: int
    cam: int
    timestamp: int
    track: int
    crop: int
    azimuth: float
    elevation: float
    distance: float
    res: float
    lane: float


def _surveillance(ident: Identity, cams: tuple[Camera, ...], rng: np.random.Generator, n_img: int,
                  max_cams: int, n_ids: int) -> list[View]:
    c = len(cams)
    hi = max(1, min(max_cams, c, n_img))
    n_cams = int(np.clip(round(rng.normal(10, 4)), min(2, hi), hi))
    n_cams = max(min(2, hi), min(n_cams, max(2, n_img // 3)))
    chosen = rng.choice(c, n_cams, replace=False)
    direction = rng.normal(size=2)
    pos = np.array([cams[i].position for i in chosen])
    chosen = chosen[np.argsort(pos @ direction, kind="stable")]
    counts = np.ones(n_cams, dtype=np.int64) + rng.multinomial(n_img - n_cams, rng.dirichlet(np.full(n_cams, 2.0)))
    # passes: each camera's frames split into tracks of <= MAX_TRACK, later passes after the first route
    passes: list[tuple[int, int]] = []
    n_pass = int(math.ceil(counts.max() / MAX_TRACK))
    for p in range(n_pass):
        for ci, m in zip(chosen, counts):
            n_tr = int(math.ceil(m / MAX_TRACK))
            if p < n_tr:
                passes.append((int(ci), int(m // n_tr + (1 if p < m % n_tr else 0))))
    views: list[View] = []
    t = int(rng.integers(1_000, 1_000 + ARRIVAL * n_ids))
    prev_pos: np.ndarray | None = None
    speed = rng.uniform(6, 15)
    for track, (ci, m) in enumerate(passes):
        cam = cams[ci]
        here = np.asarray(cam.position)
        if prev_pos is not None:
            gap = np.linalg.norm(here - prev_pos) / speed * FPS
            t += int(gap) + int(rng.integers(50, 500))
            if np.allclose(gap, 0):  # back in the same camera: a later pass
                t += int(rng.integers(5_000, 40_000))
        prev_pos = here
        toward = rng.random() < cam.toward
        az0 = cam.azimuth + rng.normal(0, cam.azimuth_std) + (0.0 if toward else 180.0)
        el0 = cam.elevation + rng.normal(0, 2.5)
        d0 = cam.distance * rng.uniform(0.9, 1.1)
        drift = rng.normal(0, 6)
        lane = cam.lane_offset + rng.normal(0, 0.3)
        crop = 0
        for j in range(m):
            p = j / max(m - 1, 1)
            q = p if toward else 1 - p  # 0 far, 1 near
            d = d0 * (1.15 - 0.35 * q)
            if j > 0 and rng.random() < 0.03 and crop < 4:
                crop += 1  # another crop of the same frame (VeRi K: mostly 0, up to 4)
            else:
                crop = 0
                t += FRAME_STEP * (2 if rng.random() < 0.1 else 1)
            views.append(View(
                vid=ident.vid, k=len(views), cam=cam.cam_id, timestamp=t, track=track, crop=crop,
                azimuth=float(az0 + drift * (p - 0.5)), elevation=float(np.clip(el0 + 5 * (q - 0.5), 3, 60)),
                distance=float(d), res=float(np.clip(cam.res * (d0 / d) ** 0.7, 0.5, 1.2)), lane=float(lane)))
        t += int(rng.integers(100, 1_000))
    return views


def _checkpoint(ident: Identity, cams: tuple[Camera, ...], rng: np.random.Generator, n_img: int) -> list[View]:
    views = []
    t = int(rng.integers(1_000, 1_500_000))
    for k in range(n_img):
        cam = cams[int(rng.integers(len(cams)))]
        rear = rng.random() < 0.5
        t += int(rng.integers(25, 5_000))
        views.append(View(
            vid=ident.vid, k=k, cam=cam.cam_id, timestamp=t, track=k, crop=0,
            azimuth=float(cam.azimuth + rng.normal(0, cam.azimuth_std) + (180.0 if rear else 0.0)),
            elevation=float(cam.elevation + rng.normal(0, 2)), distance=float(cam.distance * rng.uniform(0.92, 1.08)),
            res=float(cam.res * rng.uniform(0.9, 1.1)), lane=float(cam.lane_offset + rng.normal(0, 0.3))))
    return views


# Web photo viewpoints (CompCars): front, front-side, side, rear-side, rear with their frequencies.
_WEB_AZ = np.array([0.0, 45.0, 90.0, 135.0, 180.0])
_WEB_P = np.array([0.22, 0.33, 0.12, 0.2, 0.13])


def _web(ident: Identity, cams: tuple[Camera, ...], rng: np.random.Generator, n_img: int) -> list[View]:
    views = []
    for k in range(n_img):
        cam = cams[int(rng.integers(len(cams)))]
        az = _WEB_AZ[rng.choice(5, p=_WEB_P)] * (1 if rng.random() < 0.5 else -1) + rng.normal(0, 8)
        views.append(View(
            vid=ident.vid, k=k, cam=cam.cam_id, timestamp=0, track=k, crop=0, azimuth=float(az),
            elevation=float(max(1.0, cam.elevation + rng.normal(0, 3))),
            distance=float(cam.distance * rng.uniform(0.9, 1.15)), res=float(cam.res), lane=cam.lane_offset))
    return views


def schedule_identity(world: World, ident: Identity, images_per_id: int, max_cams: int = 18) -> list[View]:
    """The views of one identity (about ``images_per_id``, varying per id like real datasets).

    Args:
        world: the world (cameras and style).
        ident: the identity.
        images_per_id: mean number of images per identity.
        max_cams: most cameras one vehicle passes (VeRi: 2-18).
    """
    rng = np.random.default_rng([world.seed, _S_SCHEDULE, ident.vid])
    n_img = max(2, int(round(images_per_id * rng.uniform(0.6, 1.4))))
    if world.style == "surveillance":
        return _surveillance(ident, world.cameras, rng, n_img, max_cams, len(world.identities))
    if world.style == "checkpoint":
        return _checkpoint(ident, world.cameras, rng, n_img)
    return _web(ident, world.cameras, rng, n_img)


def schedule_world(world: World, images_per_id: int, max_cams: int = 18) -> dict[int, list[View]]:
    """Views of every identity, keyed by world id."""
    return {i.vid: schedule_identity(world, i, images_per_id, max_cams) for i in world.identities}


def compcars_viewpoint(azimuth: float) -> int:
    """CompCars viewpoint label: 1 front, 2 rear, 3 side, 4 front-side, 5 rear-side."""
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    if a <= 22.5:
        return 1
    if a >= 157.5:
        return 2
    if 67.5 <= a <= 112.5:
        return 3
    return 4 if a < 67.5 else 5
