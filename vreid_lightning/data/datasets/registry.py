"""Dataset registry: ``load_dataset("veri", "/data/VeRi", verify_images="header")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from vreid_lightning.errors import ConfigError

from ._io import duplicate_lines
from .base import DatasetFormatError, ReIDDataset
from .cityflow import load_cityflow
from .compcars import load_compcars
from .custom import load_custom
from .vehicleid import load_vehicleid
from .veri import load_veri
from .veriwild import load_veriwild

__all__ = ["DATASETS", "ALIASES", "canonical_name", "dataset_options", "load_dataset"]

DATASETS: dict[str, Callable[..., ReIDDataset]] = {
    "veri": load_veri,
    "vehicleid": load_vehicleid,
    "cityflow": load_cityflow,
    "compcars": load_compcars,
    "custom": load_custom,  # your own data: annotations CSV or ROOT/<id>/<image> (custom.py)
    "veriwild": load_veriwild,
}
ALIASES = {"veri776": "veri", "veri-776": "veri", "vehicle_id": "vehicleid", "aic19": "cityflow",
           "aic20": "cityflow", "aic21": "cityflow",
           "veri-wild": "veriwild", "veri_wild": "veriwild"}


def canonical_name(name: str) -> str:
    """The registry key for ``name`` (case-insensitive; aliases such as ``aic20`` resolved)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def dataset_options(name: str) -> list[str]:
    """Keyword options the parser of ``name`` accepts."""
    parameters = inspect.signature(DATASETS[canonical_name(name)]).parameters
    return [p for p in parameters if p != "root"] + ["duplicates"]  # duplicates: every parser (load_dataset)


def load_dataset(name: str, root: str | Path, **options) -> ReIDDataset:
    """Parse the dataset ``name`` found at ``root``.

    Args:
        name: a key of :data:`DATASETS` (or an alias).
        root: the dataset folder.
        **options: the parser's keyword options (e.g. ``verify_images``, ``val_seed``, ``use_all``), and
            ``duplicates``: ``drop`` (default: a line repeated in an image list is counted in ``warnings``
            and ``diagnostics["duplicate_lines"]`` and dropped) or ``error`` (refused, naming file and line).

    Raises:
        ValueError: unknown dataset name or option (the message lists the known ones).
        DatasetFormatError: missing root or a layout problem (names the file and line).
    """
    key = canonical_name(name)
    accepted = dataset_options(key)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for dataset {key!r}; accepted: {accepted}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetFormatError(path, f"an existing {key} dataset root folder (not found)")
    policy = options.pop("duplicates", "drop")
    with duplicate_lines(policy) as dropped:  # a repeated line of an image list: counted and dropped, or refused
        ds = DATASETS[key](path, **options)
    if dropped:
        ds.diagnostics["duplicate_lines"] = {Path(f).name: n for f, n in dropped.items()}
        for f, n in dropped.items():
            ds.warnings.append(f"{Path(f).name}: {n} duplicate line(s) dropped (each image is counted once; "
                               f"duplicates='error' refuses them)")
    return ds
