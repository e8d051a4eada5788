"""Loading weights into a backbone: library (ImageNet) checkpoints and local files."""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from .base import Backbone

__all__ = ["download_state_dict", "read_state_dict_file", "load_into", "load_library_weights", "WEIGHTS_HINT"]

WEIGHTS_HINT = (
    "Pass a local state dict with backbone.weights=PATH (see docs/weights.md), "
    "or set backbone.pretrained=false for an explicit random init."
)
_MAX_LISTED = 12


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def download_state_dict(url: str, backbone_name: str) -> dict[str, torch.Tensor]:
    """Fetch a library checkpoint through the torch.hub cache, downloading if absent.

    Args:
        url: Checkpoint URL (e.g. a torchvision ``WeightsEnum.url``).
        backbone_name: Registry name, used in the error message.

    Raises:
        RuntimeError: When neither the cache nor the download yields the file. The
            message names the backbone, the cache path and the URL tried.
    """
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        # Looked up on the module at call time (not imported by name) so tests can mock it.
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
    except Exception as err:  # any network/cache/hash failure becomes one clear error
        raise RuntimeError(
            f"Could not load ImageNet weights for backbone '{backbone_name}': tried the torch.hub "
            f"cache file {cached} and a download from {url} ({type(err).__name__}: {err}). "
            f"Place the file at {cached}. {WEIGHTS_HINT}"
        ) from err


def _unwrap(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    """Find the tensor mapping inside a checkpoint object."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return _unwrap(inner, path)
    raise ValueError(
        f"Weights file {path} holds no state dict: expected a mapping of parameter names to tensors, "
        f"optionally nested under 'state_dict' or 'model'; got {type(obj).__name__}"
        + (f" with keys {_listing([str(k) for k in obj])}" if isinstance(obj, Mapping) else "")
    )


def read_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a local state dict (.pth / .pt / .ckpt, or .safetensors).

    The tensors may be nested under ``"state_dict"`` or ``"model"``; a ``"module."``
    prefix (from DataParallel / DDP) is stripped.

    Raises:
        FileNotFoundError: The path does not exist (the message names it).
        ValueError: The file holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Backbone weights file not found: {path} (set backbone.weights to an existing .pth file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors carry no path; add it
            raise ValueError(f"Could not read weights file {path}: {type(err).__name__}: {err}") from err
        state = _unwrap(obj, path)
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_into(
    backbone: Backbone, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True, source: str = "state dict"
) -> None:
    """Load a (foreign-layout) state dict into ``backbone`` with readable errors.

    The dict is first passed through ``backbone.convert_state_dict``. Shape mismatches
    always raise; missing/unexpected keys raise when ``strict``.

    Args:
        backbone: Destination module.
        state_dict: Parameters to load.
        strict: Require the key sets to match exactly.
        source: Where the weights come from (a path or a library name), for messages.

    Raises:
        RuntimeError: Listing mismatched shapes, missing keys and unexpected keys by name.
    """
    state = backbone.convert_state_dict(state_dict)
    own = backbone.state_dict()
    shape_errors = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    # BatchNorm restores a missing num_batches_tracked itself; pre-2018 library files lack it.
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    problems = []
    if shape_errors:
        problems.append("size mismatch for " + _listing(shape_errors))
    if strict and missing:
        problems.append("missing keys: " + _listing(missing))
    if strict and unexpected:
        problems.append("unexpected keys: " + _listing(unexpected))
    if problems:
        raise RuntimeError(
            f"Weights from {source} do not fit backbone {type(backbone).__name__}: " + "; ".join(problems)
        )
    if missing or unexpected:
        warnings.warn(
            f"Loaded {source} into {type(backbone).__name__} non-strictly: missing keys: {_listing(missing) or 'none'}; "
            f"unexpected keys: {_listing(unexpected) or 'none'}",
            stacklevel=2,
        )
    backbone.load_state_dict(state, strict=False)


def load_library_weights(backbone: torch.nn.Module, weights: object, name: str) -> torch.nn.Module:
    """Load a torchvision ``*_Weights`` enum member's ImageNet weights (cache or download) into ``backbone``."""
    url = weights.url  # type: ignore[attr-defined]
    load_into(backbone, download_state_dict(url, name), source=url)
    return backbone
