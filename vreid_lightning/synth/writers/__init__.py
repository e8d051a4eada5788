"""One writer per real dataset layout (datasets.md): VeRi-776, VehicleID, CityFlow, CompCars, VERI-Wild (and 2.0)."""

from __future__ import annotations

from .cityflow import write_cityflow
from .compcars import write_compcars
from .custom import write_custom
from .vehicleid import write_vehicleid
from .veri import write_veri
from .veriwild import write_veriwild, write_veriwild2

__all__ = ["write_veri", "write_vehicleid", "write_cityflow", "write_compcars", "write_custom", "write_veriwild",
           "write_veriwild2"]
