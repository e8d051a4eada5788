"""vreid_lightning: a PyTorch Lightning + Hydra experiment suite for vehicle re-identification."""

__version__ = "0.1.0"
