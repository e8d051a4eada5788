"""Per-parameter learning-rate and weight-decay multipliers as optimizer parameter groups (Caffe's ``param``).

Caffe gives every learnable blob an ``lr_mult`` and a ``decay_mult``: the RAM authors' nets use
``{lr_mult: 1, decay_mult: 1}`` for weights and ``{lr_mult: 2, decay_mult: 0}`` for biases, x10 on the
layers a step adds (train_RAM_finetune.prototxt:48-49, 847-848). Here the same is expressed as
parameter groups of a torch optimizer: each group carries ``lr = base_lr * lr factor`` and
``weight_decay = base_wd * decay factor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from vreid_lightning.errors import ConfigError

__all__ = ["multiplier_groups"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def multiplier_groups(
    module: nn.Module,
    base_lr: float,
    base_wd: float = 0.0,
    bias_lr_mult: float = 1.0,
    bias_decay_mult: float = 1.0,
    lr_mult: Mapping[str, float] | None = None,
    where: str = "model.optim",
) -> list[dict[str, Any]]:
    """Parameter groups with Caffe-style multipliers.

    Args:
        module: the module whose parameters are optimised.
        base_lr: the optimizer's base learning rate.
        base_wd: the optimizer's base weight decay.
        bias_lr_mult: lr factor of the bias of every Linear/Conv layer (on top of its layer's factor).
        bias_decay_mult: weight-decay factor of those biases. Other parameters (BatchNorm's affine,
            which Caffe's Scale layer holds with default ``param`` 1/1) keep factor 1.
        lr_mult: parameter-name prefix -> lr factor of the layer (the longest matching prefix wins);
            a prefix matching no parameter is an error (it would have no effect).
        where: config path named in errors.

    Returns:
        ``[{"params": [...], "lr": ..., "weight_decay": ..., "name": "lr x{f} decay x{d}"}, ...]``.
    """
    lr_mult = {str(k): float(v) for k, v in (lr_mult or {}).items()}
    biases = {id(m.bias) for m in module.modules() if isinstance(m, _WEIGHTED) and m.bias is not None}
    used: set[str] = set()
    groups: dict[tuple[float, float], list] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        match = max((p for p in lr_mult if name.startswith(p)), key=len, default=None)
        lr_f, wd_f = (lr_mult[match] if match is not None else 1.0), 1.0
        if match is not None:
            used.add(match)
        if id(param) in biases:
            lr_f, wd_f = lr_f * float(bias_lr_mult), float(bias_decay_mult)
        groups.setdefault((lr_f, wd_f), []).append(param)
    unused = sorted(set(lr_mult) - used)
    if unused:
        roots = sorted({n.split(".")[0] for n, _ in module.named_parameters()})
        raise ConfigError(f"{where}.lr_mult: prefixes {unused} match no parameter of this model (they would have "
                          f"no effect); parameter names start with {roots}")
    return [{"params": params, "lr": float(base_lr) * lr_f, "weight_decay": float(base_wd) * wd_f,
             "name": f"lr x{lr_f:g} decay x{wd_f:g}"} for (lr_f, wd_f), params in groups.items()]
