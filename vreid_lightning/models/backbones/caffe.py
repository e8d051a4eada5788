"""Convert BVLC model-zoo Caffe weights of VGG_CNN_M(_1024) into a state dict for ``VGGCNNM``.

Reads ``.caffemodel`` / ``.binaryproto`` files with a small protobuf wire-format parser, so
neither ``caffe`` nor a compiled ``caffe.proto`` is needed. Both the current ``layer`` (field
100) and the 2014-era V1 ``layers`` (field 2) encodings are understood.

Command line::

    python -m vreid_lightning.models.backbones.caffe VGG_CNN_M_1024.caffemodel vgg_cnn_m_1024.pth \
        --mean-file VGG_mean.binaryproto
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "read_caffemodel",
    "read_blobproto",
    "caffe_blobs_to_state_dict",
    "fold_caffe_preprocessing",
    "CAFFE_LAYERS",
    "IMAGENET_RGB_MEAN",
    "IMAGENET_RGB_STD",
    "VGG_MEAN_BGR",
]

#: Caffe layer name -> our parameter prefix (fc8, the ImageNet classifier, is not kept).
CAFFE_LAYERS = {
    "conv1": "conv1",
    "conv2": "conv2",
    "conv3": "conv3",
    "conv4": "conv4",
    "conv5": "conv5",
    "fc6": "head.fc6",
    "fc7": "head.fc7",
}
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)  # torchvision normalisation of the data pipeline
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
VGG_MEAN_BGR = (103.939, 116.779, 123.68)  # per-channel ImageNet mean, BGR, 0-255 (VGG model zoo)

# NetParameter: layers (V1) = 2, layer = 100. LayerParameter: name = 1, blobs = 7.
# V1LayerParameter: layer (V0) = 1, name = 4, blobs = 6. V0LayerParameter: name = 1, blobs = 50.
# BlobProto: num/channels/height/width = 1..4, data = 5, shape = 7, double_data = 8. BlobShape: dim = 1.
_LAYER_FIELDS = {100: (1, 7), 2: (4, 6)}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError(f"truncated protobuf: a varint runs past the end (byte {pos})")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value); length-delimited values are memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5) and pos + (8 if wire == 1 else 4) > end:
            raise ValueError(f"truncated protobuf: field {field} runs past the end (byte {pos})")
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError(f"truncated protobuf: field {field} needs {size} bytes at byte {pos}, {end - pos} left")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} for field {field} at byte {pos}")
        yield field, wire, value


def _packed_varints(buf: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        out.append(value)
    return out


def _blob(buf: memoryview) -> np.ndarray:
    """Decode a BlobProto into a float32 array with its shape."""
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    shape: list[int] | None = None
    chunks: list[np.ndarray] = []
    for field, wire, value in _fields(buf):
        if field in legacy and wire == 0:
            legacy[field] = int(value)
        elif field == 5:  # float data: packed (wire 2) or one value per field (wire 5)
            chunks.append(np.frombuffer(value, dtype="<f4"))
        elif field == 8:
            chunks.append(np.frombuffer(value, dtype="<f8").astype(np.float32))
        elif field == 7:
            dims: list[int] = []
            for sub_field, sub_wire, sub_value in _fields(value):
                if sub_field == 1:
                    dims.extend(_packed_varints(sub_value) if sub_wire == 2 else [int(sub_value)])
            shape = dims
    data = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    shape = shape if shape is not None else [legacy[1], legacy[2], legacy[3], legacy[4]]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"blob has {data.size} values but its shape is {shape}")
    return data.astype(np.float32).reshape(shape)


def _layer(buf: memoryview, name_field: int, blobs_field: int) -> tuple[str, list[np.ndarray]]:
    name, blobs = "", []
    for field, _, value in _fields(buf):
        if field == name_field:
            name = bytes(value).decode("utf-8")
        elif field == blobs_field:
            blobs.append(_blob(value))
        elif name_field == 4 and field == 1:  # V1 wrapping a V0 layer
            v0_name, v0_blobs = _layer(value, 1, 50)
            name, blobs = name or v0_name, blobs or v0_blobs
    return name, blobs


def _read_bytes(path: str | os.PathLike[str]) -> memoryview:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Caffe file not found: {path}")
    return memoryview(path.read_bytes())


def read_caffemodel(path: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """Read every layer's blobs (weights, biases) from a ``.caffemodel``.

    Returns:
        Layer name -> list of float32 arrays in Caffe order (weight, then bias). Layers
        without blobs (ReLU, LRN, pooling) are left out.
    """
    layers: dict[str, list[np.ndarray]] = {}
    for field, _, value in _fields(_read_bytes(path)):
        if field in _LAYER_FIELDS:
            name, blobs = _layer(value, *_LAYER_FIELDS[field])
            if blobs:
                layers[name] = blobs
    if not layers:
        raise ValueError(f"No layers with weights found in {path}: is it a binary .caffemodel?")
    return layers


def read_blobproto(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single BlobProto file, e.g. the mean image ``VGG_mean.binaryproto`` (1, 3, H, W), BGR."""
    return _blob(_read_bytes(path))


