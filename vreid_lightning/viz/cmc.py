"""CMC curves: the probability that a true match is within the top k, for k = 1..K (PNG).

``eval_set_cmc_curves(features, eval_set, metric)`` computes the curves of a test the way the evaluator
scores it (the same exact chunked ranking, ``evaluation.features.evaluate_features``): one curve for
an image-to-image protocol (junk removed), one per test size for VehicleID (the mean over the
protocol's repeated random galleries). ``save_cmc_curve`` draws them; the results writer calls
``save_test_cmc`` after every test, so each run (or stage) directory holds ``cmc.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

__all__ = ["eval_set_cmc_curves", "save_cmc_curve", "save_test_cmc"]


def eval_set_cmc_curves(feats: torch.Tensor, eval_set: Any, metric: str, max_rank: int = 50) -> dict[str, np.ndarray]:
    """CMC curves (fractions, rank 1..K) of features whose rows are ``eval_set.split``'s."""
    from vreid_lightning.evaluation.protocol_registry import get_protocol

    return get_protocol(eval_set).cmc_curves(feats, eval_set, metric, max_rank)


def save_cmc_curve(curves: Mapping[str, Sequence[float]], path: str | Path, title: str = "CMC") -> Path:
    """Draw CMC curves (rank 1..K, fractions) as a PNG; rank-1/5/10 of each curve in its legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("save_cmc_curve: no curve to draw")
    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=110)
    for name, c in curves.items():
        c = np.asarray(c, dtype=np.float64)
        ranks = np.arange(1, len(c) + 1)
        marks = ", ".join(f"R{k} {100 * c[k - 1]:.1f}" for k in (1, 5, 10) if k <= len(c))
        ax.plot(ranks, 100 * c, marker="o" if len(c) <= 20 else None, markersize=3, label=f"{name} ({marks})")
    ax.set_xlabel("rank k")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100.5)
    ax.set_xlim(1, max(len(np.asarray(c)) for c in curves.values()))
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_test_cmc(feats: torch.Tensor, eval_set: Any, metric: str, path: str | Path, title: str = "CMC (test)",
                  max_rank: int = 50) -> Path:
    """The test's CMC curve(s) as ``path`` (PNG)."""
    return save_cmc_curve(eval_set_cmc_curves(feats, eval_set, metric, max_rank), path, title)
