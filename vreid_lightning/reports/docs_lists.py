"""The README's lists generated from the config tree, so they cannot drift from it.

    python -m vreid_lightning.reports docs-lists --readme README.md     # rewrite the blocks
    python -m vreid_lightning.reports docs-lists --readme README.md --check   # exit 1 when they drifted

Two blocks: between ``<!-- config-lists:begin -->`` / ``<!-- config-lists:end -->`` the config groups
with their options, the experiments and the sweeps (each with the first sentence of its file's
comment); between ``<!-- costs:begin -->`` / ``<!-- costs:end -->`` the recorded costs
(``experiments/costs.yaml``). ``tests/test_docs_lists.py`` fails when the README differs.
"""

from __future__ import annotations

import re
from pathlib import Path

from vreid_lightning.errors import ConfigError
from vreid_lightning.reports.spec import CONF_DIR

__all__ = ["BLOCKS", "config_lists", "describe", "render_blocks", "update_readme_lists"]

BLOCKS = {"config-lists": ("<!-- config-lists:begin -->", "<!-- config-lists:end -->"),
          "costs": ("<!-- costs:begin -->", "<!-- costs:end -->")}
_LISTED_APART = ("experiment", "sweep", "hparams_search")
_OUTSIDE = re.compile(r"\s*(?:as extracted in |in )?`?(?:\.\./|/work/)?shared/[\w./-]*`?|\s*(?:as extracted in |in )?`?\.\./[\w./-]+`?")
_SENTENCE_END = re.compile(r"\.(?=\s+(?:[A-Z(`]|\S+=)|$)")


def describe(path: Path, limit: int = 200) -> str:
    """The first sentence of a config file's leading comment (``@package`` and command lines skipped)."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            if words:
                break
            continue
        text = line.lstrip("#").strip()
        if text.startswith(("@package", "python ", "data.root=", "-m ")) or not text:
            if words:
                break
            continue
        words.append(text)
    text = _OUTSIDE.sub("", " ".join(words))  # a config comment may cite files outside the repo; the README not
    for m in _SENTENCE_END.finditer(text):  # the first full stop that is not an abbreviation's
        if not re.search(r"\b(sec|al|Eq|Fig|e\.g|i\.e|vs|cf|resp)$", text[: m.start()]):
            text = text[: m.start()]
            break
    text = text.rstrip(".:;,")
    return text if len(text) <= limit else text[: limit - 4].rsplit(" ", 1)[0] + " ..."


def _options(group: Path) -> list[str]:
    return sorted(p.stem for p in group.glob("*.yaml"))


def config_lists(conf: Path = CONF_DIR) -> str:
    """The markdown of the config groups, experiments and sweeps under ``conf``."""
    lines = ["Config groups (`conf/`; pick an option with `GROUP=OPTION`):", ""]
    for group in sorted(p for p in conf.iterdir() if p.is_dir()):
        if group.name in _LISTED_APART:
            continue
        subs = sorted(p for p in group.iterdir() if p.is_dir())
        if _options(group):
            lines.append(f"- `{group.name}`: " + ", ".join(f"`{o}`" for o in _options(group)))
        for sub in subs:
            lines.append(f"- `{group.name}/{sub.name}`: " + ", ".join(f"`{o}`" for o in _options(sub)))
    for group, title, how in (("experiment", "Experiments", "`+experiment=NAME`"), ("sweep", "Sweeps", "`-m +sweep=NAME`"),
                              ("hparams_search", "Hyperparameter searches", "`-m +hparams_search=NAME`")):
        files = sorted((conf / group).glob("*.yaml"))
        lines += ["", f"{title} ({len(files)}, {how}):", ""]
        lines += [f"- `{f.stem}`: {describe(f)}" for f in files]
    return "\n".join(lines)


def render_blocks(conf: Path = CONF_DIR) -> dict[str, str]:
    """Each block's content (without its markers)."""
    from vreid_lightning.reports.costs import costs_table

    return {"config-lists": config_lists(conf), "costs": costs_table()}


def _replace(text: str, name: str, body: str, where: str) -> str:
    begin, end = BLOCKS[name]
    if begin not in text or end not in text:
        raise ConfigError(f"{where}: expected the markers {begin} and {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n\n{body}\n\n{end}{tail}"


def update_readme_lists(readme: str | Path, check: bool = False) -> bool:
    """Rewrite (or, with ``check``, only compare) the README's generated blocks; True when it was up to date."""
    readme = Path(readme)
    if not readme.is_file():
        raise ConfigError(f"{readme}: no such README")
    text = readme.read_text()
    new = text
    for name, body in render_blocks().items():
        new = _replace(new, name, body, str(readme))
    if new != text and not check:
        readme.write_text(new)
    return new == text
