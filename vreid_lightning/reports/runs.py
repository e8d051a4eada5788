"""Runs as the reports see them: a results.json, the resolved config beside it, its provenance.

``load_runs(paths)`` takes results.json files and folders (a run directory, a multirun folder, an
experiment's ``results/`` folder: every ``results.json`` below it, and every ``*.json`` directly in a
folder that holds no results.json) and returns one :class:`Run` each. The config is the run directory's
``config_resolved.yaml``; without one (results copied out of their run directory) only the experiment
name, from results.json, is known. Runs whose ``run.json`` (:mod:`vreid_lightning.runner.status`) marks
them failed or interrupted are skipped (``load_runs(..., skipped=[])`` collects them). A run directory's ``efficiency.json`` (the
:class:`~vreid_lightning.reports.efficiency.EfficiencyMeter`'s) is read in as ``results["efficiency"]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vreid_lightning.errors import ConfigError

__all__ = ["Run", "load_runs", "lookup", "mean_and_spread", "MISSING"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Run:
    """One run: where its results.json is, what it holds, and its resolved config (None if unknown)."""

    source: str
    results: dict[str, Any]
    config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def experiment(self) -> str | None:
        if self.config and self.config.get("experiment_name"):
            return str(self.config["experiment_name"])
        exp = self.results.get("experiment")
        return None if exp is None else str(exp)

    @property
    def provenance(self) -> dict[str, Any] | None:
        p = self.results.get("provenance")
        return p if isinstance(p, dict) else None

    def config_value(self, key: str) -> Any:
        """The resolved config's value at a dotted key (MISSING when there is no config or no such key)."""
        if self.config is None:
            return MISSING
        return lookup(self.config, key)


def _key_order(k: str) -> tuple[int, float, str]:
    try:
        return (0, float(k), k)
    except ValueError:
        return (1, 0.0, k)


def lookup(tree: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested dicts (MISSING if absent). ``#i`` picks the i-th key in
    increasing numeric order (``#-1``: the last), or the i-th item of a list; ``*`` maps the rest of the
    path over a list (``data.extra_sources.*.dataset`` -> ``["veri", "vehicleid"]``)."""
    parts = [p for p in path.split(".") if p]
    node = tree
    for i, part in enumerate(parts):
        if part == "*":
            if not isinstance(node, list):
                return MISSING
            rest = ".".join(parts[i + 1:])
            return [lookup(x, rest) for x in node]
        if isinstance(node, list):  # a list: `i` or `#i` indexes it
            try:
                node = node[int(part.lstrip("#"))]
            except (ValueError, IndexError):
                return MISSING
            continue
        if not isinstance(node, dict):
            return MISSING
        if part.startswith("#"):
            keys = sorted(node, key=lambda k: _key_order(str(k)))
            try:
                part = keys[int(part[1:])]
            except (ValueError, IndexError):
                return MISSING
        if part not in node:
            return MISSING
        node = node[part]
    return node


def _read_run(path: Path, shown: str) -> Run:
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{shown}: not a readable results.json ({e})") from e
    if not isinstance(results, dict):
        raise ConfigError(f"{shown}: expected a JSON object")
    config = None
    cfg_file = path.with_name("config_resolved.yaml")
    if path.name == "results.json" and cfg_file.is_file():
        config = yaml.safe_load(cfg_file.read_text()) or {}
    if path.name == "results.json" and "efficiency" not in results:
        eff = _efficiency(path.parent)
        if eff:
            results = {**results, "efficiency": eff}
    return Run(shown, results, config)


def _efficiency(run_dir: Path) -> dict[str, Any]:
    """The run's efficiency.json, or the summary over its stages' (``stages/*/efficiency.json``)."""
    from vreid_lightning.reports.efficiency import summarize_efficiency

    f = run_dir / "efficiency.json"
    if f.is_file():
        return json.loads(f.read_text())
    entries = [e for sf in sorted((run_dir / "stages").glob("*/efficiency.json"))
               for e in json.loads(sf.read_text()).get("entries", [])]
    return summarize_efficiency(entries) if entries else {}


SKIPPED_STATUS = ("failed", "interrupted")


def _marked_failed(results_file: Path) -> bool:
    from vreid_lightning.runner.status import read_status

    status = read_status(results_file.parent) if results_file.name == "results.json" else None
    return bool(status) and status.get("status") in SKIPPED_STATUS


def load_runs(paths: list[str | Path], skipped: list[str] | None = None) -> list[Run]:
    """Every run below the given files and folders, in sorted path order; a missing path is a ConfigError.
    Runs marked failed or interrupted (``run.json``) are left out; their paths go into ``skipped``."""
    runs: list[Run] = []
    for given in paths:
        p = Path(given)
        if p.is_file():
            if _marked_failed(p):
                (skipped if skipped is not None else []).append(str(given))
                continue
            runs.append(_read_run(p, str(given)))
            continue
        if not p.is_dir():
            raise ConfigError(f"{given}: no such results.json file or folder")
        found = sorted(p.rglob("results.json"), key=lambda f: [_key_order(x) for x in f.relative_to(p).parts])
        if not found:
            found = sorted(f for f in p.glob("*.json") if f.name not in ("efficiency.json",))
        for f in found:
            shown = str(Path(given) / f.relative_to(p))
            if _marked_failed(f):
                (skipped if skipped is not None else []).append(shown)
                continue
            runs.append(_read_run(f, shown))
    return runs


def mean_and_spread(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
