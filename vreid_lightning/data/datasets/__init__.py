"""Parsers of the real dataset layouts (VeRi-776, VehicleID, CityFlow, CompCars, VERI-Wild) and the VehicleNet merge.

Every parser returns a :class:`ReIDDataset`; layout problems raise :class:`DatasetFormatError` naming the
file and line. ``python -m vreid_lightning.data.inspect --dataset NAME --root DIR`` prints a summary.
"""

from __future__ import annotations

from .base import MISSING, DatasetFormatError, ReIDDataset, Split
from .cityflow import CityFlowDataset, load_cityflow
from .compcars import load_compcars
from .custom import load_custom
from .merge import VEHICLENET_OPTIONS, load_vehiclenet, merge_datasets
from .registry import ALIASES, DATASETS, canonical_name, dataset_options, load_dataset
from .vehicleid import load_vehicleid
from .veri import load_veri
from .veriwild import load_veriwild

__all__ = [
    "MISSING",
    "DatasetFormatError",
    "ReIDDataset",
    "Split",
    "CityFlowDataset",
    "DATASETS",
    "ALIASES",
    "VEHICLENET_OPTIONS",
    "canonical_name",
    "dataset_options",
    "load_dataset",
    "load_veri",
    "load_veriwild",
    "load_vehicleid",
    "load_cityflow",
    "load_compcars",
    "load_custom",
    "merge_datasets",
    "load_vehiclenet",
]
