"""Quiet, single logs: every line once, no warning that the suite's own defaults cause.

:func:`setup_run_logging` (called by ``python -m vreid_lightning`` once Hydra has configured logging)
stops Lightning's own stderr handler (Lightning adds one when it is imported before Hydra sets up the
root logger, so every INFO line came twice: ``INFO: Seed set to 0`` and ``[...][INFO] - Seed set to 0``)
and lets its records reach Hydra's handlers (console and ``<run dir>/__main__.log``).

:func:`quiet_known_warnings` drops the messages caused by the suite's own defaults or by a dependency,
each listed in :data:`SUPPRESSED` with why it does not concern the user. It is applied in every process
(the main one, and ddp_spawn's workers through :class:`~vreid_lightning.callbacks.progress.ProgressLog`).
Warnings not listed there still reach the user.
"""

from __future__ import annotations

import logging
import re
import warnings

__all__ = ["SUPPRESSED", "quiet_known_warnings", "setup_run_logging", "NoiseFilter"]

# (message regex, why it does not concern the user)
SUPPRESSED: tuple[tuple[str, str], ...] = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated",
     "a deprecation inside lightning/pytorch/utilities/_pytree.py against newer torch; nothing the user calls"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval",
     "the suite's trainer.log_every_n_steps default on a small world: callbacks/cadence.py lowers the interval "
     "to the epoch's batches at the start of training, so step metrics are logged"),
    (r".*dirpath has changed from",
     "train=false / resume= restore a checkpoint written under the run's own directory; the suite's checkpoint "
     "callbacks write where the current run says (callbacks/checkpoint.py)"),
    (r"Checkpoint directory .* exists and is not empty",
     "resume= continues in the run's own checkpoints/ folder on purpose; train=false writes none"),
    (r"It is recommended to use `self.log\(.*sync_dist=True",
     "the suite's evaluation metrics are computed once over all-gathered features (identical on every rank); "
     "train/ metrics are rank 0's by design"),
    (r"💡 Tip: ", "Lightning's advertisement for its cloud logger"),
    (r"Trainer already configured with model summary callbacks",
     "the suite's own model summary (callbacks/summary.py: without the FLOPs column that reads 0)"),
)


class NoiseFilter(logging.Filter):
    """Drops log records whose message matches :data:`SUPPRESSED`."""

    def __init__(self) -> None:
        super().__init__()
        self._patterns = [re.compile(p) for p, _ in SUPPRESSED]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p.search(msg) for p in self._patterns)


def quiet_known_warnings() -> None:
    """Ignore the warnings of :data:`SUPPRESSED` (idempotent) and filter the same messages from logs."""
    for pattern, _ in SUPPRESSED:
        warnings.filterwarnings("ignore", message=pattern)
    # a logger's filters see only its own records: filter at the handlers, where propagated ones arrive
    for name in ("", "lightning", "lightning.pytorch", "lightning.fabric"):
        for h in logging.getLogger(name).handlers:
            if not any(isinstance(f, NoiseFilter) for f in h.filters):
                h.addFilter(NoiseFilter())


def setup_run_logging() -> None:
    """One copy of each line: Lightning's records go to the root handlers Hydra configured (when it did)."""
    if logging.getLogger().handlers:  # else nobody else prints them: keep Lightning's own handler
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                if type(h) is logging.StreamHandler:
                    lg.removeHandler(h)
            lg.propagate = True
    quiet_known_warnings()
