"""Transforms: shapes, exact flips, normalisation round trip, determinism, switches really off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vreid_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_test_transform,
    build_train_transform,
    denormalize,
)

SIZE = (24, 40)  # (height, width), deliberately non-square


def image(h: int = 30, w: int = 50, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def plain(**kw) -> dict:
    """Train-transform arguments with every augmentation off, overridden by ``kw``."""
    return {"pad": 0, "flip": 0.0, "random_erasing": 0.0, "color_jitter": 0.0, **kw}


def test_shapes_dtype_and_greyscale():
    for tf in (build_train_transform(SIZE), build_test_transform(SIZE)):
        for mode in ("RGB", "L"):
            out = tf(image(mode=mode))
            assert out.shape == (3, *SIZE) and out.dtype == torch.float32


def test_all_off_equals_test_transform():
    img = image()
    ref = build_test_transform(SIZE)(img)
    torch.manual_seed(0)
    assert torch.equal(build_train_transform(SIZE, **plain())(img), ref)
    assert len(build_train_transform(SIZE, **plain()).transforms) == len(build_test_transform(SIZE).transforms)


def test_flip_one_flips_exactly():
    img = image()
    ref = build_test_transform(SIZE)(img)
    out = build_train_transform(SIZE, **plain(flip=1.0))(img)
    assert torch.equal(out, ref.flip(-1))


def test_test_transform_values_and_round_trip():
    img = image(*SIZE)  # already at size: resize is the identity
    out = build_test_transform(SIZE)(img)
    back = denormalize(out)
    expected = torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float() / 255
    assert torch.allclose(back, expected, atol=1e-5)
    batch = torch.stack([out, out])
    assert torch.allclose(denormalize(batch, IMAGENET_MEAN, IMAGENET_STD), expected.expand(2, -1, -1, -1), atol=1e-5)
    assert denormalize(out * 10, clamp=True).max() <= 1.0
    # the test transform has no randomness at all
    torch.manual_seed(1)
    a = build_test_transform(SIZE)(img)
    torch.manual_seed(2)
    assert torch.equal(a, build_test_transform(SIZE)(img))


def test_train_deterministic_under_seed_and_random_otherwise():
    img = image()
    tf = build_train_transform(SIZE, color_jitter=0.3)
    torch.manual_seed(3)
    a = tf(img)
    torch.manual_seed(3)
    b = tf(img)
    assert torch.equal(a, b)
    outs = [tf(img) for _ in range(4)]
    assert any(not torch.equal(a, o) for o in outs)


def test_pad_crop_shifts_and_erasing_erases():
    img = image()
    ref = build_test_transform(SIZE)(img)
    torch.manual_seed(0)
    shifted = [build_train_transform(SIZE, **plain(pad=6))(img) for _ in range(6)]
    assert any(not torch.equal(s, ref) for s in shifted)
    # zero padding appears as the normalised black border on some crop
    black = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert any(torch.allclose(s[:, :, 0], black[:, None].expand(3, SIZE[0])) or
               torch.allclose(s[:, :, -1], black[:, None].expand(3, SIZE[0])) or
               torch.allclose(s[:, 0, :], black[:, None].expand(3, SIZE[1])) or
               torch.allclose(s[:, -1, :], black[:, None].expand(3, SIZE[1])) for s in shifted)
    erased = build_train_transform(SIZE, **plain(random_erasing=1.0))(img)
    diff = erased != ref
    assert diff.any() and torch.all(erased[diff] == 0)  # erased to 0 = the mean colour


def test_disabled_steps_absent():
    names = [type(t).__name__ for t in build_train_transform(SIZE, **plain()).transforms]
    for step in ("RandomCrop", "RandomHorizontalFlip", "RandomErasing", "ColorJitter"):
        assert step not in names
    on = [type(t).__name__ for t in build_train_transform(SIZE, color_jitter=0.2).transforms]
    for step in ("RandomCrop", "RandomHorizontalFlip", "RandomErasing", "ColorJitter"):
        assert step in on


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        build_train_transform((256,))
    with pytest.raises(ValueError, match="flip is a probability"):
        build_train_transform(SIZE, flip=1.5)
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        build_test_transform(SIZE, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="expected a \\(3, H, W\\)"):
        denormalize(torch.zeros(5, 5))


def test_autoaugment_first_seeded_and_default_unchanged():
    """``autoaugment=imagenet`` puts torchvision's ImageNet AutoAugment before the resize (the VehicleNet
    authors' train_2020.py:171); it is seeded; the default pipeline has no AutoAugment step."""
    kw = {"pad": 15, "resized_crop": {"scale": [0.75, 1.0], "ratio": [0.75, 1.3333]}, "interpolation": "bicubic",
          "random_erasing": 0.5}
    default = [type(t).__name__ for t in build_train_transform(SIZE, **kw).transforms]
    assert default == ["RGB", "Resize", "Pad", "RandomResizedCrop", "RandomHorizontalFlip", "ToImage",
                       "ToDtype", "Normalize", "RandomErasing"]
    assert [type(t).__name__ for t in build_train_transform(SIZE, autoaugment="none", **kw).transforms] == default
    tf = build_train_transform(SIZE, autoaugment="imagenet", **kw)
    steps = list(tf.transforms)
    assert [type(t).__name__ for t in steps] == ["RGB", "AutoAugment", *default[1:]]
    aa = steps[1]
    assert aa.policy == v2.AutoAugmentPolicy.IMAGENET and aa.fill == 128
    assert [type(t).__name__ for t in build_train_transform(SIZE, autoaugment="imagenet").transforms][:3] == \
        ["ToImage", "RGB", "AutoAugment"]   # bilinear: on the uint8 tensor, still before the resize
    img = image(60, 60)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(torch.stack([tf(img) for _ in range(8)]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    # the policy really changes pixels: with every other step off, some of 16 draws differ from the plain pipeline
    torch.manual_seed(0)
    on = build_train_transform(SIZE, autoaugment="imagenet", **plain())
    ref = build_train_transform(SIZE, **plain())(img)
    assert any(not torch.equal(on(img), ref) for _ in range(16))


def test_autoaugment_unknown_value_is_one_error():
    with pytest.raises(ValueError, match=r"autoaugment must be one of \['none', 'imagenet'\], got 'cifar10'"):
        build_train_transform(SIZE, autoaugment="cifar10")
