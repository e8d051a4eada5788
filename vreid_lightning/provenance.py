"""Provenance of a run: what produced a number, so that two numbers can be compared.

``collect_provenance(cfg, datamodule)`` returns a JSON-able dict that the results writer stores under
``results["provenance"]`` in every ``results.json``. The same seed gives different metrics under
different library builds (``ram_synthetic`` seed 0: test mAP 0.341 on one machine, 0.288 on a fresh
install resolving torch 2.14.1), so a result without its environment cannot be compared.

Keys (stable; reports read them, README "results.json" lists them):

- ``schema``: version of this block (int).
- ``time_utc``: when it was collected, ISO 8601.
- ``versions``: ``python``, ``torch``, ``torchvision``, ``lightning``, ``numpy``, ``timm``, ``hydra``,
  ``vreid_lightning`` (``None`` when a library is not installed).
- ``cuda``: ``available``, ``torch_cuda`` (the CUDA torch was built with, ``None`` for a CPU build),
  ``cudnn`` (cuDNN version or ``None``), ``devices`` (GPU names).
- ``host``: ``platform``, ``machine``, ``cpu_count`` (logical CPUs), ``cpu_affinity`` (CPUs this process
  may use), ``torch_threads``, ``accelerator`` (the trainer's, from the config), ``device`` (what runs:
  ``cpu`` or the first GPU's name).
- ``git``: ``commit`` (40 hex or ``None``), ``dirty`` (tracked files modified; ``None`` when unknown),
  ``changed_files`` (count), ``error`` (only when no commit could be read: not a checkout, no git).
- ``command``: ``argv``, ``line`` (shell-quoted, with the interpreter), ``cwd``, ``overrides`` (Hydra's
  task overrides when run through the Hydra app).
- ``dataset``: the data identity: ``dataset`` (parser), ``layout`` (the synthetic layout or the
  parser), ``root``, ``splits`` (``images``/``ids``/``cameras`` per split), ``diagnostics`` (parser
  counts such as CompCars ``missing_files``), ``warnings`` (count), ``synthetic`` (``generator_version``,
  ``key``, ``world``, ``params``, ``type_colour_sharing``) when the data is a synthetic world, and
  ``sources`` (one identity per extra training source) in multi-source runs.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PROVENANCE_SCHEMA", "collect_provenance", "library_versions", "git_state", "dataset_identity"]

PROVENANCE_SCHEMA = 1
_LIBRARIES = {"torch": "torch", "torchvision": "torchvision", "lightning": "lightning", "numpy": "numpy",
              "timm": "timm", "hydra": "hydra-core", "vreid_lightning": "vreid_lightning"}


def library_versions() -> dict[str, str | None]:
    """Versions of python and the libraries a result depends on (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _LIBRARIES.items():
        module = sys.modules.get(key)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        out[key] = None if version is None else str(version)
    return out


def _cuda_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return {"available": False, "torch_cuda": None, "cudnn": None, "devices": []}
    available = bool(torch.cuda.is_available())
    cudnn = torch.backends.cudnn.version() if available and torch.backends.cudnn.is_available() else None
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
    return {"available": available, "torch_cuda": torch.version.cuda, "cudnn": cudnn, "devices": devices}


def _host_info(cfg: Any, cuda: dict[str, Any]) -> dict[str, Any]:
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        import torch

        threads: int | None = int(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        threads = None
    accelerator = _select(cfg, "trainer.accelerator")
    on_gpu = bool(cuda["devices"]) and str(accelerator or "auto") in ("auto", "gpu", "cuda")
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "cpu_affinity": affinity, "torch_threads": threads,
            "accelerator": None if accelerator is None else str(accelerator),
            "device": cuda["devices"][0] if on_gpu else "cpu"}


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """The git commit of the checkout holding ``path`` (default: this package) and whether it is dirty.

    Never raises: outside a checkout (an installed wheel), or without git, ``commit`` is ``None`` and
    ``error`` says why.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"git {args[0]} failed")
        return res.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "changed_files": None, "error": str(exc) or type(exc).__name__}
    return {"commit": commit, "dirty": bool(changed), "changed_files": len(changed)}


def _command() -> dict[str, Any]:
    argv = [str(a) for a in sys.argv]
    if argv and argv[0].endswith(("__main__.py",)) and "vreid_lightning" in argv[0]:
        shown = [sys.executable, "-m", "vreid_lightning", *argv[1:]]
    else:
        shown = [sys.executable, *argv]
    overrides: list[str] | None = None
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = [str(o) for o in HydraConfig.get().overrides.task]
    except (ImportError, ValueError):
        overrides = None
    return {"argv": argv, "line": shlex.join(shown), "cwd": os.getcwd(), "overrides": overrides}


def _select(cfg: Any, key: str) -> Any:
    """``cfg.a.b`` for DictConfig or plain dicts; ``None`` when absent."""
    node = cfg
    for part in key.split("."):
        if node is None:
            return None
        try:
            node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
        except Exception:  # an interpolation that cannot resolve here
            return None
    return node


def _plain(value: Any) -> Any:
    """A JSON-able copy: OmegaConf containers resolved, numpy scalars/arrays and paths made plain."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


def _synthetic_identity(params: dict[str, Any], cache_dir: Any, root: str | None) -> dict[str, Any]:
    """Generator version and key of a synthetic world; the world's own record wins when it exists."""
    import json

    from vreid_lightning.synth import GENERATOR_VERSION, MANIFEST

    from vreid_lightning.data.synthetic import _key, synthetic_world_dir

    out: dict[str, Any] = {"generator_version": GENERATOR_VERSION, "key": _key(params, GENERATOR_VERSION),
                           "params": params, "world": None, "type_colour_sharing": None}
    world = Path(root) if root else (synthetic_world_dir(cache_dir, params) if cache_dir is not None else None)
    if world is not None:
        out["world"] = world.name
        manifest = world / MANIFEST
        if manifest.is_file():
            recorded = json.loads(manifest.read_text())
            out["generator_version"] = recorded.get("generator_version", out["generator_version"])
            out["type_colour_sharing"] = recorded.get("type_colour_sharing")
            out["key"] = _key(params, out["generator_version"])
    return out


def dataset_identity(datamodule: Any = None, data_cfg: Any = None) -> dict[str, Any]:
    """What data a run saw: parser, layout, root, per-split counts, parser diagnostics, synthetic world.

    Uses the set-up DataModule when given (counts as read); otherwise only what the config says.
    """
    synthetic = _plain(getattr(datamodule, "synthetic", None) if datamodule is not None
                       else _select(data_cfg, "synthetic"))
    name = getattr(datamodule, "dataset_name", None) or _select(data_cfg, "dataset")
    out: dict[str, Any] = {"dataset": None if name is None else str(name),
                           "layout": str((synthetic or {}).get("layout", name)) if name or synthetic else None,
                           "root": None, "splits": None, "diagnostics": {}, "warnings": 0}
    ds = getattr(datamodule, "dataset", None)
    if ds is not None:
        out["root"] = str(ds.root)
        out["splits"] = {k: {c: v.summary()[c] for c in ("images", "ids", "cameras")} for k, v in ds.splits().items()}
        out["diagnostics"] = _plain(dict(getattr(ds, "diagnostics", {}) or {}))
        out["warnings"] = len(ds.warnings)
    elif _select(data_cfg, "root") is not None:
        out["root"] = str(_select(data_cfg, "root"))
    if synthetic:
        cache_dir = getattr(datamodule, "cache_dir", None) if datamodule is not None else _select(data_cfg, "cache_dir")
        out["synthetic"] = _synthetic_identity(dict(synthetic), cache_dir, out["root"] if ds is not None else None)
    sources = getattr(datamodule, "source_summary", None)
    if sources:
        out["sources"] = _plain(list(sources))
    elif datamodule is None and _select(data_cfg, "extra_sources"):
        out["sources"] = _plain(_select(data_cfg, "extra_sources"))
    return out


def collect_provenance(cfg: Any = None, datamodule: Any = None) -> dict[str, Any]:
    """The provenance block of ``results.json`` (see the module docstring for its keys).

    Args:
        cfg: the composed run config (DictConfig or dict); used for the trainer's accelerator and,
            without a DataModule, for the data identity. Optional.
        datamodule: the set-up :class:`~vreid_lightning.data.datamodule.ReIDDataModule` (counts as
            read, parser diagnostics, the synthetic world). Optional.

    Never raises for a missing git checkout or an absent optional library.
    """
    cuda = _cuda_info()
    return {
        "schema": PROVENANCE_SCHEMA,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "cuda": cuda,
        "host": _host_info(cfg, cuda),
        "git": git_state(),
        "command": _command(),
        "dataset": dataset_identity(datamodule, _select(cfg, "data")),
    }
