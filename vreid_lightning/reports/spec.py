"""A paper's published tables as data: the schema of ``experiments/<paper>/paper_tables.yaml``.

One YAML file per paper::

    paper: "RAM: Liu, Zhang, Huang, Gao, ICME 2018"
    source: shared/papers/RAM_icme2018.txt
    tables:
      table1:                                  # the key names the table (``--table table1``)
        heading: "Table 1 (VeRi)"              # README heading: "### <heading>: paper vs the suite on <world>"
        caption: "..."                         # the paper's caption
        dataset: VeRi-776                      # the dataset the paper measured on
        units: fraction                        # fraction | percent | count: how the paper prints its numbers
        experiments: {paper: ram_veri, synthetic: ram_synthetic}   # the experiments that reproduce it (or
                                               # lists; "*": any run, for outputs of a command, not a training)
        synthetic_world: the synthetic VeRi-layout world
        suite_note: "..."                      # optional: appended to the "Suite numbers from ..." line
        labels: [Model, Feature]               # the label columns
        columns:                               # the number columns, in the paper's order
          - {name: mAP, path: mAP}             # path: below the row's `at` in results.json ('/x.y': from the root)
          - {name: "Top-1 S / M / L", paths: ["#0.rank1", "#1.rank1", "#2.rank1"]}   # several values in one cell
          - {name: "NP (million)", path: params, scale: 1.0e-6, digits: 3}          # scale/digits override units
          - {name: "ImageNet Top5 (%)", suite: false}                               # a paper-only column
        rows:
          - labels: [baseline, "[f_c]"]
            at: stage_features.baseline.f_c    # where the row's metrics sit in results.json
            overrides: []                      # the config that reproduces the row: experiment + these overrides
            match: {}                          # extra resolved-config keys a run must have (group overrides)
            paper: [0.550, 0.848, 0.931]       # one value (or a list, for a multi-value cell) per column; null: '-'
          - {labels: ["KEPLER [16]"], reproduce: false, paper: [...]}   # another work's row: paper numbers only

In a path, ``#i`` picks the i-th key in increasing numeric order (``#-1`` the last): the VehicleID test
sizes. ``overrides`` entries ``key=value`` whose key is a config group (``backbone=vgg16``) select a
file and cannot be compared with a resolved config: name the key they set under ``match``
(``backbone.name: vgg16``). Suite values are fractions in [0, 1]; a ``percent`` table shows them x100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vreid_lightning.errors import ConfigError

__all__ = ["Column", "Row", "PaperTable", "PaperTables", "load_paper_tables", "parse_override", "UNITS"]

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# units -> (scale applied to the suite's value, digits)
UNITS: dict[str, tuple[float, int]] = {"fraction": (1.0, 3), "percent": (100.0, 2), "count": (1.0, 0)}


@dataclass(frozen=True)
class Column:
    """A number column: its header, where its value(s) sit below a row's ``at``, how to print them."""

    name: str
    paths: tuple[str, ...]
    scale: float
    digits: int
    suite: bool = True


@dataclass(frozen=True)
class Row:
    """A table row: labels, the paper's numbers, and (when reproducible) the config and results path."""

    labels: tuple[str, ...]
    paper: tuple[Any, ...]
    reproduce: bool = True
    at: str = ""
    overrides: tuple[str, ...] = ()
    match: dict[str, Any] = field(default_factory=dict)
    experiments: tuple[str, ...] = ()
    paths: tuple[str, ...] | None = None
    note: str | None = None

    def constraints(self) -> dict[str, Any]:
        """Resolved-config keys (dotted) and values a run must have: the overrides that set a value
        (unless ``match`` names the key or a key below it), plus ``match``."""
        out: dict[str, Any] = {}
        for ov in self.overrides:
            key, value = parse_override(ov)
            # a group override selects a file; a key `match` names more precisely is compared there only
            if not is_group_key(key) and not any(m == key or m.startswith(key + ".") for m in self.match):
                out[key] = value
        out.update(self.match)
        return out

    def column_paths(self, col: Column, index: int) -> tuple[str, ...]:
        """The results.json paths of column ``index`` for this row (the row's own ``paths`` win)."""
        if self.paths is not None:
            p = self.paths[index]
            return tuple(p) if isinstance(p, (list, tuple)) else (p,)
        return col.paths


@dataclass(frozen=True)
class PaperTable:
    """One published table."""

    key: str
    heading: str
    caption: str
    dataset: str
    units: str
    experiments: dict[str, tuple[str, ...]]
    synthetic_world: str
    labels: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    suite_note: str | None = None

    def row_experiments(self, row: Row) -> tuple[str, ...]:
        """The experiments whose runs may fill ``row`` (its own list, or every one the table names)."""
        return row.experiments or tuple(e for names in self.experiments.values() for e in names)


