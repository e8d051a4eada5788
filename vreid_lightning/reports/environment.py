"""The environment of the runs a table reads: from each results.json's ``provenance`` block.

A number without its environment cannot be compared: the same seed gives different metrics under
different library builds. ``environment_lines(runs)`` says which library versions, git commits,
devices and synthetic-world generator versions the runs came from, and warns when the runs of one
table differ in them. Older results.json files without provenance are counted, not refused; when no
run carries provenance it returns nothing (the table reads as before provenance existed).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from vreid_lightning.reports.runs import Run, lookup, MISSING

__all__ = ["environment_lines", "environment_of", "ENV_KEYS"]

# (label, provenance path): what identifies a run's environment
ENV_KEYS: tuple[tuple[str, str], ...] = (
    ("torch", "versions.torch"), ("torchvision", "versions.torchvision"), ("lightning", "versions.lightning"),
    ("numpy", "versions.numpy"), ("timm", "versions.timm"), ("python", "versions.python"),
    ("device", "host.device"), ("git", "git.commit"), ("world generator", "dataset.synthetic.generator_version"),
)


def environment_of(run: Run) -> dict[str, str]:
    """The run's environment as label -> value (only the entries its provenance has)."""
    prov = run.provenance
    if prov is None:
        return {}
    out: dict[str, str] = {}
    for label, path in ENV_KEYS:
        v = lookup(prov, path)
        if v is MISSING or v is None:
            continue
        s = str(v)
        if label == "git":
            s = s[:10] + ("+dirty" if lookup(prov, "git.dirty") is True else "")
        out[label] = s
    return out


def environment_lines(runs: list[Run]) -> list[str]:
    """Markdown paragraphs: the environment of the runs, and a warning when they differ."""
    envs = [environment_of(r) for r in runs]
    with_prov = [e for e, r in zip(envs, runs) if r.provenance is not None]
    if not with_prov:
        return []
    values: dict[str, Counter[str]] = {}
    for env in with_prov:
        for label, v in env.items():
            values.setdefault(label, Counter())[v] += 1
    same = [f"{label} {next(iter(c))}" for label, c in values.items() if len(c) == 1]
    differ = {label: c for label, c in values.items() if len(c) > 1}
    lines = [f"Environment of the runs: {', '.join(same)}." if same else "Environment of the runs:"]
    missing = len(runs) - len(with_prov)
    if differ:
        parts = [f"{label} " + " / ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in c.most_common())
                 for label, c in differ.items()]
        lines.append("**The runs come from different environments** (compare with care): " + "; ".join(parts) + ".")
    if missing:
        lines.append(f"{missing} of {len(runs)} runs carry no provenance (results.json written before it existed).")
    return [" ".join(lines)]
