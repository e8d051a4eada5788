"""FORMAT ``ram-caffe``: the RAM authors' VeRi ``.caffemodel`` -> a checkpoint ``ram_veri_authors`` tests.

``python -m vreid_lightning.convert ram-caffe veri-RAM-finetune_iter_60000.caffemodel ram_veri.ckpt``

The file is the binary NetParameter Caffe writes for the authors' final net (liu-xb/RAM
prototxt/train_RAM_finetune.prototxt, "ft:LINE" below; the released name comes from train_veri.sh:15,17).
Every one of its 26 layers with blobs is consumed, by name, into the network the ``+experiment`` config
builds (``RAMNet`` with the authors' switches):

- conv1-5 -> ``backbone.convN``; fc6, fc7 -> the Conv branch (``conv.fc1.fc6``, ``conv.fc2.fc7``); fc8-id -> its
  classifier;
- conv5-bn (BatchNorm: mean, variance, scale factor) -> ``bn.norm`` running mean/var = stored / scale factor
  (Caffe's BatchNormLayer divides by it; 0 gives 0), conv5-sc (Scale: gamma, beta) -> ``bn.norm`` weight/bias;
  fc6-bn, fc7-bn, fc8-id-bn -> the BN branch;
- fc-part-N, fc-fc-part-N, id-part-N (N = 1, 2, 3 = top, middle, bottom) -> the Region branch's two FCs and
  classifier; id-parts -> its parts classifier;
- att-branch-fc -> ``attr.fc``; col-cls -> ``attr.classifier.attr_colour``; mod-cls (VeRi's 9 types,
  ft:877-881) -> ``attr.classifier.attr_type``.

Strict: a layer with blobs and no destination, a missing layer, a blob count or shape that differs, or
a file that is not a readable caffemodel is one error naming the file (and the layers). conv1 is NOT
folded: the authors' variant feeds the network Caffe's input (BGR, 0-255, minus the RAM mean pixel,
``data.input_norm`` of the experiment).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from vreid_lightning.errors import ConfigError

__all__ = ["RAM_LAYERS", "ram_caffe_state_dict", "convert", "main"]

_R = {"1": "t", "2": "m", "3": "b"}  # part-1/2/3 of pool5 rows 0-2 / 1-4 / 3-5 = top, middle, bottom
#: Caffe layer -> (suite prefix in RAMNet, kind). Kinds: "conv", "fc" (weight, bias), "bn", "scale".
RAM_LAYERS: dict[str, tuple[str, str]] = {
    **{f"conv{i}": (f"backbone.conv{i}", "conv") for i in range(1, 6)},
    "fc6": ("conv.fc1.fc6", "fc"), "fc7": ("conv.fc2.fc7", "fc"), "fc8-id": ("conv.classifier", "fc"),
    "conv5-bn": ("bn.norm", "bn"), "conv5-sc": ("bn.norm", "scale"),
    "fc6-bn": ("bn.fc1.fc6", "fc"), "fc7-bn": ("bn.fc2.fc7", "fc"), "fc8-id-bn": ("bn.classifier", "fc"),
    **{f"fc-part-{n}": (f"region.fc.{r}.0.0", "fc") for n, r in _R.items()},
    **{f"fc-fc-part-{n}": (f"region.fc.{r}.1.0", "fc") for n, r in _R.items()},
    **{f"id-part-{n}": (f"region.classifier.{r}", "fc") for n, r in _R.items()},
    "id-parts": ("region.parts", "fc"),
    "att-branch-fc": ("attr.fc.0", "fc"),
    "col-cls": ("attr.classifier.attr_colour", "fc"),
    "mod-cls": ("attr.classifier.attr_type", "fc"),
}
_N_BLOBS = {"conv": 2, "fc": 2, "bn": 3, "scale": 2}
_ID_CLASSIFIERS = ("fc8-id", "fc8-id-bn", "id-part-1", "id-part-2", "id-part-3", "id-parts")


def read_ram_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> blobs of a ``.caffemodel``; one :class:`ConfigError` naming the file when unreadable."""
    from vreid_lightning.models.backbones.caffe import read_caffemodel

    try:
        return read_caffemodel(path)
    except FileNotFoundError as e:
        raise ConfigError(f"ram-caffe: {e}") from None
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ConfigError(f"ram-caffe: {path} is not a readable binary .caffemodel (truncated or another file "
                          f"type: {type(e).__name__}: {e})") from None


