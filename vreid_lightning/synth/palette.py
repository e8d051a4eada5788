"""Attribute tables of the synthetic world: VeRi colours and types, their traffic frequencies, and
the mappings to the VehicleID and CompCars label spaces.

The world's native labels are VeRi's (1-based ids, as in ``train_label.xml``). Frequencies are skewed
like real urban traffic: sedans and SUVs, and white/black/gray vehicles dominate, so most vehicles
share their (type, colour) pair with many others and only local marks tell them apart.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "VERI_COLOURS", "VERI_TYPES", "COLOUR_RGB", "COLOUR_WEIGHTS", "TYPE_WEIGHTS",
    "VEHICLEID_COLOURS", "veri_to_vehicleid_colour", "COMPCARS_TYPES", "VERI_TO_COMPCARS_TYPE",
    "MARK_RGB", "PASSENGER_TYPES",
]

# VeRi-776 colour and type tables (datasets.md section 1), 1-based ids.
VERI_COLOURS: dict[int, str] = {
    1: "yellow", 2: "orange", 3: "green", 4: "gray", 5: "red",
    6: "blue", 7: "white", 8: "golden", 9: "brown", 10: "black",
}
VERI_TYPES: dict[int, str] = {
    1: "sedan", 2: "suv", 3: "van", 4: "hatchback", 5: "mpv",
    6: "pickup", 7: "bus", 8: "truck", 9: "estate",
}

# Paint colour per VeRi colour id (sRGB, before per-vehicle shade and illumination).
COLOUR_RGB: dict[int, tuple[int, int, int]] = {
    1: (222, 190, 38), 2: (230, 112, 28), 3: (38, 122, 62), 4: (124, 127, 131), 5: (176, 28, 30),
    6: (32, 68, 158), 7: (232, 233, 230), 8: (196, 160, 92), 9: (106, 68, 44), 10: (24, 24, 27),
}

# Traffic frequencies (sum to 1). White/black/gray dominate as in VeRi and VehicleID statistics.
COLOUR_WEIGHTS: dict[int, float] = {
    1: 0.03, 2: 0.01, 3: 0.02, 4: 0.18, 5: 0.09, 6: 0.08, 7: 0.31, 8: 0.03, 9: 0.04, 10: 0.21,
}
TYPE_WEIGHTS: dict[int, float] = {
    1: 0.47, 2: 0.18, 3: 0.06, 4: 0.07, 5: 0.06, 6: 0.03, 7: 0.04, 8: 0.06, 9: 0.03,
}
PASSENGER_TYPES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 9)  # no bus/truck (CompCars web-nature is cars)

# VehicleID colour ids (datasets.md section 2): 0 black, 1 blue, 2 gray, 3 red, 4 silver, 5 white, 6 yellow.
VEHICLEID_COLOURS: dict[int, str] = {0: "black", 1: "blue", 2: "gray", 3: "red", 4: "silver", 5: "white", 6: "yellow"}


def veri_to_vehicleid_colour(colour_id: int, shade: float) -> int:
    """VehicleID colour id for a VeRi colour, or -1 when VehicleID has no such colour.

    Light grays (``shade > 1``) are labelled silver, as VehicleID annotators did.
    """
    table = {10: 0, 6: 1, 5: 3, 7: 5, 1: 6, 2: 3}
    if colour_id == 4:
        return 4 if shade > 1.0 else 2
    return table.get(colour_id, -1)


# CompCars car_type.mat list (1-based, datasets.md section 4) and the VeRi -> CompCars type map
# (0 = unknown, as in attributes.txt).
COMPCARS_TYPES: tuple[str, ...] = (
    "MPV", "SUV", "sedan", "hatchback", "minibus", "fastback", "estate", "pickup",
    "hardtop convertible", "sports", "crossover", "convertible",
)
VERI_TO_COMPCARS_TYPE: dict[int, int] = {1: 3, 2: 2, 3: 5, 4: 4, 5: 1, 6: 8, 7: 0, 8: 0, 9: 7}

# High-contrast mark (sticker/decal) colours.
MARK_RGB: np.ndarray = np.array([
    (250, 250, 246), (255, 214, 0), (232, 28, 36), (30, 200, 72), (0, 196, 232),
    (222, 40, 200), (255, 132, 0), (12, 12, 14), (96, 168, 255),
], dtype=np.float32)
