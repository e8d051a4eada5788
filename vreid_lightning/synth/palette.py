"""Attribute tables of the synthetic world: VeRi colours and types, their traffic frequencies, and
the mappings to the VehicleID and CompCars label spaces.

The world's native labels are VeRi's (1-based ids, as in ``train_label.xml``). Frequencies are skewed
like real urban traffic: sedans and SUVs, and white/black/gray vehicles dominate, so most vehicles
share their (type, colour) pair with many others and only local marks tell them apart.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "VERI_COLOURS", "VERI_TYPES", "COLOUR_RGB", "COLOUR_WEIGHTS", "TYPE_WEIGHTS", "COLOUR_BY_TYPE",
    "type_colour_cells",
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

# Traffic frequencies. Real urban traffic is concentrated: sedans and SUVs are most vehicles, and most cars
# are white, black or gray/silver, so many identities share (type, colour) and only local marks tell
# them apart (the premise of RAM sec. 1, SCAN sec. 1 and RNN-HA sec. 1). The tables are concentrated
# enough that >= 70% of identities share their (type, colour) with >= 3 others from the default 100
# identities up (VeRi's own marginals reach that only near its full 776 ids); see docs/datasets.md.
TYPE_WEIGHTS: dict[int, float] = {
    1: 0.57, 2: 0.25, 3: 0.04, 4: 0.035, 5: 0.035, 6: 0.015, 7: 0.015, 8: 0.025, 9: 0.015,
}
# Passenger-car paint (sedan, SUV, hatchback, MPV, pickup, estate): white/black/gray ~ 89%.
COLOUR_WEIGHTS: dict[int, float] = {
    1: 0.005, 2: 0.0025, 3: 0.0025, 4: 0.19, 5: 0.035, 6: 0.03, 7: 0.43, 8: 0.01, 9: 0.015, 10: 0.27,
}
# Colour given type: commercial vehicles have their own palettes (white vans, blue trucks, liveried buses).
COLOUR_BY_TYPE: dict[int, dict[int, float]] = {
    **{t: COLOUR_WEIGHTS for t in (1, 2, 4, 5, 6, 9)},
    3: {7: 0.60, 4: 0.15, 6: 0.10, 10: 0.07, 5: 0.04, 1: 0.02, 3: 0.02},
    7: {7: 0.30, 1: 0.20, 3: 0.20, 6: 0.15, 5: 0.10, 2: 0.05},
    8: {6: 0.35, 7: 0.25, 5: 0.15, 1: 0.10, 3: 0.08, 2: 0.04, 4: 0.03},
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


def type_colour_cells(types: tuple[int, ...] | list[int] | None = None) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The joint (type, colour) traffic distribution as cells sorted by weight (largest first).

    Args:
        types: restrict to these VeRi types (renormalised); all types if None.

    Returns:
        (cells, cumulative): ``cells[k] = (type_id, colour_id)``; ``cumulative`` the running sum of
        their probabilities, ending at exactly 1.
    """
    keys = sorted(types) if types else sorted(TYPE_WEIGHTS)
    unknown = [t for t in keys if t not in TYPE_WEIGHTS]
    if unknown:
        raise ValueError(f"unknown VeRi type id(s) {unknown}, expected 1-9")
    weights = {}
    for t in keys:
        table = COLOUR_BY_TYPE[t]
        total = sum(table.values())
        for c, w in table.items():
            weights[(t, c)] = TYPE_WEIGHTS[t] * w / total
    cells = sorted(weights, key=lambda k: (-weights[k], k))
    cumulative = np.cumsum([weights[k] for k in cells])
    cumulative /= cumulative[-1]
    cumulative[-1] = 1.0
    return cells, cumulative
