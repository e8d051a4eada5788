"""The model summary at the start of a fit, without the FLOPs column Lightning fills with zeros.

Lightning's default summary counts FLOPs only for a module with an ``example_input_array``; the
suite's modules have none (their inputs depend on the data config), so it printed a FLOPs column of
zeros and ``Total FLOPs: 0``. This summary is Lightning's table (name, type, parameters, mode) and
parameter totals, without FLOPs, written through the log (console and ``__main__.log``).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size, get_human_readable_count

__all__ = ["ModelSummaryNoFlops"]

log = logging.getLogger("vreid_lightning.summary")


class ModelSummaryNoFlops(ModelSummary):
    """Lightning's model summary minus the FLOPs column and total (``max_depth`` as in Lightning's)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        summary = self._summary(trainer, pl_module)
        cols = [(name, values) for name, values in summary._get_summary_data() if name != "FLOPs"]
        widths = [max([len(name), *(len(str(v)) for v in values)]) for name, values in cols]
        lines = [" | ".join(f"{name:<{w}}" for (name, _), w in zip(cols, widths))]
        lines.append("-" * len(lines[0]))
        for i in range(len(cols[0][1]) if cols else 0):
            lines.append(" | ".join(f"{str(values[i]):<{w}}" for (_, values), w in zip(cols, widths)))
        total, trainable = summary.total_parameters, summary.trainable_parameters
        lines.append(f"{get_human_readable_count(trainable)} trainable params, "
                     f"{get_human_readable_count(total - trainable)} non-trainable, "
                     f"{get_formatted_model_size(summary.model_size)} MB")
        log.info("model summary:\n%s", "\n".join(lines))

    @staticmethod
    def summarize(*args: Any, **kwargs: Any) -> None:  # on_fit_start writes the table itself
        return None
