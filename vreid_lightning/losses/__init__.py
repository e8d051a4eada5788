"""Losses: cross-entropy with label smoothing and ignore labels, batch-hard triplet, the RAM and SCAN objectives."""

from vreid_lightning.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from vreid_lightning.losses.ram import RAMLoss
from vreid_lightning.losses.scan import SCANLoss
from vreid_lightning.losses.triplet import TripletLoss, batch_hard_triplet_loss

__all__ = ["CrossEntropyLoss", "cross_entropy", "RAMLoss", "SCANLoss", "TripletLoss", "batch_hard_triplet_loss"]