def fold_caffe_preprocessing(
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean_bgr: Sequence[float] = VGG_MEAN_BGR,
    rgb_mean: Sequence[float] = IMAGENET_RGB_MEAN,
    rgb_std: Sequence[float] = IMAGENET_RGB_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrite a first conv trained on Caffe input to take torchvision-normalised RGB input.

    Caffe input is ``255 * (std * x + mean)`` with channels reversed (BGR) minus the mean
    pixel ``mean_bgr``. A convolution is affine in its input, so with no padding (conv1 of
    VGG_CNN_M has none) folding this into the weights and bias is exact:
    ``W'[:, c] = 255 * std[c] * W[:, 2 - c]`` and
    ``b' = b + sum_{c, kh, kw} W[:, 2 - c] * (255 * mean[c] - mean_bgr[2 - c])``.

    Args:
        weight: Caffe conv1 weight (out, 3 [BGR], kh, kw).
        bias: Caffe conv1 bias (out,).
        mean_bgr: Mean pixel subtracted by Caffe, BGR, 0-255.
        rgb_mean: Normalisation mean of the data pipeline (RGB, 0-1).
        rgb_std: Normalisation std of the data pipeline (RGB, 0-1).

    Returns:
        (weight, bias) for RGB input normalised by ``rgb_mean`` / ``rgb_std``.
    """
    w_rgb = weight.double().flip(1)  # BGR -> RGB input channels
    std = torch.tensor(rgb_std, dtype=torch.float64).view(1, 3, 1, 1)
    offset = 255.0 * torch.tensor(rgb_mean, dtype=torch.float64) - torch.tensor(mean_bgr, dtype=torch.float64).flip(0)
    new_bias = bias.double() + (w_rgb * offset.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    return (w_rgb * 255.0 * std).to(weight.dtype), new_bias.to(bias.dtype)


def caffe_blobs_to_state_dict(
    blobs: Mapping[str, Sequence[np.ndarray]],
    fold_preprocessing: bool = True,
    mean_bgr: Sequence[float] = VGG_MEAN_BGR,
) -> dict[str, torch.Tensor]:
    """Map Caffe blobs of conv1..conv5, fc6, fc7 to ``VGGCNNM`` parameter names.

    Args:
        blobs: Layer name -> [weight, bias], as returned by ``read_caffemodel`` (or built
            from ``caffe.Net(...).params`` as ``{k: [b.data for b in v]}``).
        fold_preprocessing: Fold Caffe's BGR/0-255/mean-pixel input into conv1 so the
            backbone takes torchvision-normalised RGB (``fold_caffe_preprocessing``).
        mean_bgr: Mean pixel (BGR, 0-255) the Caffe model was trained with.

    Raises:
        KeyError: A required layer is absent (the message lists the layers found).
    """
    missing = [name for name in CAFFE_LAYERS if name not in blobs]
    if missing:
        raise KeyError(f"Caffe blobs lack layers {missing}; found {sorted(blobs)}")
    state: dict[str, torch.Tensor] = {}
    for caffe_name, prefix in CAFFE_LAYERS.items():
        weight, bias = (torch.from_numpy(np.array(b, dtype=np.float32)) for b in blobs[caffe_name][:2])
        bias = bias.reshape(-1)
        if caffe_name.startswith("fc"):
            weight = weight.reshape(bias.numel(), -1)  # V1 blobs are (1, 1, out, in); C*H*W order = torch.flatten
        if caffe_name == "conv1" and fold_preprocessing:
            weight, bias = fold_caffe_preprocessing(weight, bias, mean_bgr=mean_bgr)
        state[f"{prefix}.weight"] = weight.contiguous()
        state[f"{prefix}.bias"] = bias.contiguous()
    return state


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert a VGG_CNN_M(_1024) .caffemodel into a .pth state dict and check it loads.

    A missing or wrong input file ends with one line naming it (exit code 2), not a traceback."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caffemodel", help="path to VGG_CNN_M.caffemodel or VGG_CNN_M_1024.caffemodel")
    parser.add_argument("output", help="where to write the .pth state dict")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mean-file", help="Caffe mean image (.binaryproto, BGR); averaged to a mean pixel")
    group.add_argument("--mean-bgr", type=float, nargs=3, default=VGG_MEAN_BGR, help="mean pixel, BGR, 0-255")
    parser.add_argument("--no-fold", action="store_true", help="keep Caffe's BGR / 0-255 / mean-subtracted input")
    args = parser.parse_args(argv)
    where = args.caffemodel
    try:
        if args.mean_file:
            where = args.mean_file
            mean_bgr = tuple(read_blobproto(args.mean_file).reshape(3, -1).mean(axis=1))
        else:
            mean_bgr = args.mean_bgr
        where = args.caffemodel
        state = caffe_blobs_to_state_dict(read_caffemodel(args.caffemodel), not args.no_fold, mean_bgr)
        from .registry import build_backbone

        name = "vgg_cnn_m_1024" if state["head.fc7.weight"].shape[0] == 1024 else "vgg_cnn_m"
        where = args.output
        torch.save(state, args.output)
        build_backbone(name, weights=args.output)  # strict load: fails loudly on any mismatch
    except FileNotFoundError as e:
        print(f"error: {where}: no such file ({e})", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"error: {where}: not a VGG_CNN_M or VGG_CNN_M_1024 .caffemodel (no layer {e})", file=sys.stderr)
        return 2
    except (ValueError, IndexError, RuntimeError, OSError) as e:
        print(f"error: {where}: not a readable VGG_CNN_M(_1024) Caffe file ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {name}, {sum(v.numel() for v in state.values()) / 1e6:.2f}M parameters, "
          f"mean pixel (BGR) {tuple(round(float(m), 3) for m in mean_bgr)}, folded={not args.no_fold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
