"""FORMATS ``rnn-ha-vgg`` and ``rnn-ha-resnet50``: the RNN-HA authors' state dicts (tzzcl/RNN-HA).

``python -m vreid_lightning.convert rnn-ha-vgg IN OUT.ckpt`` reads what ``torch.save(model.state_dict())``
wrote (main_GRU_fusion_attention.py:155-156; main_GRU_fusion_attention_resnet.py:194-196): PyTorch 0.3's
legacy pickle, storages tagged ``cuda:0``, possibly DataParallel-prefixed, and writes the checkpoint that
``+experiment=rnn_ha_veri_authors`` / ``rnn_ha_vehicleid_authors`` (VGG) or ``rnn_ha_veri_resnet_authors`` /
``rnn_ha_vehicleid_resnet_authors`` (ResNet-50) tests with ``train=false ckpt_path=OUT.ckpt stages=null``.
Strict: every tensor of the file lands in the suite's network, every learnable tensor of the network comes
from the file, shapes match.

Key map (authors' -> suite ``net.``):

- VGG trunk, ``vgg_m.{0,4,8,10,12}`` (the conv layers of the ``vgg_m_1024_torch`` Sequential, kept as
  ``vgg_m[0:15]``, main:21-28,40) -> ``backbone.conv1..conv5``; ResNet, ``resnet.{0,1,4,5,6,7}``
  (``children()[:-2]`` of torchvision's ResNet-50, resnet:25-27,80) -> ``backbone.conv1, bn1, layer1..4``
  (no ``num_batches_tracked`` in 0.3 files: kept at 0).
- ``rnn.{weight,bias}_{ih,hh}_l0`` (``nn.GRU``, main:47) -> ``gru.x2h``/``gru.h2h``, rows reordered from
  ``nn.GRU``'s gate order (r, z, n) to the suite's (z, r, g); needs ``model.net.gru_biases=2``.
- ``W1`` -> ``model_classifier``, ``W2`` -> ``vehicle_classifier``, ``W3``/``W4`` -> the attention
  transformer's two FC layers (main:48-56,66-68).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vreid_lightning.convert.authors_torch import (AuthorsCheckpointError, read_state_dict, remap_strict,
                                                   strip_module_prefix, write_suite_checkpoint)

__all__ = ["AUTHORS_NETS", "rename_key", "gru_rows_to_suite", "build_suite_net", "convert_state_dict", "main"]

#: format -> the suite network the authors' file becomes (every switch as in their code; sizes from their scripts)
AUTHORS_NETS: dict[str, dict[str, Any]] = {
    "rnn-ha-vgg": {
        "backbone": {"name": "vgg_cnn_m_1024", "trunk_end": "pool5"},  # main:21-28,40: vgg_m[0:15] ends at pool5
        "net": {"hidden_size": 1024, "transformer_dims": [1024],       # main:14-15,52-54: GRU 512 -> 1024, W3 1024
                "repeat_x1": True, "gru_biases": 2},                   # main:47,62-64,82
        "prefix": "vgg_m",
        "experiments": "rnn_ha_veri_authors, rnn_ha_vehicleid_authors",
    },
    "rnn-ha-resnet50": {
        "backbone": {"name": "resnet50", "last_stride": 2},            # resnet:72,80: torchvision's, children[:-2]
        "net": {"hidden_size": 2048, "transformer_dims": [2048],       # resnet:18-19,92-94: GRU 2048 -> 2048, W3 2048
                "repeat_x1": False, "gru_biases": 2},                  # resnet:87,101,120: x1 fed once
        "prefix": "resnet",
        "experiments": "rnn_ha_veri_resnet_authors, rnn_ha_vehicleid_resnet_authors",
    },
}

_VGG_CONVS = {"0": "conv1", "4": "conv2", "8": "conv3", "10": "conv4", "12": "conv5"}
_RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_HEADS = {"W1": "model_classifier", "W2": "vehicle_classifier", "W3": "attention.transformer.0",
          "W4": "attention.transformer.2"}
_GRU = {"weight_ih_l0": "gru.x2h.weight", "bias_ih_l0": "gru.x2h.bias", "weight_hh_l0": "gru.h2h.weight",
        "bias_hh_l0": "gru.h2h.bias"}


def rename_key(fmt: str, key: str) -> str | None:
    """The suite network's key (without ``net.``) of an authors' key, or None for one the format lacks."""
    head, _, rest = key.partition(".")
    if head == AUTHORS_NETS[fmt]["prefix"]:
        idx, _, leaf = rest.partition(".")
        table = _VGG_CONVS if fmt == "rnn-ha-vgg" else _RESNET_CHILDREN
        if idx in table and leaf:
            return f"backbone.{table[idx]}.{leaf}"
        return None
    if head == "rnn":
        return _GRU.get(rest)
    if head in _HEADS and rest in ("weight", "bias"):
        return f"{_HEADS[head]}.{rest}"
    return None


def gru_rows_to_suite(value: Tensor) -> Tensor:
    """Reorder ``nn.GRU``'s stacked gates (r, z, n) to :class:`~vreid_lightning.models.rnn_ha.GRUStep`'s (z, r, g)."""
    r, z, n = value.chunk(3, dim=0)
    return torch.cat([z, r, n], dim=0)


def build_suite_net(fmt: str, num_classes: int, num_model_classes: int):
    """The suite's RNN-HA network with the authors' switches for ``fmt`` (random weights)."""
    from vreid_lightning.models.backbones import build_backbone
    from vreid_lightning.models.rnn_ha import RNNHANet

    spec = AUTHORS_NETS[fmt]
    return RNNHANet(build_backbone(**spec["backbone"]), num_classes=num_classes,
                    num_model_classes=num_model_classes, **spec["net"])


def convert_state_dict(fmt: str, state: dict[str, Tensor], path: str | Path = "<state dict>") -> dict[str, Tensor]:
    """The suite network's full state dict (keys without ``net.``) from the authors' tensors, strictly."""
    state = strip_module_prefix(state)
    for key in ("W1.weight", "W2.weight"):
        if key not in state or state[key].dim() != 2:
            found = _sample(state)
            raise AuthorsCheckpointError(f"{path}: not an RNN-HA ({fmt}) state dict: no 2-D {key} (the model-level / "
                                         f"vehicle-level classifier, main:48-51); keys: {found}")
    net = build_suite_net(fmt, int(state["W2.weight"].shape[0]), int(state["W1.weight"].shape[0]))
    return remap_strict(path, state, lambda k: rename_key(fmt, k), net.state_dict(),
                        optional=lambda k: k.endswith("num_batches_tracked"),
                        transform=lambda k, v: gru_rows_to_suite(v) if k.startswith("gru.") else v,
                        what=f"RNN-HA {fmt}")


def _sample(state: dict[str, Tensor]) -> str:
    keys = sorted(state)
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def main(fmt: str, argv: Sequence[str]) -> int:
    """``python -m vreid_lightning.convert rnn-ha-vgg|rnn-ha-resnet50 IN OUT.ckpt``."""
    p = argparse.ArgumentParser(prog=f"python -m vreid_lightning.convert {fmt}",
                                description=f"import the RNN-HA authors' {fmt} state dict (tzzcl/RNN-HA)")
    p.add_argument("src", help="the authors' file (torch.save(model.state_dict()), e.g. model_epoch_19)")
    p.add_argument("out", help="the suite checkpoint to write (test it with train=false ckpt_path=OUT)")
    args = p.parse_args(list(argv))
    try:
        state = convert_state_dict(fmt, read_state_dict(args.src), args.src)
    except AuthorsCheckpointError as e:
        print(f"convert {fmt}: {e}", file=sys.stderr)
        return 2
    out = write_suite_checkpoint(state, args.out, "net.", {"format": fmt, "file": str(Path(args.src).resolve())})
    n_vehicle, n_model = state["vehicle_classifier.weight"].shape[0], state["model_classifier.weight"].shape[0]
    print(f"{fmt}: {args.src} -> {out} ({len(state)} tensors; {n_vehicle} vehicle-level and {n_model} model-level "
          f"classes). Test it with +experiment={AUTHORS_NETS[fmt]['experiments'].split(', ')[0]} train=false "
          f"ckpt_path={out} stages=null (the dataset's training split must have as many identities and "
          "model-level classes)")
    return 0
