"""Print a JSON summary of a dataset folder, or one clear line saying what is wrong with it.

Usage::

    python -m vreid_lightning.data.inspect --dataset veri --root /data/VeRi [--verify-images]
    python -m vreid_lightning.data.inspect --dataset compcars --root /data/CompCars --option use_all=true

The summary holds the parser's counts per split, its warnings and ``diagnostics`` (CompCars
``missing_files``, CityFlow track-file reconciliation ...) and, for VehicleID, ``checks.img2vid``
(``attribute/img2vid.txt`` against the lists read); for VERI-Wild, ``checks.test_sets``
(query/gallery sizes of test_3000/5000/10000 and of the 2.0 subsets present).

Exit status: 0 with the summary on stdout; 2 with ``error: <file>, line <n>: expected ...`` on stderr
for a broken layout, an unknown dataset or a bad option (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from .datasets import DATASETS, DatasetFormatError, canonical_name, load_dataset
from .datasets.vehicleid import check_img2vid
from .datasets.veriwild import veriwild_test_sets

# Cross-checks a dataset's extra files allow, run by inspect only (they read files training never needs).
CHECKS = {"vehicleid": {"img2vid": check_img2vid}, "veriwild": {"test_sets": veriwild_test_sets}}

__all__ = ["main", "parse_option"]


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value) with ints, floats and true/false/none recognised."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--option {text!r}: expected KEY=VALUE")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    if lowered in ("none", "null"):
        return key, None
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            continue
    return key, raw


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m vreid_lightning.data.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help=f"one of: {', '.join(sorted(DATASETS))}")
    parser.add_argument("--root", required=True, help="the dataset folder")
    parser.add_argument("--verify-images", action="store_true",
                        help="decode every image fully (slow; also catches truncated JPEGs)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a parser option, e.g. val_seed=1 or unknown_year=skip (repeatable)")
    args = parser.parse_args(argv)
    try:
        options = dict(parse_option(o) for o in args.option)
        if args.verify_images:
            options["verify_images"] = "full"  # a truncated JPEG passes a header check
        dataset = load_dataset(args.dataset, args.root, **options)
    except (DatasetFormatError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = dataset.summary()
    try:
        for name, check in CHECKS.get(canonical_name(args.dataset), {}).items():
            result = check(dataset)
            if result is not None:
                summary.setdefault("checks", {})[name] = result
    except DatasetFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
