"""Check that each reproducible paper-table row names a config that exists.

For every reproducible row and each of its table's experiments that exists in ``conf/experiment/``,
compose the app config as ``python -m vreid_lightning +experiment=E <row overrides>`` would, and check
that every constraint the generator will match runs on (the value-setting overrides and ``match``
entries) holds in the composed config. A row whose key is misspelled, or whose group override has no
``match`` entry for the key it sets, fails here rather than silently matching no run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from vreid_lightning.reports.match import same_value
from vreid_lightning.reports.runs import MISSING, lookup
from vreid_lightning.reports.spec import CONF_DIR, load_paper_tables, parse_override, is_group_key

__all__ = ["check_rows", "compose_row"]

_SENTINEL = object()


@lru_cache(maxsize=256)
def compose_row(experiment: str, overrides: tuple[str, ...]) -> Any:
    """The composed app config of ``+experiment=<experiment> <overrides>`` (a DictConfig)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"+experiment={experiment}", *overrides])


def _value(cfg: Any, key: str) -> Any:
    """The composed config's value at a dotted key, with the generator's path rules (``*``, ``#i``)."""
    from omegaconf import OmegaConf

    head = key.split(".*", 1)[0] if ".*" in key else key
    v = OmegaConf.select(cfg, head, default=_SENTINEL)
    if v is _SENTINEL:
        return MISSING
    v = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return v if head == key else lookup({"v": v}, "v" + key[len(head):])


def _global_keys(group: str, value: Any) -> set[str]:
    """Top-level keys a ``# @package _global_`` group file (a sweep) sets; empty for a packaged group."""
    import yaml

    path = CONF_DIR / group / f"{value}.yaml"
    if not path.is_file():
        return set()
    text = path.read_text()
    if "@package _global_" not in text.split("\n", 3)[0]:
        return set()
    return {str(k) for k in (yaml.safe_load(text) or {}) if k not in ("defaults", "hydra")}


def _told_apart(group: str, value: Any, match: dict[str, Any]) -> bool:
    """Whether ``match`` names a key the group override sets: below the group's package, or, for a
    global-package file (``+sweep=scan_table3``), below one of the top-level keys it sets."""
    roots = {group} | _global_keys(group, value)
    return any(k == r or k.startswith(r + ".") for k in match for r in roots)


def check_rows(spec_path: str | Path, include_missing: bool = False) -> list[tuple[str, bool]]:
    """One ``(line, ok)`` per (row, existing experiment); rows of absent experiments are listed as
    failures only with ``include_missing``."""
    spec = load_paper_tables(spec_path)
    out: list[tuple[str, bool]] = []
    for table in spec.tables.values():
        for row in table.rows:
            if not row.reproduce:
                continue
            name = f"{spec.path}: {table.key} / {' '.join(row.labels)}"
            for exp in table.row_experiments(row):
                if exp == "*":  # any run: nothing to compose
                    continue
                if not (CONF_DIR / "experiment" / f"{exp}.yaml").is_file():
                    if include_missing:
                        out.append((f"{name} [{exp}]: no experiment conf/experiment/{exp}.yaml", False))
                    continue
                try:
                    cfg = compose_row(exp, row.overrides)
                except Exception as e:  # a Hydra error names the key; report it, check the rest
                    out.append((f"{name} [{exp}]: does not compose: {' '.join(str(e).split())[:300]}", False))
                    continue
                bad = [f"{k}={_value(cfg, k)!r} (row wants {v!r})" for k, v in row.constraints().items()
                       if not same_value(v, _value(cfg, k))]
                groups = [parse_override(o) for o in row.overrides if is_group_key(parse_override(o)[0])]
                unmatched_groups = [g for g, value in groups if not _told_apart(g, value, row.match)]
                if unmatched_groups:
                    bad.append(f"group override(s) {unmatched_groups} without a 'match' entry: no run could be told apart")
                out.append((f"{name} [{exp}]" + (": " + "; ".join(bad) if bad else ""), not bad))
    return out
