"""Optimisation helpers: learning-rate schedules stepped per iteration."""

from vreid_lightning.optim.schedulers import IterationStepLR, scheduler_interval

__all__ = ["IterationStepLR", "scheduler_interval"]
