"""A method's parts from config: ``model.net`` and ``model.loss`` are Hydra ``_target_`` configs.

The config names the class and its constant arguments (each with its source); the LightningModule adds
the arguments only known at build time (the built backbone, the training identities, a stage's
branches ...) through :func:`build_part`, as lightning-hydra-template's modules receive ``net``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from vreid_lightning.errors import ConfigError

__all__ = ["build_part"]


def build_part(node: Any, key: str, **build_args: Any) -> Any:
    """Instantiate ``model.<key>`` (a mapping with a ``_target_``) with ``build_args`` added.

    A mapping without ``_target_`` is the shape configs and checkpoints had before the classes were named
    in the config (keyword arguments of a fixed class): one error says so. A :class:`ConfigError` raised by
    the part itself comes through unwrapped (it names its own key).
    """
    if not isinstance(node, Mapping) or "_target_" not in node:
        old = isinstance(node, Mapping)
        raise ConfigError(
            f"model.{key}: expected a mapping with a _target_ (the class to build), got "
            f"{dict(node) if old else node!r}"
            + ("; a config or checkpoint saved before model configs named their classes (model.net / model.loss "
               "were keyword arguments then): add the _target_ of conf/model/<method>.yaml, or train it anew"
               if old else ""))
    try:
        return instantiate(dict(node), **build_args, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise
