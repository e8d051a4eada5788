"""FORMATs ``vehiclenet-resnet50|densenet121|seresnext101``: the VehicleNet authors' ``net_last.pth``.

``python -m vreid_lightning.convert vehiclenet-resnet50 net_last.pth OUT.ckpt --opts opts.yaml``

The file is what layumi/AICIty-reID-2020 saves (pytorch/utils.py:37-45, ``torch.save(network.cpu().state_dict())``)
of ``ft_net`` / ``ft_net_dense`` / ``ft_net_SE`` (pytorch/model.py): ``model.*`` (the backbone), the ClassBlock
``classifier.add_block.0`` (Linear 512, our ``fc1``) and ``.1`` (BatchNorm1d, our ``bn``), ``classifier.classifier.0``
(the ID classifier, our ``fc2``); a ``module.`` prefix when it was saved from ``nn.DataParallel``
(train_2020.py saves the wrapped model when trained on several GPUs). Every tensor must land: the only keys left
out are the ImageNet classifiers the authors' ``forward`` never calls (ResNet ``model.fc``, DenseNet
``model.classifier``), named in :data:`UNUSED`. ``opts.yaml`` (written beside it by train_2020.py) gives the last
stride and the input size; the stride is stored with the backbone options of the checkpoint, which the
``vehiclenet_*_authors`` experiments refuse to test with another stride.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vreid_lightning.convert.authors_torch import read_state_dict
from vreid_lightning.errors import ConfigError

__all__ = ["main", "BACKBONE", "UNUSED", "read_opts", "convert_state_dict", "authors_key", "authors_test_size"]

#: FORMAT -> the suite's backbone options that rebuild the authors' trunk (stride added from opts.yaml)
BACKBONE: dict[str, dict[str, Any]] = {
    "vehiclenet-resnet50": {"name": "resnet50"},                                    # model.py ft_net (torchvision)
    "vehiclenet-densenet121": {"name": "densenet121", "final_relu": False},         # model.py:209,223: norm5, no ReLU
    "vehiclenet-seresnext101": {"name": "se_resnext101_32x4d", "implementation": "cadene"},  # model.py:317 Cadene
}
#: FORMAT -> prefix of the authors' backbone keys -> prefix of ours (under ``net.backbone.``)
_TRUNK = {"vehiclenet-resnet50": ("model.", ""), "vehiclenet-densenet121": ("model.features.", "features."),
          "vehiclenet-seresnext101": ("model.", "model.")}
#: FORMAT -> key prefixes the authors' forward never reads (ImageNet classifiers kept in the file)
UNUSED: dict[str, tuple[str, ...]] = {"vehiclenet-resnet50": ("model.fc.",), "vehiclenet-densenet121": ("model.classifier.",),
                                      "vehiclenet-seresnext101": ()}
_HEAD = {"classifier.add_block.0.": "fc1.", "classifier.add_block.1.": "bn.", "classifier.classifier.0.": "classifier."}
#: opts.yaml flag that must be set (True) for a format, and the flags that must not
_FLAGS = {"vehiclenet-resnet50": None, "vehiclenet-densenet121": "use_dense", "vehiclenet-seresnext101": "use_SE"}
_OTHER_MODELS = ("use_dense", "use_SE", "use_DSE", "use_NAS", "use_IR", "use_EF4", "use_EF5", "use_EF6", "PCB", "CPB",
                 "angle", "arc")
_MAX = 8


def _listing(keys: Sequence[str]) -> str:
    keys = list(keys)
    return ", ".join(keys[:_MAX]) + (f", ... ({len(keys) - _MAX} more)" if len(keys) > _MAX else "")


def authors_test_size(inputsize: int, h: int | None = None, w: int | None = None) -> tuple[int, int]:
    """The (H, W) the authors' test code resizes to: 1.1 x (inputsize, inputsize), or 1.1 x (h, w) when h != w
    (test_2020.py:137-148)."""
    from vreid_lightning.data.transforms import test_input_size

    size = (inputsize, inputsize) if h is None or w is None or h == w else (h, w)
    return test_input_size(size, 1.1)


def read_opts(path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    """``stride``, ``inputsize``, ``h``, ``w`` (and ``nclasses`` when present) of an authors' opts.yaml, checked
    against ``fmt`` (the model flags, ``pool: avg``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--opts: {p} does not exist (the opts.yaml train_2020.py writes beside net_last.pth)")
    try:
        opts = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--opts: {p} is not YAML ({type(e).__name__})") from None
    if not isinstance(opts, dict) or "stride" not in opts or "inputsize" not in opts:
        raise ConfigError(f"--opts: {p}: expected the authors' opts.yaml with 'stride' and 'inputsize'")
    want = _FLAGS[fmt]
    others = [k for k in _OTHER_MODELS if k != want and opts.get(k)]
    if others or (want and not opts.get(want)):
        raise ConfigError(f"--opts: {p} describes another model ({', '.join(others) or 'no ' + str(want)}), "
                          f"not {fmt}")
    if opts.get("pool", "avg") != "avg":
        raise ConfigError(f"--opts: {p}: pool={opts['pool']!r}; the importer handles the released pool 'avg' only")
    if int(opts["stride"]) not in (1, 2):
        raise ConfigError(f"--opts: {p}: stride={opts['stride']!r}; expected 1 or 2")
    out = {"stride": int(opts["stride"]), "inputsize": int(opts["inputsize"])}
    for k in ("h", "w", "nclasses"):
        if opts.get(k) is not None:
            out[k] = int(opts[k])
    return out


def authors_key(fmt: str, key: str) -> str | None:
    """Our ``net.*`` key for an authors' key (without ``module.``); None for keys outside the mapping."""
    for src, dst in _HEAD.items():
        if key.startswith(src):
            return "net." + dst + key[len(src):]
    src, dst = _TRUNK[fmt]
    if key.startswith(src):
        rest = key[len(src):]
        if fmt == "vehiclenet-densenet121":  # legacy torchvision names 'norm.1' inside dense layers
            from vreid_lightning.models.backbones.densenet import _LEGACY_KEY

            m = _LEGACY_KEY.match(rest)
            rest = m.group(1) + m.group(2) if m else rest
        return "net.backbone." + dst + rest
    return None


def convert_state_dict(fmt: str, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                       source: str) -> dict[str, torch.Tensor]:
    """Map the authors' ``state`` onto ``own`` (the suite module's state dict) strictly.

    Raises:
        ConfigError: one message naming ``source`` with the keys left over, missing or of another shape.
    """
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unconsumed, wrong = [], []
    for k, v in state.items():
        if UNUSED[fmt] and k.startswith(UNUSED[fmt]):
            continue
        ours = authors_key(fmt, k)
        if ours is None or ours not in own:
            unconsumed.append(k)
        elif tuple(own[ours].shape) != tuple(v.shape):
            wrong.append(f"{k} {tuple(v.shape)} -> {ours} {tuple(own[ours].shape)}")
        else:
            out[ours] = v.to(own[ours].dtype)
    missing = [k for k in own if k not in out]
    # checkpoints of PyTorch < 0.4.1 have no BatchNorm counters: the only tensors that may be absent
    filled = [k for k in missing if k.endswith("num_batches_tracked")]
    for k in filled:
        out[k] = torch.zeros_like(own[k])
    missing = [k for k in missing if k not in filled]
    if unconsumed or missing or wrong:
        parts = [f"{len(unconsumed)} key(s) of the file not consumed: {_listing(unconsumed)}" if unconsumed else "",
                 f"{len(missing)} tensor(s) of the suite's network not in the file: {_listing(missing)}"
                 if missing else "",
                 f"{len(wrong)} shape mismatch(es): {_listing(wrong)}" if wrong else ""]
        raise ConfigError(f"{source}: not a {fmt} checkpoint of this network; " + "; ".join(p for p in parts if p))
    return out


def _classes(fmt: str, state: Mapping[str, torch.Tensor], source: str) -> int:
    key = next((k for k in state if k.endswith("classifier.classifier.0.weight")), None)
    if key is None or state[key].dim() != 2:
        raise ConfigError(f"{source}: no classifier.classifier.0.weight (a 2-d Linear weight): not a {fmt} "
                          f"state dict (layumi/AICIty-reID-2020 ClassBlock)")
    return int(state[key].shape[0])


def convert(fmt: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], opts: dict[str, Any]) -> dict[str, Any]:
    """Read ``src`` strictly, write a Lightning checkpoint of ``VehicleNetModule`` to ``dst``; returns a summary."""
    import lightning

    from vreid_lightning.methods.vehiclenet import VehicleNetModule

    path = Path(src)
    state = read_state_dict(path)  # the importers' one strict reader (authors_torch.py)
    num_classes = _classes(fmt, state, str(path))
    backbone = {**BACKBONE[fmt], "pretrained": False, "weights": None, "last_stride": int(opts["stride"])}
    net = {"_target_": "vreid_lightning.models.vehiclenet.VehicleNet",  # conf/model/vehiclenet.yaml's classes
           "embed_dim": 512, "dropout": 0.0}  # model.py ClassBlock num_bottleneck=512; dropout has no tensors
    loss = {"_target_": "vreid_lightning.losses.CrossEntropyLoss"}
    module = VehicleNetModule(num_classes=num_classes, backbone=backbone, net=net, loss=loss)
    own = module.state_dict()
    out = convert_state_dict(fmt, state, own, str(path))
    module.load_state_dict(out, strict=True)
    h, w = authors_test_size(opts["inputsize"], opts.get("h"), opts.get("w"))
    record = {"format": fmt, "source": str(path.resolve()), "num_classes": num_classes, "opts": dict(opts),
              "test_size": [h, w], "backbone": backbone}
    ckpt = {"state_dict": out, "hyper_parameters": dict(module.hparams), "epoch": 0, "global_step": 0,
            "pytorch-lightning_version": lightning.__version__, "authors_import": record}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return record


