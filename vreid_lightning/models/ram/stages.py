"""Stage weight transfer: carry a trained RAM step into the next one (RAM sec. 2.4, 3.3)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from vreid_lightning.models.ram.net import RAMNet

__all__ = ["load_previous_stage"]


def load_previous_stage(
    model: RAMNet, state_dict: Mapping[str, Tensor], prefix: str = "", strict: bool = True
) -> dict[str, list[str] | dict[str, str]]:
    """Carry a trained previous stage into ``model`` (RAM sec. 2.4: branches are added in order).

    Every parameter/buffer of ``model`` whose key is in ``state_dict`` is loaded (shared conv layers and
    the branches both stages have); the others keep their fresh initialisation, except the BN branch's
    FCs, which are copied from the (just loaded) Conv branch when ``model.bn_init_from_conv``.

    Args:
        model: the next stage's network.
        state_dict: the previous stage's ``state_dict()`` (or a Lightning checkpoint's, with ``prefix``).
        prefix: key prefix to strip (e.g. ``"model."``); keys without it are ignored.
        strict: raise when ``state_dict`` holds keys the model does not have (e.g. a later stage).

    Returns:
        ``{"loaded": keys, "new": keys, "copied": {bn_key: conv_key}, "unexpected": keys}``.
    """
    source = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    own = model.state_dict()
    unexpected = [k for k in source if k not in own]
    if strict and unexpected:
        raise ValueError(
            f"load_previous_stage: keys of the previous stage are missing from this model (is it an earlier "
            f"stage, or a different backbone?): {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    for key, value in source.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"load_previous_stage: '{key}' has shape {tuple(value.shape)} in the previous stage but "
                f"{tuple(own[key].shape)} in this model (different num_classes, attributes or dims?)"
            )
    loaded = [k for k in own if k in source]
    if not loaded:
        raise ValueError(
            f"load_previous_stage: no key of the given state_dict (prefix {prefix!r}) matches this model; "
            f"first keys: {list(state_dict)[:5]}"
        )
    new = [k for k in own if k not in source]
    merged = {k: source.get(k, v) for k, v in own.items()}
    model.load_state_dict(merged, strict=True)
    copied: dict[str, str] = {}
    if model.bn is not None and model.bn_init_from_conv:
        bn_fc_keys = [k for k in own if k.startswith(("bn.fc1.", "bn.fc2."))]
        conv_fc_keys = [k for k in own if k.startswith(("conv.fc1.", "conv.fc2."))]
        if all(k in new for k in bn_fc_keys) and all(k in source for k in conv_fc_keys):
            copied = model.init_bn_from_conv()
    return {"loaded": loaded, "new": new, "copied": copied, "unexpected": unexpected}
