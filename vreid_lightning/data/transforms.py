"""Image pipelines (torchvision.transforms.v2): PIL image in, float32 CHW normalised tensor out.

Train: optional AutoAugment, warp-resize to (height, width), zero-pad + random crop back, horizontal flip, optional colour
jitter, float conversion, normalisation, random erasing. Each augmentation is off when its argument
is 0. Test: warp-resize, float conversion, normalisation. Images are always brought to 3 channels
(a greyscale image is repeated), so a dataset of mixed modes batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.transforms import v2

__all__ = ["AUTOAUGMENT_POLICIES", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "RAM_MEAN_BGR",
           "build_train_transform", "build_test_transform", "test_input_size", "denormalize", "input_norm"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}
RAM_MEAN_BGR = (102.7, 115.8, 123.5)  # RAM authors' mean pixel, B G R in 0-255 (train_RAM_finetune.prototxt:28-32)
# ``autoaugment`` values: torchvision's AutoAugment policy, or None for off
AUTOAUGMENT_POLICIES = {"none": None, "imagenet": v2.AutoAugmentPolicy.IMAGENET}
AUTOAUGMENT_FILL = 128  # the grey the VehicleNet authors fill sheared / rotated borders with (autoaugment.py:19,193)


class _ToBGR(torch.nn.Module):
    """Reverse the channel axis of a (..., 3, H, W) tensor: RGB -> BGR (Caffe's OpenCV order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.flip(-3)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or int(s) < 1 for s in size):
        raise ValueError(f"transforms: size must be (height, width) positive ints, got {tuple(size)!r}")
    return int(size[0]), int(size[1])


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"transforms: mean and std need 3 values (RGB), got mean={tuple(mean)}, std={tuple(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"transforms: std values must be > 0, got {tuple(std)}")


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"transforms: {name} is a probability in [0, 1], got {value}")
    return float(value)


def input_norm(channels: str = "rgb", pixel_range: float = 1.0, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> dict:
    """Checked keyword options of the pipelines' normalisation (``data.input_norm``).

    ``channels``: ``rgb`` or ``bgr`` (channel order fed to the network); ``mean``/``std`` are in that
    order and in units where a pixel spans ``[0, pixel_range]``: ImageNet's torchvision statistics are
    ``rgb``, 1.0; Caffe's RAM input is ``bgr``, 255, mean (102.7, 115.8, 123.5), std (1, 1, 1).
    """
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"transforms: channels must be 'rgb' or 'bgr', got {channels!r}")
    if not float(pixel_range) > 0:
        raise ValueError(f"transforms: pixel_range must be > 0, got {pixel_range}")
    _check_stats(mean, std)
    return {"channels": channels, "pixel_range": float(pixel_range), "mean": tuple(mean), "std": tuple(std)}


def _to_float(mean: Sequence[float], std: Sequence[float], channels: str = "rgb",
              pixel_range: float = 1.0) -> list[v2.Transform]:
    r = float(pixel_range)
    # uint8 pixels taken as they are when the range is 255 (Caffe's 0-255 input, exactly), else scaled to [0, 1]
    steps: list[v2.Transform] = [v2.ToDtype(torch.float32, scale=r != 255.0)]
    if channels == "bgr":
        steps.append(_ToBGR())
    if r == 255.0:
        return steps + [v2.Normalize(mean=list(mean), std=list(std))]
    return steps + [v2.Normalize(mean=[m / r for m in mean], std=[s_ / r for s_ in std])]


def _interpolation(value: str) -> v2.InterpolationMode:
    if value not in INTERPOLATIONS:
        raise ValueError(f"transforms: interpolation must be one of {list(INTERPOLATIONS)}, got {value!r}")
    return INTERPOLATIONS[value]


def _resize_steps(geometric: list[v2.Transform], interpolation: str) -> list[v2.Transform]:
    """Bilinear: resize/crop the decoded tensor (antialiased). Bicubic: on the PIL image with PIL's filter, as
    ``torchvision.transforms.Resize(..., interpolation=3)`` on a PIL image does (the VehicleNet authors' code)."""
    if interpolation == "bicubic":
        return [v2.RGB(), *geometric, v2.ToImage()]
    return [v2.ToImage(), v2.RGB(), *geometric]


