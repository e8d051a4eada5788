"""Optimisation helpers: learning-rate schedules stepped per iteration."""

from vreid_lightning.optim.param_groups import multiplier_groups
from vreid_lightning.optim.schedulers import IterationStepLR, scheduler_interval

__all__ = ["IterationStepLR", "multiplier_groups", "scheduler_interval"]
