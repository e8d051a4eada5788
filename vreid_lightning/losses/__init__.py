"""Losses: cross-entropy with label smoothing and ignore labels, the RAM objective."""

from vreid_lightning.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from vreid_lightning.losses.ram import RAMLoss

__all__ = ["CrossEntropyLoss", "cross_entropy", "RAMLoss"]
