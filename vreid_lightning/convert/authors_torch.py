"""Reading the authors' PyTorch state dicts strictly, and writing the suite checkpoint they become.

Shared by the importers of authors' ``torch.save(model.state_dict())`` files: any PyTorch version's
format (the pre-1.6 legacy pickle included, with storages tagged ``cuda:N``: loaded with
``map_location="cpu"``), an optional DataParallel ``module.`` prefix, a key map that must consume every
tensor and fill every learnable one, shapes checked. Every failure is one :class:`AuthorsCheckpointError`
naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.torch_files import load_or_error

__all__ = ["AuthorsCheckpointError", "read_state_dict", "strip_module_prefix", "remap_strict",
           "write_suite_checkpoint"]


class AuthorsCheckpointError(ConfigError):
    """An authors' checkpoint that cannot be imported; the message names the file and what is wrong.

    A :class:`ConfigError` (bad input), so every importer's command line reports it as one line."""


def _listed(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``torch.save``\\ d state dict, on CPU, in file order.

    Raises:
        AuthorsCheckpointError: missing, truncated or not a torch file; not a mapping of tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise AuthorsCheckpointError(f"{p}: no such file")
    obj = load_or_error(p, weights_only=True, error=lambda why: AuthorsCheckpointError(
        f"{p}: not a readable torch checkpoint (truncated, corrupt or another file type: {why})"))
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a {'state_dict': ...} wrapper (fine_tune.py's checkpoint.pth.tar style)
    if not isinstance(obj, Mapping) or not obj:
        raise AuthorsCheckpointError(f"{p}: expected a state dict (a mapping of tensor names to tensors), "
                                     f"got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise AuthorsCheckpointError(f"{p}: expected a state dict of tensors; not tensors: {_listed(bad)}")
    return dict(obj)


def strip_module_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop DataParallel's ``module.`` prefix when every key carries it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def remap_strict(path: str | Path, state: Mapping[str, Tensor], rename: Callable[[str], str | None],
                 target: Mapping[str, Tensor], optional: Callable[[str], bool] = lambda k: False,
                 transform: Callable[[str, Tensor], Tensor] = lambda k, v: v, what: str = "model") -> dict[str, Tensor]:
    """Map the authors' tensors onto ``target``'s keys, refusing anything that does not fit.

    Args:
        path: the file (named in errors).
        state: the authors' tensors (prefix already stripped).
        rename: authors' key -> target key (None: a key this format does not know).
        target: the suite model's state dict (keys and shapes).
        optional: target keys the authors' file may lack (they keep ``target``'s value), e.g. BatchNorm's
            ``num_batches_tracked`` that PyTorch 0.3 did not have.
        transform: applied to each tensor before the shape check (e.g. a gate reordering).
        what: the model's name in messages.

    Returns:
        A complete state dict for ``target``.
    """
    out: dict[str, Tensor] = {}
    unknown, shapes = [], []
    for key, value in state.items():
        new = rename(key)
        if new is None or new not in target:
            unknown.append(key)
            continue
        value = transform(new, value)
        if tuple(value.shape) != tuple(target[new].shape):
            shapes.append(f"{key} {tuple(value.shape)} (expected {tuple(target[new].shape)} for {new})")
            continue
        out[new] = value.to(target[new].dtype)
    missing = [k for k in target if k not in out and not optional(k)]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} key(s) the {what} does not have: {_listed(unknown)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listed(shapes, 4)}")
    if missing:
        problems.append(f"{len(missing)} tensor(s) of the {what} not in the file: {_listed(missing)}")
    if problems:
        raise AuthorsCheckpointError(f"{path}: not a {what} checkpoint: " + "; ".join(problems))
    for k in target:
        out.setdefault(k, target[k].detach().clone())
    return out


def write_suite_checkpoint(state: Mapping[str, Tensor], out: str | Path, prefix: str,
                           meta: Mapping[str, Any]) -> Path:
    """Write ``state`` as a Lightning checkpoint (``state_dict`` keys under ``prefix``) that the runner tests
    with ``train=false ckpt_path=OUT``; ``meta`` (source file, format) goes under ``converted_from``."""
    import lightning

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"state_dict": {f"{prefix}{k}": v.contiguous() for k, v in state.items()},
            "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0,
            "converted_from": dict(meta)}
    torch.save(ckpt, out)
    return out
