"""The docs agree with the code: the README's lists are generated from the config tree (this test fails
when they drift), and no doc points outside the repository."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from vreid_lightning.reports.docs_lists import config_lists, describe, update_readme_lists

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "experiments").glob("*/README.md"))]


def test_readme_lists_match_the_config_tree():
    assert update_readme_lists(REPO / "README.md", check=True), (
        "README.md's generated lists differ from conf/ or experiments/costs.yaml: run "
        "`python -m vreid_lightning.reports docs-lists --readme README.md`")


def test_every_experiment_sweep_and_option_is_listed(tmp_path: Path):
    text = config_lists()
    for f in (REPO / "conf").rglob("*/*.yaml"):  # every group option (config.yaml is the top config)
        assert f"`{f.stem}`" in text, f
    # a new experiment file makes the README stale: the check says so
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "experiment" / "toy_new.yaml").write_text("# @package _global_\n# A toy experiment. More words.\n")
    assert "- `toy_new`: A toy experiment\n" in config_lists(conf) + "\n"
    assert describe(conf / "sweep" / "ram_ablation.yaml").startswith("RAM ablation: loss weights (Eq. 1), number of regions")


def test_no_doc_points_outside_the_repository():
    outside = re.compile(r"(\.\./[\w./-]+|/work/[\w./-]+|\bshared/[\w./-]+|authors-code/)")
    bad = [f"{d.relative_to(REPO)}: {m.group(0)}" for d in DOCS for m in outside.finditer(d.read_text())]
    assert not bad, bad
