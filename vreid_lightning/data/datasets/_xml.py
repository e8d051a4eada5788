"""VeRi / CityFlow label XML (``<Item imageName=... vehicleID=... cameraID=... />``).

The files declare ``encoding="gb2312"`` but hold ASCII. ElementTree/minidom refuse multi-byte
encodings, so the bytes are decoded here (declared codec, then GB18030, then UTF-8), the declaration
is removed (its newlines kept, so line numbers stay those of the file) and expat parses the text.
The root tag is not checked (it differs between files); every ``Item`` element anywhere is read.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from xml.parsers import expat

from .base import DatasetFormatError

__all__ = ["read_label_xml"]

_DECLARATION = re.compile(r"^\s*<\?xml\b[^>]*?\?>", re.S)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _decode(path: Path, data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    head = data[:200]
    declared = _ENCODING.search(head.split(b"?>", 1)[0]) if head.lstrip().startswith(b"<?xml") else None
    candidates: list[str] = []
    if declared:
        name = declared.group(1).decode("ascii").lower()
        try:
            codecs.lookup(name)
            candidates.append(name)
        except LookupError:
            pass
        if name.startswith("gb"):
            candidates.append("gb18030")
    candidates.append("utf-8")
    for codec in candidates:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    raise DatasetFormatError(path, f"XML text decodable as one of {candidates}")


def read_label_xml(path: Path, tag: str = "Item") -> list[tuple[int, dict[str, str]]]:
    """Every ``tag`` element of ``path`` as (line number, attributes with lower-case keys).

    Raises:
        DatasetFormatError: the file is not well-formed XML (names the line) or cannot be decoded.
    """
    path = Path(path)
    text = _decode(path, path.read_bytes())
    text = _DECLARATION.sub(lambda m: "\n" * m.group(0).count("\n"), text, count=1)
    parser = expat.ParserCreate()
    items: list[tuple[int, dict[str, str]]] = []
    wanted = tag.lower()

    def start(name: str, attrs: dict[str, str]) -> None:
        if name.lower() == wanted:
            items.append((parser.CurrentLineNumber, {k.lower(): v.strip() for k, v in attrs.items()}))

    parser.StartElementHandler = start
    try:
        parser.Parse(text, True)
    except expat.ExpatError as err:
        raise DatasetFormatError(path, "well-formed XML", line=err.lineno, got=expat.ErrorString(err.code)) from None
    return items
