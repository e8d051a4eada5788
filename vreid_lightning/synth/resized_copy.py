"""A copy of a dataset tree with every image resized to one fixed size (for conformance checks).

    python -m vreid_lightning.synth.resized_copy SRC DST --size 224 [--width W]

The authors' test code resizes with PIL and the suite with torchvision: on images already at the network's
input size both resizes are the identity, so a run on the copy and the authors' code see the same pixels
(``../shared/authors-code/README.md``). Lists, annotations and every other file are copied unchanged and
image names are kept (the layout parsers read the copy as they read the original). Images are re-encoded
in their own format (JPEG at quality 95, PNG lossless); both sides decode them with PIL.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "resized_copy", "main"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def resized_copy(src: str | Path, dst: str | Path, size: tuple[int, int]) -> int:
    """Copy ``src`` to ``dst`` (which must not exist), resizing each image to ``size`` = (height, width)
    with PIL's bilinear filter; returns the number of images written."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such dataset folder")
    if dst.exists():
        raise FileExistsError(f"{dst} exists: give a new folder")
    h, w = size
    count = 0
    for path in sorted(src.rglob("*")):
        out = dst / path.relative_to(src)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            shutil.copy2(path, out)
            continue
        with Image.open(path) as im:
            fmt = im.format
            img = im.convert("RGB").resize((w, h), Image.BILINEAR)
        img.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vreid_lightning.synth.resized_copy", description=__doc__.split("\n")[0])
    p.add_argument("src", help="dataset root to copy (e.g. a synthetic world)")
    p.add_argument("dst", help="new folder for the copy")
    p.add_argument("--size", type=int, required=True, help="image height (and width unless --width)")
    p.add_argument("--width", type=int, default=None, help="image width (default: --size)")
    args = p.parse_args(argv)
    try:
        n = resized_copy(args.src, args.dst, (args.size, args.width or args.size))
    except (FileNotFoundError, FileExistsError) as e:
        print(f"resized_copy: {e}", file=sys.stderr)
        return 2
    print(f"{n} images at {args.size}x{args.width or args.size} (HxW) in {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
