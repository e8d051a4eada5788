"""What a sweep will cost, said before it starts: its job count and each job's measured cost.

The measured costs are data (``experiments/costs.yaml``: wall time and disk of one run of each
experiment's main command, where recorded, with the cores, date, commit and source). The
:class:`SweepCost` Hydra callback (``conf/hydra/default.yaml``) prints, at the start of every
multirun, the number of jobs (the basic sweeper's grid; an Optuna sweep's ``n_trials``), each job's
experiment and recorded cost, and the total; a job that changes the budget (``trainer.*``,
``stages.*``, ``run_stages``, ``data.max_train_images``) is flagged, since the recorded figure is for the experiment's own budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["Cost", "COSTS_FILE", "load_costs", "sweep_jobs", "sweep_cost_lines", "SweepCost", "format_duration",
           "costs_table"]

log = logging.getLogger(__name__)
COSTS_FILE = Path(__file__).resolve().parents[2] / "experiments" / "costs.yaml"
_BUDGET_PREFIXES = ("trainer.", "stages.", "data.max_train_images", "run_stages")


@dataclass(frozen=True)
class Cost:
    """One experiment's recorded cost (None: not recorded)."""

    experiment: str
    wall_s: float | None
    train_s: float | None
    disk_mb: float | None
    cores: int | None
    measured: str
    commit: str | None
    source: str

    def describe(self) -> str:
        parts = []
        if self.wall_s is not None:
            parts.append(f"{format_duration(self.wall_s)} wall")
        elif self.train_s is not None:
            parts.append(f"{format_duration(self.train_s)} training (wall time not recorded)")
        parts.append(f"{self.disk_mb:.0f} MB disk" if self.disk_mb is not None else "disk not recorded")
        where = f"{self.cores} cores, " if self.cores else ""
        at = f", commit {self.commit}" if self.commit else ""
        return f"{', '.join(parts)} ({where}{self.measured}{at})"


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def load_costs(path: str | Path = COSTS_FILE) -> dict[str, Cost]:
    """The recorded costs by experiment name (empty when the file is absent)."""
    p = Path(path)
    if not p.is_file():
        return {}
    data = (yaml.safe_load(p.read_text()) or {}).get("experiments") or {}
    return {str(k): Cost(str(k), v.get("wall_s"), v.get("train_s"), v.get("disk_mb"), v.get("cores"),
                         str(v.get("measured", "")), v.get("commit"), str(v.get("source", "")))
            for k, v in data.items()}


def sweep_jobs(config: DictConfig) -> list[list[str]] | int | None:
    """The jobs of a multirun: each job's overrides (basic sweeper), the trial count (other sweepers with
    ``n_trials``), or None when unknown."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    if "BasicSweeper" not in target:
        n = sweeper.get("n_trials")
        return int(n) if n is not None else None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    node = sweeper.get("params")
    params = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(args)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def _job_experiment(job: list[str], default: str) -> str:
    for o in job:
        key, _, value = o.partition("=")
        if key.lstrip("+~") == "experiment":
            return value
    return default


def sweep_cost_lines(config: DictConfig, costs: dict[str, Cost] | None = None) -> list[str]:
    """The lines printed before a multirun starts."""
    costs = load_costs() if costs is None else costs
    jobs = sweep_jobs(config)
    default = str(config.get("experiment_name", "default"))
    if jobs is None:
        return ["Sweep: the sweeper does not say how many jobs it will launch."]
    if isinstance(jobs, int):
        cost = costs.get(default)
        each = cost.describe() if cost else "no recorded cost"
        lines = [f"Sweep: {jobs} trials of {default}; recorded cost per trial: {each}."]
        if cost and cost.wall_s:
            lines.append(f"Total at that cost: about {format_duration(jobs * cost.wall_s)} run one after another.")
        return lines
    lines = [f"Sweep: {len(jobs)} jobs (recorded costs: experiments/costs.yaml, README 'Cost of a run'):"]
    total_s = total_mb = 0.0
    unknown = 0
    for i, job in enumerate(jobs):
        exp = _job_experiment(job, default)
        cost = costs.get(exp)
        budget = sorted({o.split("=", 1)[0].lstrip("+~") for o in job
                         if o.split("=", 1)[0].lstrip("+~").startswith(_BUDGET_PREFIXES)})
        note = f"; this job changes {', '.join(budget[:4])}{' ...' if len(budget) > 4 else ''} (cost recorded " \
               f"at the experiment's own budget)" if budget and cost else ""
        lines.append(f"  #{i} {exp}: {cost.describe() if cost else 'no recorded cost'}{note}")
        if cost and cost.wall_s is not None:
            total_s += cost.wall_s
        else:
            unknown += 1
        total_mb += cost.disk_mb if cost and cost.disk_mb is not None else 0.0
    total = f"Total recorded: {format_duration(total_s)} wall one after another"
    total += f", {total_mb / 1024:.1f} GB disk" if total_mb else ""
    total += f" ({unknown} job(s) without a recorded wall time not counted)." if unknown else "."
    lines.append(total)
    return lines


def costs_table(costs: dict[str, Cost] | None = None) -> str:
    """The README table of the recorded costs."""
    costs = load_costs() if costs is None else costs
    lines = ["| experiment | wall time | disk | cores | measured | commit | source |", "|---|---|---|---|---|---|---|"]
    for c in costs.values():
        wall = format_duration(c.wall_s) if c.wall_s is not None else \
            (f"not recorded (training {format_duration(c.train_s)})" if c.train_s is not None else "not recorded")
        disk = f"{c.disk_mb:.0f} MB" if c.disk_mb is not None else "not recorded"
        lines.append(f"| `{c.experiment}` | {wall} | {disk} | {c.cores or '-'} | {c.measured} | "
                     f"{c.commit or 'not recorded'} | {c.source} |")
    return "\n".join(lines)


class SweepCost(Callback):
    """Hydra callback: before a multirun starts, print its job count and each job's recorded cost."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            lines = sweep_cost_lines(config)
        except Exception as e:  # the estimate never stops a sweep
            lines = [f"Sweep: job count not computed ({type(e).__name__}: {e})."]
        print("\n".join(lines), flush=True)