def main(fmt: str, argv: Sequence[str]) -> int:
    """Command line of the three VehicleNet formats (exit 0, or 2 with one message on bad input)."""
    import sys

    p = argparse.ArgumentParser(prog=f"python -m vreid_lightning.convert {fmt}",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="the authors' net_last.pth (or net_NNN.pth)")
    p.add_argument("output", help="the suite checkpoint to write (test it with train=false ckpt_path=OUTPUT)")
    p.add_argument("--opts", help="the opts.yaml beside the file (stride, inputsize); or give both options below")
    p.add_argument("--stride", type=int, default=None, help="opts.yaml 'stride' (overrides --opts)")
    p.add_argument("--inputsize", type=int, default=None, help="opts.yaml 'inputsize' (overrides --opts)")
    args = p.parse_args(list(argv))
    try:
        opts = read_opts(args.opts, fmt) if args.opts else {}
        for k in ("stride", "inputsize"):
            if getattr(args, k) is not None:
                opts[k] = int(getattr(args, k))
        if "stride" not in opts or "inputsize" not in opts:
            raise ConfigError("give --opts opts.yaml (or both --stride and --inputsize): the file does not store them")
        if opts["stride"] not in (1, 2):
            raise ConfigError(f"--stride {opts['stride']}: expected 1 or 2")
        rec = convert(fmt, args.input, args.output, opts)
    except ConfigError as e:
        print(f"convert {fmt}: {e}", file=sys.stderr)
        return 2
    exp = "vehiclenet_cityflow_authors" if fmt.endswith("seresnext101") else "vehiclenet_veri_authors"
    bb = BACKBONE[fmt]["name"] + "_authors"
    o = rec["opts"]
    size = (f"data.image_size=[{o['h']},{o['w']}]" if o.get("h") and o.get("w") and o["h"] != o["w"]
            else f"inputsize={o['inputsize']}")
    print(f"wrote {args.output}: {fmt}, {rec['num_classes']} classes, last stride {o['stride']}, "
          f"test input {rec['test_size'][0]}x{rec['test_size'][1]} (opts.yaml inputsize {o['inputsize']})\n"
          f"test it: python -m vreid_lightning +experiment={exp} backbone={bb} backbone.last_stride={o['stride']} "
          f"{size} data.root=... source_set=none run_stages=[stage2] train=false ckpt_path={args.output}")
    return 0
