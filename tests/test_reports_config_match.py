"""A paper-table row counts a run only when the run's resolved config equals the row's composed config
on every key that changes training or evaluation (budget keys included); other runs are listed apart
as "not matching (key: value)", never averaged into the cell."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from vreid_lightning.reports.check import compose_row
from vreid_lightning.reports.generate import paper_report
from vreid_lightning.reports.runs import load_runs

SPEC = {
    "paper": "Config match",
    "tables": {"t": {
        "heading": "Table M", "dataset": "Toy", "units": "fraction",
        "experiments": {"synthetic": "baseline_synthetic"}, "synthetic_world": "the world",
        "labels": ["Row"], "columns": [{"name": "mAP", "path": "mAP"}],
        "rows": [{"labels": ["baseline"], "at": "test", "overrides": [], "paper": [0.5]}]}},
}


def _run(sweep: Path, name: str, mAP: float, seed: int = 0, **changes: object) -> None:
    cfg = compose_row("baseline_synthetic", ()).copy()
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = str(sweep / name)
    cfg.seed = seed
    for k, v in changes.items():
        OmegaConf.update(cfg, k.replace("__", "."), v)
    d = sweep / name
    d.mkdir(parents=True)
    (d / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (d / "results.json").write_text(json.dumps({"experiment": "baseline_synthetic", "test": {"mAP": mAP}}))


def test_shrunk_and_changed_runs_are_listed_apart_not_averaged(tmp_path: Path):
    spec = tmp_path / "tables.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    sweep = tmp_path / "sweep"
    _run(sweep, "0", 0.40)
    _run(sweep, "1", 0.44, seed=1, data__num_workers=0, trainer__enable_progress_bar=False)  # no effect on training
    _run(sweep, "2", 0.10, trainer__limit_train_batches=2)                                 # a shrunk budget
    _run(sweep, "3", 0.90, model__net__num_regions=2)                                      # another network
    report = paper_report(spec, load_runs([sweep]))
    md = report.markdown
    assert "| baseline | 0.500 | 0.420 ± 0.028 | 2 |" in md  # runs 0 and 1 only (two seeds)
    assert "Runs kept apart" in md
    assert f"- baseline: `{sweep / '2' / 'results.json'}` not matching (trainer.limit_train_batches: 2 (row: None))" in md
    assert f"- baseline: `{sweep / '3' / 'results.json'}` not matching (model.net.num_regions: 2 (row: 3))" in md
    assert report.unmatched == []  # kept apart is not "matches no row"
    assert ",0.42,0.0282843,2," in report.csv


def test_hardware_keys_do_not_count_the_global_batch_does(tmp_path: Path):
    """4 ranks x 8 per rank on GPUs matches a row of batch 32 on one CPU; 4 x 32 does not."""
    spec = tmp_path / "tables.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    sweep = tmp_path / "sweep"
    _run(sweep, "0", 0.40, trainer__accelerator="gpu", trainer__strategy="ddp", trainer__devices=4,
         data__batch_size=8)
    _run(sweep, "1", 0.30, trainer__accelerator="gpu", trainer__strategy="ddp", trainer__devices=4)
    for name, gb in (("0", 32), ("1", 128)):
        f = sweep / name / "results.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "batch": {"global_batch": gb, "lr": 0.001}}))
    md = paper_report(spec, load_runs([sweep])).markdown
    assert "| baseline | 0.500 | 0.400 |" in md
    assert f"`{sweep / '1' / 'results.json'}` not matching (global batch: 128 (row: 32))" in md
