"""User errors: the exceptions that mean bad input (paths, annotations, config keys), not a bug."""

from __future__ import annotations

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

from vreid_lightning.data.datasets.base import DatasetFormatError

__all__ = ["USER_ERRORS", "ConfigError", "format_user_error"]


class ConfigError(ValueError):
    """A config value is missing or not one of the accepted values; the message names the key."""


USER_ERRORS = (DatasetFormatError, ConfigError, FileNotFoundError, KeyError, InstantiationException,
               HydraException, OmegaConfBaseException)


def format_user_error(e: BaseException) -> str:
    """One line: the innermost user-facing message (Hydra wraps errors raised in constructors)."""
    inner = e
    while isinstance(inner, InstantiationException) and inner.__cause__ is not None:
        inner = inner.__cause__
    msg = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else str(inner)
    return " ".join(msg.split())
