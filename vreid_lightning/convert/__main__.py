"""``python -m vreid_lightning.convert FORMAT IN OUT [options]``: import an authors' checkpoint.

``python -m vreid_lightning.convert --help`` lists the formats; ``... FORMAT --help`` gives a format's options.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from vreid_lightning.convert import FORMATS


def _usage() -> str:
    rows = "\n".join(f"  {name:<26} {desc}" for name, (_, desc) in FORMATS.items())
    return ("usage: python -m vreid_lightning.convert FORMAT IN OUT [options]\n\nformats:\n" + rows +
            "\n\n'python -m vreid_lightning.convert FORMAT --help' gives a format's options.")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    fmt = args[0]
    if fmt not in FORMATS:
        print(f"convert: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"vreid_lightning.convert.{FORMATS[fmt][0]}")
    return int(module.main(fmt, args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