def build_train_transform(
    size: Sequence[int],
    pad: int = 10,
    flip: float = 0.5,
    random_erasing: float = 0.5,
    color_jitter: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bilinear",
    resized_crop: Mapping[str, Sequence[float]] | None = None,
    channels: str = "rgb",
    pixel_range: float = 1.0,
    autoaugment: str = "none",
) -> v2.Compose:
    """Training pipeline.

    Args:
        size: (height, width) the image is warped to (aspect ratio not kept, as RAM Sec. 3.2 "warped").
        pad: zero padding on each side before a random crop back to ``size``; 0 disables both.
        flip: horizontal flip probability; 0 disables.
        random_erasing: random erasing probability (Zhong et al. 2020 defaults: area 2-33 %, aspect
            0.3-3.3, erased to 0 = the mean colour after normalisation); 0 disables.
        color_jitter: brightness/contrast/saturation jitter strength; 0 (default) disables.
        mean, std: normalisation statistics (in ``channels`` order, in ``[0, pixel_range]`` units).
        channels, pixel_range: see :func:`input_norm` (default: RGB in [0, 1]).
        interpolation: ``bilinear`` (antialiased, on tensors) or ``bicubic`` (PIL's, on the PIL image).
        resized_crop: ``{scale: [lo, hi], ratio: [lo, hi]}``: after the padding, a RandomResizedCrop back to
            ``size`` instead of a plain random crop (VehicleNet authors: Pad(15) + RandomResizedCrop(scale
            (0.75, 1), ratio (0.75, 1.3333)), train_2020.py:118-122).
        autoaugment: ``none`` (default) or ``imagenet``: torchvision's AutoAugment ImageNet policy (nearest
            interpolation, borders filled with grey 128) as the first step, on the decoded image before the
            resize (VehicleNet authors' ``--autoaug``: ``[ImageNetPolicy()] + transform_train_list``,
            train_2020.py:171), applied to every training image.

    Returns:
        A callable mapping a PIL image (or uint8 CHW tensor) to a float32 (3, H, W) tensor.
    """
    h, w = _check_size(size)
    input_norm(channels, pixel_range, mean, std)
    flip = _check_prob("flip", flip)
    random_erasing = _check_prob("random_erasing", random_erasing)
    mode = _interpolation(interpolation)
    if autoaugment not in AUTOAUGMENT_POLICIES:
        raise ValueError(f"transforms: autoaugment must be one of {list(AUTOAUGMENT_POLICIES)}, got {autoaugment!r}")
    if pad < 0 or color_jitter < 0:
        raise ValueError(f"transforms: pad and color_jitter must be >= 0, got pad={pad}, color_jitter={color_jitter}")
    geometric: list[v2.Transform] = [v2.Resize((h, w), interpolation=mode, antialias=True)]
    policy = AUTOAUGMENT_POLICIES[autoaugment]
    if policy is not None:
        geometric.insert(0, v2.AutoAugment(policy, interpolation=v2.InterpolationMode.NEAREST, fill=AUTOAUGMENT_FILL))
    if resized_crop is not None:
        extra = set(resized_crop) - {"scale", "ratio"}
        if extra or len(resized_crop.get("scale", ())) != 2 or len(resized_crop.get("ratio", ())) != 2:
            raise ValueError(f"transforms: resized_crop must be {{scale: [lo, hi], ratio: [lo, hi]}}, got {dict(resized_crop)}")
        if pad > 0:
            geometric.append(v2.Pad(int(pad), fill=0))
        geometric.append(v2.RandomResizedCrop((h, w), scale=tuple(resized_crop["scale"]),
                                              ratio=tuple(resized_crop["ratio"]), interpolation=mode, antialias=True))
    elif pad > 0:
        geometric.append(v2.RandomCrop((h, w), padding=int(pad), fill=0, padding_mode="constant"))
    if flip > 0:
        geometric.append(v2.RandomHorizontalFlip(p=flip))
    steps = _resize_steps(geometric, interpolation)
    if color_jitter > 0:
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    steps += _to_float(mean, std, channels, pixel_range)
    if random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0))
    return v2.Compose(steps)


def test_input_size(size: Sequence[int], scale: float = 1.0) -> tuple[int, int]:
    """The test input (H, W): ``size`` x ``scale``, rounded (VehicleNet authors: round(1.1 x inputsize),
    test_2020.py:137-148)."""
    h, w = _check_size(size)
    if not scale > 0:
        raise ValueError(f"transforms: the test scale must be > 0, got {scale}")
    return (h, w) if scale == 1 else (round(h * scale), round(w * scale))


def build_test_transform(
    size: Sequence[int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: float = 1.0,
    interpolation: str = "bilinear",
    channels: str = "rgb",
    pixel_range: float = 1.0,
) -> v2.Compose:
    """Deterministic test pipeline: warp-resize to (height, width) x ``scale``, float32, normalise.

    ``interpolation``: ``bilinear`` (antialiased, on tensors) or ``bicubic`` (PIL's, on the PIL image); an
    image already at the test size is left as it is either way. ``channels``, ``pixel_range``: see
    :func:`input_norm`.
    """
    h, w = test_input_size(size, scale)
    input_norm(channels, pixel_range, mean, std)
    mode = _interpolation(interpolation)
    return v2.Compose([*_resize_steps([v2.Resize((h, w), interpolation=mode, antialias=True)], interpolation),
                       *_to_float(mean, std, channels, pixel_range)])


def denormalize(
    tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    clamp: bool = False,
) -> torch.Tensor:
    """Undo :func:`v2.Normalize` for display: ``tensor * std + mean`` over the channel axis.

    Args:
        tensor: (3, H, W) or (N, 3, H, W) normalised images.
        mean, std: the statistics used to normalise.
        clamp: clip the result to [0, 1].

    Returns:
        A new tensor of the same shape in [0, 1] units.
    """
    _check_stats(mean, std)
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"denormalize: expected a (3, H, W) or (N, 3, H, W) tensor, got shape {tuple(tensor.shape)}")
    m = torch.as_tensor(list(mean), dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    s = torch.as_tensor(list(std), dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)
    out = tensor * s + m
    return out.clamp_(0.0, 1.0) if clamp else out
