"""Name -> constructor registry and the ``build_backbone`` entry point."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Backbone
from .weights import load_into, read_state_dict_file

__all__ = ["BACKBONES", "register_backbone", "build_backbone"]

BackboneFactory = Callable[..., Backbone]
F = TypeVar("F", bound=BackboneFactory)

#: Registered constructors, each ``factory(pretrained: bool, **kwargs) -> Backbone``.
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[F], F]:
    """Decorator adding a constructor to ``BACKBONES`` under ``name``."""

    def decorate(factory: F) -> F:
        if name in BACKBONES:
            raise ValueError(f"Backbone '{name}' is already registered")
        BACKBONES[name] = factory
        return factory

    return decorate


def _unknown_options(factory: Any, kwargs: dict[str, Any]) -> list[str]:
    """The keyword arguments ``factory`` does not take (empty when it takes ``**kwargs``)."""
    import inspect

    import typing

    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        try:  # a factory passing **kwargs on to its backbone class (its return annotation)
            cls = typing.get_type_hints(factory).get("return")
        except (NameError, TypeError):  # an annotation that does not resolve: no hint, never a crash
            return []
        if not isinstance(cls, type):
            return []
        inner = inspect.signature(cls.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inner.values()):
            return []
        params = {**params, **inner}
    return [k for k in kwargs if k not in params]


def build_backbone(
    name: str,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> Backbone:
    """Build a registered backbone and load its weights.

    Args:
        name: Registry name (see ``BACKBONES``), e.g. ``"vgg_cnn_m_1024"`` or ``"resnet50"``.
        pretrained: Load the library's standard ImageNet weights (torchvision / timm), from
            the local cache or a download. Fails with a ``RuntimeError`` when they cannot be
            had; never falls back to random init. Ignored when ``weights`` is given.
        weights: Path to a local state dict (.pth/.pt/.ckpt/.safetensors). Takes precedence
            over ``pretrained``. With neither, the backbone keeps its explicit random init.
        strict: Require the file's keys to match the backbone's exactly.
        **kwargs: Backbone options (``last_stride`` for resnet50, ``width_mult`` for the
            VGG_CNN_M family, ...).

    Raises:
        ValueError: Unknown ``name`` (the message lists the registered names).
        RuntimeError: Library weights unavailable, or weights that do not fit.
        FileNotFoundError: ``weights`` does not exist.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone '{name}'. Known backbones: {', '.join(sorted(BACKBONES))}")
    try:
        backbone = BACKBONES[name](pretrained=bool(pretrained) and weights is None, **kwargs)
    except TypeError as e:  # a key with no effect is an error, not a silent no-op (nor a traceback)
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad is None:
            raise
        from vreid_lightning.errors import ConfigError

        unknown = _unknown_options(BACKBONES[name], kwargs) or [bad.group(1)]
        drop = " ".join(f"~backbone.{k}" for k in unknown)
        raise ConfigError(f"backbone.{bad.group(1)}: the {name} backbone takes no option {bad.group(1)!r}"
                          f"{' (nor ' + ', '.join(repr(k) for k in unknown[1:]) + ')' if len(unknown) > 1 else ''}; "
                          f"switching an experiment to another backbone keeps the options the experiment set for "
                          f"its own: drop them on the command line, e.g. `backbone={name} {drop}`") from None
    if weights is not None:
        load_into(backbone, read_state_dict_file(weights), strict=strict, source=os.fspath(weights))
    return backbone