@dataclass(frozen=True)
class PaperTables:
    """A paper's tables (``experiments/<paper>/paper_tables.yaml``)."""

    path: Path
    paper: str
    source: str
    tables: dict[str, PaperTable]

    def select(self, keys: list[str] | None) -> list[PaperTable]:
        """The tables named in ``keys`` (all when None), in file order; an unknown name is a ConfigError."""
        if not keys:
            return list(self.tables.values())
        unknown = [k for k in keys if k not in self.tables]
        if unknown:
            raise ConfigError(f"{self.path}: no table(s) {unknown}; it has {list(self.tables)}")
        return [self.tables[k] for k in keys]


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.loss.lambda_attr=0.5"`` -> ``("model.loss.lambda_attr", 0.5)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, value = text.split("=", 1)
    return key.lstrip("+~"), yaml.safe_load(value) if value.strip() else None


def is_group_key(key: str) -> bool:
    """True when ``key`` names a config group (``backbone``, ``data``): its value selects a file."""
    return (CONF_DIR / key).is_dir()


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing key '{key}'")
    return d[key]


def _column(c: Any, units: str, where: str) -> Column:
    if not isinstance(c, dict):
        raise ConfigError(f"{where}: expected a mapping with 'name' and 'path' or 'paths'")
    unknown = set(c) - {"name", "path", "paths", "scale", "digits", "suite"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    scale, digits = UNITS[units]
    suite = bool(c.get("suite", True))
    paths = c.get("paths", [c["path"]] if "path" in c else [])
    if suite and not paths:
        raise ConfigError(f"{where}: a suite column needs 'path' or 'paths' (or 'suite: false')")
    return Column(str(_need(c, "name", where)), tuple(str(p) for p in paths), float(c.get("scale", scale)),
                  int(c.get("digits", digits)), suite)


def _row(r: Any, columns: tuple[Column, ...], where: str) -> Row:
    if not isinstance(r, dict):
        raise ConfigError(f"{where}: expected a mapping with 'labels' and 'paper'")
    allowed = {"labels", "paper", "reproduce", "at", "overrides", "match", "experiments", "paths", "note"}
    unknown = set(r) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    paper = list(_need(r, "paper", where))
    if len(paper) != len(columns):
        raise ConfigError(f"{where}: 'paper' has {len(paper)} value(s) for {len(columns)} column(s)")
    for v, col in zip(paper, columns):
        n = len(v) if isinstance(v, list) else 1
        want = max(len(col.paths), 1)
        if n != want:
            raise ConfigError(f"{where}: column {col.name!r} holds {want} value(s), 'paper' gives {n}")
    reproduce = bool(r.get("reproduce", True))
    if reproduce and "at" not in r:
        raise ConfigError(f"{where}: a reproducible row needs 'at' (its results.json path), or 'reproduce: false'")
    paths = r.get("paths")
    if paths is not None and len(paths) != len(columns):
        raise ConfigError(f"{where}: 'paths' has {len(paths)} entries for {len(columns)} column(s)")
    overrides = tuple(str(o) for o in r.get("overrides") or [])
    for o in overrides:
        parse_override(o)
    return Row(tuple(str(x) for x in _need(r, "labels", where)),
               tuple(tuple(v) if isinstance(v, list) else v for v in paper), reproduce, str(r.get("at", "")),
               overrides, dict(r.get("match") or {}), tuple(r.get("experiments") or ()),
               None if paths is None else tuple(paths), r.get("note"))


def load_paper_tables(path: str | Path) -> PaperTables:
    """Read and check a ``paper_tables.yaml``; a malformed file is a ConfigError naming the file and entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such paper tables file")
    data = yaml.safe_load(path.read_text()) or {}
    tables: dict[str, PaperTable] = {}
    for key, t in (_need(data, "tables", str(path)) or {}).items():
        where = f"{path}: tables.{key}"
        units = str(t.get("units", "fraction"))
        if units not in UNITS:
            raise ConfigError(f"{where}.units={units!r}; expected one of {list(UNITS)}")
        labels = tuple(str(x) for x in _need(t, "labels", where))
        columns = tuple(_column(c, units, f"{where}.columns[{i}]") for i, c in enumerate(_need(t, "columns", where)))
        rows = tuple(_row(r, columns, f"{where}.rows[{i}]") for i, r in enumerate(_need(t, "rows", where)))
        for i, r in enumerate(rows):
            if len(r.labels) != len(labels):
                raise ConfigError(f"{where}.rows[{i}]: {len(r.labels)} label(s) for the label columns {list(labels)}")
        exps = dict(_need(t, "experiments", where))
        tables[str(key)] = PaperTable(str(key), str(_need(t, "heading", where)), str(t.get("caption", "")),
                                      str(t.get("dataset", "")), units, {str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v]))
                                       for k, v in exps.items()},
                                      str(t.get("synthetic_world", "the synthetic world")), labels, columns, rows,
                                      t.get("suite_note"))
    return PaperTables(path, str(data.get("paper", path.parent.name)), str(data.get("source", "")), tables)
