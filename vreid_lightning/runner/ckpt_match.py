"""A checkpoint given to a run must be one of this method and architecture: one error otherwise.

Checkpoints written by the suite record who wrote them (``checkpoint["vreid_method"]``: the
LightningModule class and the backbone, :func:`method_record`). :func:`check_checkpoint_matches`
compares that record with the run's ``model._target_`` / ``backbone.name``, and the checkpoint's
tensor names and shapes with the model's, so a checkpoint of another method or architecture given as
``ckpt_path``, ``init_from`` or found by ``resume`` is one line naming the file, the method it was
saved by and the one expected, not a page of ``load_state_dict`` mismatches.
"""

from __future__ import annotations

from typing import Any

import torch

from vreid_lightning.errors import ConfigError

__all__ = ["METHOD_KEY", "method_record", "check_checkpoint_matches"]

METHOD_KEY = "vreid_method"


def method_record(pl_module: Any) -> dict[str, Any]:
    """What a checkpoint records about the module that saved it."""
    cls = type(pl_module)
    backbone = (getattr(pl_module, "hparams", {}) or {}).get("backbone") or {}
    return {"model": f"{cls.__module__}.{cls.__qualname__}",
            "backbone": backbone.get("name") if isinstance(backbone, dict) else None}


def _saved_by(ckpt: dict[str, Any]) -> str:
    rec = ckpt.get(METHOD_KEY)
    if not rec:
        return "an unrecorded method (a checkpoint without 'vreid_method')"
    return f"{rec.get('model')} (backbone {rec.get('backbone')})"


def check_checkpoint_matches(ckpt: dict[str, Any], path: str, key: str, model: Any, tensors: bool = True,
                             refit: tuple[str, ...] = ()) -> None:
    """Refuse ``ckpt`` (read from ``path``, given as ``key``) unless it is ``model``'s method and architecture.

    ``tensors=False`` (``init_from``: a previous stage has other branches and classifier sizes, which the
    module's ``load_previous_stage`` reconciles) checks the recorded method and backbone only. Tensors under a
    ``refit`` prefix may differ in shape (a test-only run whose module re-fits them: ``test_refit_prefixes``).
    """
    want = method_record(model)
    expected = f"{want['model']} (backbone {want['backbone']})"
    rec = ckpt.get(METHOD_KEY) or {}
    if rec.get("model") and rec["model"] != want["model"]:
        raise ConfigError(f"{key}: {path} was saved by {_saved_by(ckpt)}; this run expects {expected}")
    if rec.get("backbone") and want["backbone"] and rec["backbone"] != want["backbone"]:
        raise ConfigError(f"{key}: {path} was saved by {_saved_by(ckpt)}; this run expects {expected}")
    if not tensors:
        return
    saved = ckpt.get("state_dict", {})
    mine = model.state_dict()
    missing = [k for k in mine if k not in saved]
    unexpected = [k for k in saved if k not in mine]
    shapes = [k for k in saved if k in mine and isinstance(saved[k], torch.Tensor) and saved[k].shape != mine[k].shape
              and not k.startswith(refit)]
    if missing or unexpected or shapes:
        detail = (f"{len(shapes)} tensor(s) of another shape, e.g. {shapes[0]}: {tuple(saved[shapes[0]].shape)} "
                  f"saved, {tuple(mine[shapes[0]].shape)} expected" if shapes else
                  f"{len(missing)} tensor(s) missing (e.g. {missing[0]})" if missing else
                  f"{len(unexpected)} unexpected tensor(s) (e.g. {unexpected[0]})")
        raise ConfigError(f"{key}: {path} does not fit this run's model: it was saved by {_saved_by(ckpt)} and this "
                          f"run expects {expected} with this config's architecture; {detail}")
