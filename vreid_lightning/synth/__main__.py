"""Command line of the synthetic world.

    python -m vreid_lightning.synth --layout veri --out /data/VeRi_synth --ids 776 --seed 0
    python -m vreid_lightning.synth --layout veriwild2 --out /data/VERI-Wild_synth --scale 0.01
    python -m vreid_lightning.synth preview --out preview.png --ids 6 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time

from .generate import LAYOUTS, generate, ids_for_scale
from .preview import make_preview

__all__ = ["main", "build_parser", "build_preview_parser"]


def _positive(name: str, lo: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{name} must be >= {lo}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Parser of the generate command."""
    p = argparse.ArgumentParser(
        prog="python -m vreid_lightning.synth",
        description="Write a synthetic vehicle re-ID world in a real dataset layout "
                    "(or: python -m vreid_lightning.synth preview --out FILE.png).")
    p.add_argument("--layout", required=True, choices=sorted(LAYOUTS), help="dataset layout to write")
    p.add_argument("--out", required=True, help="layout root to create (empty or absent)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--ids", type=_positive("--ids"), help="number of vehicle identities")
    size.add_argument("--scale", type=float, help="identities as a fraction of the real release's (e.g. 0.01 of "
                      "VERI-Wild's 40,671 ids)")
    p.add_argument("--seed", type=_positive("--seed", 0), default=0, help="world seed (default 0)")
    p.add_argument("--image-size", type=_positive("--image-size", 32), default=128,
                   help="long side of a full-resolution crop in pixels (default 128)")
    p.add_argument("--cameras", type=_positive("--cameras"), default=None,
                   help="number of cameras (default: VeRi 20, CityFlow 40, VehicleID 2, CompCars 8, VERI-Wild 174)")
    p.add_argument("--images-per-id", type=_positive("--images-per-id", 2), default=None,
                   help="mean images per identity (default: VeRi 64, CityFlow 80, VehicleID 8, CompCars 6, VERI-Wild 10)")
    p.add_argument("--workers", type=_positive("--workers", 0), default=2, help="rendering processes (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace a synthetic world previously written to --out")
    p.add_argument("--image-format", choices=("jpeg", "png"), default="jpeg",
                   help="jpeg (default, as the real datasets) or png (lossless; veri layout only)")
    p.add_argument("--square", action="store_true",
                   help="store every crop warped to --image-size x --image-size (a network's input size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_preview_parser() -> argparse.ArgumentParser:
    """Parser of the preview command."""
    p = argparse.ArgumentParser(prog="python -m vreid_lightning.synth preview",
                                description="Draw a PNG grid: one row per identity, columns = its camera views.")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--ids", type=_positive("--ids"), default=6, help="identities (rows, default 6)")
    p.add_argument("--seed", type=_positive("--seed", 0), default=0, help="world seed (default 0)")
    p.add_argument("--image-size", type=_positive("--image-size", 32), default=128, help="crop size (default 128)")
    p.add_argument("--columns", type=_positive("--columns"), default=8, help="views per identity (default 8)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "preview":
        args = build_preview_parser().parse_args(argv[1:])
        if not args.out.lower().endswith(".png"):
            build_preview_parser().error(f"--out must be a .png file, got {args.out!r}")
        path = make_preview(args.out, ids=args.ids, seed=args.seed, image_size=args.image_size, columns=args.columns)
        print(f"wrote {path}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.ids is None:
            args.ids = ids_for_scale(args.layout, args.scale)
        manifest = generate(args.layout, args.out, args.ids, seed=args.seed, image_size=args.image_size,
                            cameras=args.cameras, workers=args.workers, progress=not args.quiet,
                            images_per_id=args.images_per_id, overwrite=args.overwrite,
                            image_format=args.image_format, square=args.square)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    counts = manifest["counts"]
    print(f"wrote {args.layout} layout to {args.out}: {counts['images']} images of {args.ids} ids "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
