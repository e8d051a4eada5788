"""Plain functions on evaluation sets: restricting one to the rows extracted, and picking display images."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["restrict_eval_set", "one_image_per_identity"]


def restrict_eval_set(eval_set: Any, rows: np.ndarray) -> Any:
    """The eval set limited to ``rows`` (sorted, unique): renumbered, groups intersected.

    Used when an evaluation loop was cut short (``fast_dev_run``, ``limit_*_batches``).
    """
    from vreid_lightning.data.datamodule import EvalSet

    remap = np.full(len(eval_set.split), -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    groups = {k: remap[v][remap[v] >= 0] for k, v in eval_set.groups.items()}
    return EvalSet(eval_set.split.subset(rows), eval_set.protocol, groups, eval_set.options)


def one_image_per_identity(eval_set: Any, n: int | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of the first image of each identity, in row order, at most ``n`` of them.

    Args:
        eval_set: the evaluation set.
        n: how many identities (None: all).
        rows: the candidate rows (default: the ``query`` group, or every row when there is none).
    """
    split = eval_set.split
    if rows is None:
        rows = eval_set.groups.get("query", np.arange(len(split)))
    _, first = np.unique(split.pids[rows], return_index=True)
    return rows[np.sort(first)[:n]]
