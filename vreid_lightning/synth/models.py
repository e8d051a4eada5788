"""The vehicle model catalogue: 3D shape templates grouped by VeRi type.

A model is a list of convex parts (hexahedra with a rectangular bottom and top, so slanted
windshields and tapered cabins are possible) plus style choices (lights, grille, pillars, hubs).
The catalogue is fixed (seeded by a constant, not by the world seed), so model ``k`` has the same
shape in every world; model ids double as VehicleID model labels and CompCars model ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .palette import VERI_TYPES

__all__ = ["PartSpec", "VehicleModel", "MODELS_PER_TYPE", "N_MAKES", "build_catalogue", "CATALOGUE"]

# Number of models per VeRi type (48 in all); sedans and SUVs have the most variety.
MODELS_PER_TYPE: dict[int, int] = {1: 12, 2: 9, 3: 4, 4: 5, 5: 5, 6: 3, 7: 3, 8: 4, 9: 3}
N_MAKES = 14
_CATALOGUE_SEED = 20180723


@dataclass(frozen=True)
class PartSpec:
    """A convex hexahedron in vehicle coordinates (x forward, y left, z up; metres).

    The bottom rectangle spans ``x in [xr0, xf0]``, ``|y| <= w0`` at height ``z0``; the top rectangle
    ``x in [xr1, xf1]``, ``|y| <= w1`` at ``z1``. ``roles`` names what each face shows
    (keys ``front rear left right top``; values such as ``nose``, ``windshield``, ``side``).
    """

    name: str
    xr0: float
    xf0: float
    w0: float
    z0: float
    xr1: float
    xf1: float
    w1: float
    z1: float
    roles: dict[str, str] = field(default_factory=dict)

    def vertices(self) -> np.ndarray:
        """(8, 3) vertices: bottom rear-right, front-right, front-left, rear-left, then the top."""
        return np.array([
            (self.xr0, -self.w0, self.z0), (self.xf0, -self.w0, self.z0),
            (self.xf0, self.w0, self.z0), (self.xr0, self.w0, self.z0),
            (self.xr1, -self.w1, self.z1), (self.xf1, -self.w1, self.z1),
            (self.xf1, self.w1, self.z1), (self.xr1, self.w1, self.z1),
        ], dtype=np.float64)


@dataclass(frozen=True)
class VehicleModel:
    """One vehicle model (a make's model): shape, style and catalogue labels."""

    model_id: int            # 0-based; VehicleID model label; CompCars model id is model_id + 1
    type_id: int             # VeRi type id 1-9
    make_id: int             # 1-based CompCars make id
    years: tuple[int, ...]   # production years (CompCars <year> folders)
    popularity: float        # relative frequency within its type
    length: float
    width: float
    height: float
    wheel_radius: float
    axles: tuple[float, ...]  # wheel centre x positions
    parts: tuple[PartSpec, ...]
    headlight_style: int     # 0 rectangle, 1 slanted, 2 slim strip, 3 round pair
    grille_style: int        # 0 wide, 1 tall narrow, 2 split, 3 barred
    taillight_style: int     # 0 corner blocks, 1 full-width strip, 2 vertical bars
    windows: int             # side window panes per side
    hub_grey: int            # wheel hub grey level
    bumper_dark: bool        # black plastic bumpers
    specs: tuple[int, float, int, int]  # CompCars attributes: max speed, displacement, doors, seats

    @property
    def name(self) -> str:
        """A catalogue name such as ``make03-sedan-07``."""
        return f"make{self.make_id:02d}-{self.type_name}-{self.model_id:02d}"

    @property
    def type_name(self) -> str:
        """The VeRi type name (``sedan``, ``suv`` ...)."""
        return VERI_TYPES[self.type_id]


def _car(L: float, W: float, z0: float, z1: float, cab_r: float,
         cab_f: float, roof_r: float, roof_f: float, roof_z: float, taper: float) -> tuple[PartSpec, ...]:
    """Lower body box plus a cabin on top (sedan-like silhouettes)."""
    hw = W / 2
    body = PartSpec("body", -L / 2, L / 2, hw, z0, -L / 2, L / 2, hw, z1,
                    {"front": "nose", "rear": "tail", "left": "side", "right": "side", "top": "paint"})
    cabin = PartSpec("cabin", cab_r, cab_f, hw * 0.96, z1, roof_r, roof_f, hw * taper, roof_z,
                     {"front": "windshield", "rear": "rearglass", "left": "sideglass", "right": "sideglass",
                      "top": "roof"})
    return body, cabin


def _jit(rng: np.random.Generator, v: float, rel: float = 0.05) -> float:
    return float(v * (1.0 + rel * rng.uniform(-1, 1)))


def _make_model(model_id: int, type_id: int, rank: int, rng: np.random.Generator) -> VehicleModel:
    j = lambda v, rel=0.05: _jit(rng, v, rel)  # noqa: E731
    if type_id in (1, 4, 9, 2, 5, 6):
        # (L, W, z0, z1, cabin rear/front as fraction of L/2, roof rear/front fraction, roof z)
        base = {
            1: (4.65, 1.80, 0.30, 0.92, -0.62, 0.38, -0.36, 0.08, 1.44),   # sedan: separate trunk
            4: (4.05, 1.74, 0.30, 0.92, -0.95, 0.30, -0.88, -0.05, 1.48),  # hatchback: short, steep rear
            9: (4.75, 1.80, 0.30, 0.93, -0.95, 0.36, -0.92, 0.07, 1.47),   # estate: long roof to rear
            2: (4.60, 1.88, 0.42, 1.12, -0.93, 0.34, -0.88, 0.06, 1.74),   # suv: tall, boxy
            5: (4.80, 1.84, 0.34, 1.00, -0.95, 0.52, -0.92, 0.22, 1.76),   # mpv: long cabin, short nose
            6: (5.25, 1.86, 0.46, 1.14, -0.20, 0.34, -0.18, 0.14, 1.84),   # pickup: cab + open bed
        }[type_id]
        L, W, z0, z1, cr, cf, rr, rf, rz = base
        L, W, z1, rz = j(L, 0.06), j(W, 0.03), j(z1, 0.05), j(rz, 0.04)
        cr, cf, rr, rf = j(cr, 0.04), j(cf, 0.08), j(rr, 0.04), rf + rng.uniform(-0.06, 0.06)
        rr = max(rr, cr + 0.02) if type_id in (4, 9, 2, 5) else rr
        parts = _car(L, W, z0, z1, cr * L / 2, cf * L / 2, rr * L / 2, rf * L / 2, rz, j(0.80, 0.06))
        if type_id == 6:  # open bed on the body top behind the cab
            b = parts[0]
            parts = (PartSpec(b.name, b.xr0, b.xf0, b.w0, b.z0, b.xr1, b.xf1, b.w1, b.z1,
                              {**b.roles, "top": "bed"}), parts[1])
        r = j({1: 0.31, 4: 0.30, 9: 0.31, 2: 0.37, 5: 0.33, 6: 0.38}[type_id], 0.06)
        wb = j({1: 0.60, 4: 0.60, 9: 0.60, 2: 0.60, 5: 0.62, 6: 0.64}[type_id], 0.04) * L / 2
        axles = (wb, -wb)
        height = rz
        windows = {1: 2, 4: 2, 9: 3, 2: 3, 5: 3, 6: 1}[type_id]
        if type_id == 6:
            windows = int(rng.integers(1, 3))
    elif type_id == 3:  # van: box with a short sloped nose
        L, W, H = j(4.90, 0.05), j(1.92, 0.03), j(2.05, 0.05)
        z0, z1 = 0.34, j(1.02, 0.04)
        hw = W / 2
        nose = j(0.78, 0.1)
        body = PartSpec("body", -L / 2, L / 2, hw, z0, -L / 2, L / 2, hw, z1,
                        {"front": "nose", "rear": "tail", "left": "side", "right": "side", "top": "paint"})
        cabin = PartSpec("cabin", -L / 2, L / 2 - nose * 0.5, hw * 0.98, z1, -L / 2 + 0.02, L / 2 - nose,
                         hw * 0.93, H, {"front": "windshield", "rear": "rearglass", "left": "sideglass",
                                        "right": "sideglass", "top": "roof"})
        parts = (body, cabin)
        r, axles, height, windows = j(0.33), (j(0.62) * L / 2, -j(0.66) * L / 2), H, 3
    elif type_id == 7:  # bus: a long box with a band of windows
        L, W, H = j(10.6, 0.1), j(2.50, 0.02), j(3.10, 0.05)
        z0, z1 = 0.36, j(1.25, 0.05)
        hw = W / 2
        body = PartSpec("body", -L / 2, L / 2, hw, z0, -L / 2, L / 2, hw, z1,
                        {"front": "nose", "rear": "tail", "left": "side", "right": "side", "top": "paint"})
        cabin = PartSpec("cabin", -L / 2, L / 2, hw, z1, -L / 2, L / 2 - j(0.08, 0.3), hw, H,
                         {"front": "windshield", "rear": "rearglass", "left": "sideglass", "right": "sideglass",
                          "top": "roof"})
        parts = (body, cabin)
        r, axles, height, windows = j(0.50), (L / 2 - 2.4, -L / 2 + 2.9), H, int(rng.integers(5, 8))
    elif type_id == 8:  # truck: cab (lower + glass upper), chassis, cargo box
        L, W = j(7.4, 0.1), j(2.40, 0.03)
        hw = W / 2
        cab_len, box_h = j(1.75, 0.06), j(3.25, 0.06)
        xf = L / 2
        xc = xf - cab_len
        cab_low = PartSpec("cablow", xc, xf, hw, 0.55, xc, xf, hw, 1.60,
                           {"front": "nose", "rear": "paint", "left": "side", "right": "side", "top": "paint"})
        slope = j(0.12, 0.4)
        cab_up = PartSpec("cabup", xc, xf, hw * 0.98, 1.60, xc, xf - slope, hw * 0.94, j(2.85, 0.05),
                          {"front": "windshield", "rear": "paint", "left": "sideglass", "right": "sideglass",
                           "top": "roof"})
        gap = 0.12
        cargo = PartSpec("cargo", -L / 2, xc - gap, hw * 1.0, 0.95, -L / 2, xc - gap, hw * 1.0, box_h,
                         {"front": "paint", "rear": "tail", "left": "side", "right": "side", "top": "paint"})
        chassis = PartSpec("chassis", -L / 2 + 0.3, xc - gap, hw * 0.7, 0.50, -L / 2 + 0.3, xc - gap,
                           hw * 0.7, 0.95, {"front": "dark", "rear": "dark", "left": "dark", "right": "dark",
                                            "top": "dark"})
        parts = (cab_low, cab_up, chassis, cargo)
        r, height, windows = j(0.50), box_h, 1
        axles = (xf - cab_len * 0.5, -L / 2 + 1.6, -L / 2 + 2.75)
    else:
        raise ValueError(f"unknown VeRi type id {type_id}, expected 1-9")
    speed = int(rng.integers(150, 260)) if type_id not in (7, 8) else int(rng.integers(90, 120))
    disp = round(float(rng.uniform(1.2, 4.0)), 1)
    doors = {1: 4, 4: 5, 9: 5, 2: 5, 5: 5, 6: 4, 3: 4, 7: 2, 8: 2}[type_id]
    seats = {1: 5, 4: 5, 9: 5, 2: 5, 5: 7, 6: 5, 3: 9, 7: 40, 8: 3}[type_id]
    first = int(rng.integers(2005, 2015))
    years = tuple(range(first, first + int(rng.integers(1, 4))))
    return VehicleModel(
        model_id=model_id, type_id=type_id, make_id=int(rng.integers(1, N_MAKES + 1)), years=years,
        popularity=float(1.0 / (rank + 1) ** 0.8), length=float(L), width=float(W), height=float(height),
        wheel_radius=float(r),
        axles=tuple(float(a) for a in axles), parts=parts,
        headlight_style=int(rng.integers(0, 4)), grille_style=int(rng.integers(0, 4)),
        taillight_style=int(rng.integers(0, 3)), windows=windows, hub_grey=int(rng.integers(60, 200)),
        bumper_dark=bool(rng.random() < 0.35), specs=(speed, disp, doors, seats),
    )


def build_catalogue() -> tuple[VehicleModel, ...]:
    """The fixed model catalogue, ordered by type then rank (model ids 0..47)."""
    models: list[VehicleModel] = []
    for type_id, n in MODELS_PER_TYPE.items():
        for rank in range(n):
            rng = np.random.default_rng([_CATALOGUE_SEED, len(models)])
            models.append(_make_model(len(models), type_id, rank, rng))
    return tuple(models)


CATALOGUE: tuple[VehicleModel, ...] = build_catalogue()