def ram_caffe_state_dict(blobs: Mapping[str, Sequence[np.ndarray]], source: str = "the caffemodel"
                         ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map the authors' blobs onto ``RAMNet`` keys; returns ``(state dict, class counts)``.

    Class counts: ``num_classes`` (the six ID classifiers, which must agree), ``colour``, ``type``.
    """
    extra = sorted(set(blobs) - set(RAM_LAYERS))
    missing = [n for n in RAM_LAYERS if n not in blobs]
    if extra or missing:
        raise ConfigError(f"ram-caffe: {source} is not the RAM authors' final net (train_RAM_finetune.prototxt): "
                          f"layers without a destination {extra}, missing layers {missing}")
    bad = [f"{n} ({len(blobs[n])} blobs, expected {_N_BLOBS[k]})" for n, (_, k) in RAM_LAYERS.items()
           if len(blobs[n]) != _N_BLOBS[k]]
    if bad:
        raise ConfigError(f"ram-caffe: {source}: wrong blob counts: {', '.join(bad)}")
    state: dict[str, torch.Tensor] = {}
    for name, (prefix, kind) in RAM_LAYERS.items():
        arrs = [torch.from_numpy(np.array(b, dtype=np.float32)) for b in blobs[name]]
        if kind in ("conv", "fc"):
            bias = arrs[1].reshape(-1)
            weight = arrs[0] if kind == "conv" else arrs[0].reshape(bias.numel(), -1)  # IP: (out, C*H*W)
            if weight.shape[0] != bias.numel() or (kind == "conv" and weight.dim() != 4):
                raise ConfigError(f"ram-caffe: {source}: layer {name}: weight {tuple(arrs[0].shape)} and bias "
                                  f"{tuple(arrs[1].shape)} do not fit a {kind} layer")
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weight.contiguous(), bias.contiguous()
        elif kind == "bn":
            mean, var, sf = (a.reshape(-1) for a in arrs)
            if sf.numel() != 1 or mean.numel() != var.numel():
                shapes = [tuple(a.shape) for a in arrs]
                raise ConfigError(f"ram-caffe: {source}: layer {name}: BatchNorm blobs {shapes} "
                                  "are not (mean C, variance C, scale factor 1)")
            f = 0.0 if float(sf[0]) == 0 else 1.0 / float(sf[0])  # batch_norm_layer.cpp: scale_factor
            state[f"{prefix}.running_mean"] = (mean.double() * f).float()
            state[f"{prefix}.running_var"] = (var.double() * f).float()
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        else:  # Scale with bias_term (ft:301-309): gamma, beta
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = arrs[0].reshape(-1), arrs[1].reshape(-1)
    counts = {n: int(state[f"{RAM_LAYERS[n][0]}.bias"].numel()) for n in _ID_CLASSIFIERS}
    if len(set(counts.values())) != 1:
        raise ConfigError(f"ram-caffe: {source}: the ID classifiers disagree on the number of classes: {counts}")
    return state, {"num_classes": counts["fc8-id"], "colour": int(state["attr.classifier.attr_colour.bias"].numel()),
                   "type": int(state["attr.classifier.attr_type.bias"].numel())}


def build_authors_net(experiment: str, num_classes: int, attribute_classes: Mapping[str, int],
                      overrides: Sequence[str] = ()) -> torch.nn.Module:
    """The ``RAMNet`` of ``+experiment=EXPERIMENT [overrides]`` (its ``model.net`` and ``backbone``), final step."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from vreid_lightning.methods.parts import build_part
    from vreid_lightning.models.backbones import build_backbone
    from vreid_lightning.models.ram import RAMNet

    conf = Path(__file__).resolve().parents[2] / "conf"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}", *overrides])
    GlobalHydra.instance().clear()
    backbone = build_backbone(**{**OmegaConf.to_container(cfg.backbone, resolve=True), "weights": None})
    return build_part(OmegaConf.to_container(cfg.model.net, resolve=True), "net", backbone=backbone,
                      num_classes=num_classes, attribute_classes=dict(attribute_classes),
                      branches=RAMNet.stage_branches("ram"))


def convert(caffemodel: str | Path, out: str | Path, num_classes: int | None = None,
            experiment: str = "ram_veri_authors", overrides: Sequence[str] = ()) -> dict[str, int]:
    """Read, map, check against the experiment's network (strict load), write a Lightning checkpoint.

    ``overrides``: Hydra overrides of the experiment the network is built from (e.g. a reduced width in tests).
    """
    blobs = read_ram_caffemodel(caffemodel)
    state, counts = ram_caffe_state_dict(blobs, str(caffemodel))
    if num_classes is not None and int(num_classes) != counts["num_classes"]:
        raise ConfigError(f"ram-caffe: {caffemodel}: its ID classifiers have {counts['num_classes']} classes, "
                          f"--num-classes says {num_classes}")
    net = build_authors_net(experiment, counts["num_classes"], {"colour": counts["colour"], "type": counts["type"]},
                            overrides)
    own = net.state_dict()
    shapes = [f"{k}: file {tuple(v.shape)}, network {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if shapes or missing or unexpected:
        raise ConfigError(f"ram-caffe: {caffemodel} does not fit +experiment={experiment}'s network: shape "
                          f"mismatches {shapes}, tensors without a source {missing}, "
                          f"without a destination {unexpected}")
    net.load_state_dict(state, strict=True)
    import lightning

    ckpt = {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 0, "global_step": 0,
            "pytorch-lightning_version": lightning.__version__,
            "converted_from": {"format": "ram-caffe", "file": str(caffemodel), "experiment": experiment,
                               "overrides": list(overrides), **counts}}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return {**counts, "layers": len(blobs), "tensors": len(state)}


def main(fmt: str, argv: Sequence[str]) -> int:
    """Command line of FORMAT ``ram-caffe``."""
    p = argparse.ArgumentParser(prog=f"python -m vreid_lightning.convert {fmt}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("caffemodel", help="the authors' .caffemodel (veri-RAM-finetune_iter_60000.caffemodel)")
    p.add_argument("output", help="the checkpoint to write (test it: +experiment=ram_veri_authors train=false "
                                  "ckpt_path=OUTPUT)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="expected training identities (released VeRi model: 576); checked against the file")
    p.add_argument("--experiment", default="ram_veri_authors", help="the experiment whose network is filled")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override of that experiment (repeatable), e.g. backbone.width_mult=0.25")
    args = p.parse_args(list(argv))
    try:
        info = convert(args.caffemodel, args.output, args.num_classes, args.experiment, args.set)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {info['layers']} layers -> {info['tensors']} tensors; {info['num_classes']} ids, "
          f"{info['colour']} colours, {info['type']} types; test with +experiment={args.experiment} train=false "
          f"ckpt_path={args.output}")
    return 0
