"""Shared fixtures: tiny synthetic worlds in the real layouts, and Hydra configs for in-process runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Small and fast: the whole suite runs on 2 CPU cores.
torch.set_num_threads(min(2, torch.get_num_threads()))

# The tiny synthetic world +debug=tiny generates (conf/debug/tiny.yaml, VeRi layout; test_experiments checks they agree)
TINY_WORLD = {"layout": "veri", "ids": 12, "seed": 0, "image_size": 64, "images_per_id": 16}
# the tiny world alone, as overrides (for tests that size everything else themselves)
TINY_WORLD_OVERRIDES = [
    "data=synthetic",
    f"data.synthetic.ids={TINY_WORLD['ids']}",
    f"data.synthetic.image_size={TINY_WORLD['image_size']}",
    f"data.synthetic.images_per_id={TINY_WORLD['images_per_id']}",
]
# Any experiment at a seconds-long CPU size: conf/debug/tiny.yaml plus the experiment's own tiny: section.
# Goes after +experiment=NAME (the runner refuses the other order).
TINY = ["+debug=tiny"]
FIGURES = "callbacks.results_writer.figures=true"  # +debug=tiny draws no method figures; a figure test turns them on


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-world cache for the whole session (worlds are generated once)."""
    d = tmp_path_factory.mktemp("vreid_cache")
    os.environ["VREID_CACHE_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def veri_world(cache_dir: Path) -> Path:
    """A 12-identity VeRi-layout world, generated through the data config's cache."""
    from vreid_lightning.data.synthetic import ensure_synthetic_world

    return ensure_synthetic_world(cache_dir, dict(TINY_WORLD), progress=False)


@pytest.fixture(scope="session")
def vehicleid_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vreid_lightning.synth import generate

    out = tmp_path_factory.mktemp("vid") / "VehicleID_V1.0"
    generate("vehicleid", out, ids=60, seed=0, image_size=64, workers=1, progress=False)
    return out


VERIWILD_WORLD = {"layout": "veriwild2", "ids": 60, "seed": 0, "image_size": 48, "images_per_id": 10}


@pytest.fixture(scope="session")
def veriwild_world(cache_dir: Path) -> Path:
    """A 60-identity VERI-Wild layout with the VERI-Wild 2.0 test split beside it (``test_split/``)."""
    from vreid_lightning.data.synthetic import ensure_synthetic_world

    return ensure_synthetic_world(cache_dir, dict(VERIWILD_WORLD), progress=False)


def compose(overrides: list[str], out: Path):
    """Compose the app config in-process as the CLI would, with its run directory at ``out``."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hcompose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.cache_dir = os.environ.get("VREID_CACHE_DIR", str(out / ".cache"))
        del cfg.hydra
    return cfg


def run_cli(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vreid_lightning ARGS`` in ``cwd``; returns the completed process."""
    # the CLI of this checkout (not whichever copy is pip-installed): the repository root goes first
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    e = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vreid_lightning", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)
