"""The synthetic world as a cached dataset: generate once, reuse while its parameters hold.

``data=synthetic`` points the DataModule at a world written by :mod:`vreid_lightning.synth` in the
real VeRi layout. The world is generated on first use into ``<cache_dir>/synthetic/<key>/`` where the
key hashes the generator version and every parameter; ``world.json`` beside it records both. A
later run with the same parameters reuses it; any change (parameters or generator version) gives a
new key, hence a fresh world. Generation writes into a temporary folder renamed into place at the
end, so an interrupted run never leaves a half-written world behind that looks complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ensure_synthetic_world", "synthetic_world_dir", "synthetic_viewpoints", "viewpoint_name"]

log = logging.getLogger(__name__)


def _key(params: dict[str, Any], version: str) -> str:
    blob = json.dumps({"version": version, **params}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def synthetic_world_dir(cache_dir: str | Path, params: dict[str, Any]) -> Path:
    """Folder the world with these generator parameters lives in (it may not exist yet)."""
    from vreid_lightning.synth import GENERATOR_VERSION

    layout = params.get("layout", "veri")
    return Path(cache_dir) / "synthetic" / f"{layout}_{params.get('ids')}ids_seed{params.get('seed', 0)}_{_key(params, GENERATOR_VERSION)}"


def ensure_synthetic_world(cache_dir: str | Path, params: dict[str, Any], progress: bool = True) -> Path:
    """Return the root of the synthetic world with ``params``, generating it if needed.

    Args:
        cache_dir: where worlds are cached.
        params: keyword arguments of :func:`vreid_lightning.synth.generate` (``layout``, ``ids``,
            ``seed``, ``image_size`` ...), minus ``out``.
        progress: show the generator's progress bar.
    """
    from vreid_lightning.synth import GENERATOR_VERSION, generate

    params = dict(params)
    root = synthetic_world_dir(cache_dir, params)
    if _is_complete(root, params, GENERATOR_VERSION):
        return root
    from vreid_lightning.atomic import write_probe
    from vreid_lightning.errors import OutputError

    write_probe(root.parent, "paths.cache_dir (where synthetic worlds are generated)")  # read-only/full: one error
    # one generator at a time (ranks started by torchrun/SLURM all call this); the others wait and reuse
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(root, params, GENERATOR_VERSION):
            return root
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log.info("Generating synthetic %s world (%s) into %s", params.get("layout", "veri"), params, root)
        t0 = time.time()
        try:
            generate(out=tmp, progress=progress, **params)
            (tmp / "world.json").write_text(
                json.dumps({"generator_version": GENERATOR_VERSION, "params": params,
                            "seconds": round(time.time() - t0, 1)}, indent=2, sort_keys=True)
            )
        except OSError as e:  # disk full while generating: no half world left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"paths.cache_dir: cannot write the synthetic world in {root.parent}: "
                              f"{e.strerror or e}") from None
        shutil.rmtree(root, ignore_errors=True)  # a stale or interrupted world under this key
        tmp.rename(root)
    return root


def _is_complete(root: Path, params: dict[str, Any], version: str) -> bool:
    stamp = root / "world.json"
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    return recorded.get("generator_version") == version and recorded.get("params") == params


def viewpoint_name(azimuth: float, elevation: float, overhead_from: float = 35.0) -> str:
    """Fig. 6's viewpoint classes: ``overhead`` (steep camera), else ``front`` / ``rear`` / ``side`` / ``oblique``."""
    if elevation >= overhead_from:
        return "overhead"
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    if a <= 30.0:
        return "front"
    if a >= 150.0:
        return "rear"
    return "side" if 60.0 <= a <= 120.0 else "oblique"


def _world_stamp(root: Path) -> dict[str, Any] | None:
    for d in (root, *list(root.parents)[:2]):
        stamp = d / "world.json"
        if stamp.is_file():
            return json.loads(stamp.read_text())
    return None


def synthetic_viewpoints(root: str | Path, split: Any) -> np.ndarray | None:
    """Per row of ``split`` (training images of a synthetic surveillance world) its (azimuth, elevation).

    The world is rebuilt from ``world.json`` (no rendering) and each image matched to its view: same
    vehicle, a track of that vehicle in the image's camera with as many frames, frame order = file order
    (the writers number a track's frames consecutively), so ``split`` must hold whole tracks (CityFlow's
    validation gallery, the whole original training set, does). Returns None when ``root`` is not a synthetic
    world this can be read from (real data: no viewpoint labels), or when an image cannot be matched.
    """
    from vreid_lightning.synth import LAYOUTS, build_world, schedule_world

    stamp = _world_stamp(Path(root))
    if stamp is None or "params" not in stamp:
        return None
    params = stamp["params"]
    spec = LAYOUTS.get(params.get("layout", "veri"))
    if spec is None or spec.style != "surveillance" or split.tracks is None:
        return None
    world = build_world(int(params["ids"]), int(params.get("seed", 0)), spec.style,
                        int(params.get("cameras") or spec.cameras), spec.types)
    views = schedule_world(world, int(params.get("images_per_id") or spec.images_per_id))
    out = np.full((len(split), 2), np.nan)
    keys = np.stack([split.pids, split.tracks], 1)
    for key in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys == key).all(1))
        rows = rows[np.argsort([Path(split.paths[r]).name for r in rows], kind="stable")]
        cam = int(split.camids[rows[0]])
        tracks: dict[int, list] = {}
        for v in views.get(int(key[0]), []):
            tracks.setdefault(v.track, []).append(v)
        same_cam = [t for t in tracks.values() if t[0].cam == cam]
        match = next((t for t in same_cam if len(t) == len(rows)), None)
        if match is None:
            return None
        out[rows] = [(v.azimuth, v.elevation) for v in match[:len(rows)]]
    return out
