"""The synthetic vehicle world: a procedural 3D renderer that writes the real dataset layouts.

Vehicles of a few dozen models and ten colours (skewed like real traffic, so many share model and
colour) carry instance-specific local marks (windshield stickers, decals, roof items, rear stickers,
plates) fixed to their 3D bodies; cameras with their own viewpoints, light, blur, noise and
backgrounds see them along routes over time. ``generate`` writes VeRi-776, VehicleID, CityFlow
(AIC20) or CompCars trees that the real dataset parsers read unchanged.

Example:
    >>> from vreid_lightning.synth import generate
    >>> manifest = generate("veri", "/tmp/VeRi", ids=100, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

from .generate import BOXES, GENERATOR_VERSION, LAYOUTS, MANIFEST, generate
from .preview import make_preview, render_identity_views
from .render import render_view
from .schedule import View, schedule_identity, schedule_world
from .world import Camera, Identity, Mark, World, build_world, type_colour_sharing

__all__ = [
    "BOXES", "GENERATOR_VERSION", "LAYOUTS", "MANIFEST", "generate", "make_preview",
    "render_identity_views", "render_view", "View", "schedule_identity", "schedule_world", "Camera",
    "Identity", "Mark", "World", "build_world", "type_colour_sharing",
]
