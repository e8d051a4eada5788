"""The sweep-end table: one row per sweep point, the swept keys as columns, seeds aggregated within a
point, the objective, the best point marked (a shrunk ``+sweep=ram_ablation`` and the Optuna example)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from vreid_lightning.reports.hydra_callback import sweep_report
from vreid_lightning.reports.runs import load_runs
from vreid_lightning.reports.sweep_points import sweep_points_report, swept_keys


def _job(sweep: Path, num: int, overrides: dict[str, object], mAP: float, cfg: dict | None = None,
         provenance: bool = True) -> None:
    d = sweep / str(num)
    d.mkdir(parents=True)
    res: dict = {"experiment": "ram_synthetic", "test": {"mAP": mAP, "rank1": mAP + 0.1, "mINP": mAP / 2}}
    if provenance:
        ovs = ["+experiment=ram_synthetic", "trainer.limit_train_batches=2", *(f"{k}={v}" for k, v in overrides.items())]
        res["provenance"] = {"command": {"overrides": ovs}}
    (d / "results.json").write_text(json.dumps(res))
    config = cfg or {"experiment_name": "ram_synthetic", "seed": overrides.get("seed", 0),
                     "model": {"net": {"num_regions": overrides.get("model.net.num_regions", 3)}},
                     "paths": {"output_dir": str(d)}}
    (d / "config_resolved.yaml").write_text(yaml.safe_dump(config))


def test_ram_ablation_sweep_one_row_per_point_seeds_aggregated(tmp_path: Path):
    sweep = tmp_path / "multiruns" / "t"
    maps = {(2, 0): 0.20, (2, 1): 0.22, (3, 0): 0.30, (3, 1): 0.34, (4, 0): 0.25, (4, 1): 0.25}
    for i, ((k, seed), m) in enumerate(maps.items()):
        _job(sweep, i, {"model.net.num_regions": k, "seed": seed}, m)
    files = sweep_report(sweep, None, echo=False)
    assert [f.name for f in files] == ["sweep_summary.md", "sweep_summary.csv"]
    md = files[0].read_text()
    assert "6 runs in 3 sweep point(s); swept: `model.net.num_regions`; seeds aggregated within a point" in md
    assert "| `model.net.num_regions` | runs | test mAP (%) | rank-1 (%) | mINP (%) | best |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert rows == ["| 2 | 2 | 21.00 ± 1.41 | 31.00 ± 1.41 | 10.50 ± 0.71 |  |",
                    "| 3 | 2 | 32.00 ± 2.83 | 42.00 ± 2.83 | 16.00 ± 1.41 | **best** |",
                    "| 4 | 2 | 25.00 ± 0.00 | 35.00 ± 0.00 | 12.50 ± 0.00 |  |"]
    csv_lines = (sweep / "sweep_points.csv").read_text().splitlines()
    assert csv_lines[0] == "model.net.num_regions,runs,seeds,mAP_mean,mAP_spread,best"
    assert csv_lines[2] == "3,2,0 1,0.32,0.0282843,1"


def test_optuna_trials_are_one_row_each(tmp_path: Path):
    sweep = tmp_path / "optuna"
    trials = [(0.001, 0.0, 0.10), (0.004, 0.1, 0.15), (0.0002, 0.1, 0.05)]
    for i, (lr, ls, m) in enumerate(trials):
        _job(sweep, i, {"optimizer.lr": lr, "model.loss.label_smoothing": ls}, m)
    table = sweep_points_report(load_runs([sweep]))
    assert table.swept == ["optimizer.lr", "model.loss.label_smoothing"]
    assert len(table.rows) == 3 and [r["best"] for r in table.rows] == [False, True, False]
    assert "| 0.004 | 0.1 | 1 | 15.00 | 25.00 | 7.50 | **best** |" in table.markdown  # values from the run's config


def test_runs_without_provenance_swept_keys_from_the_resolved_configs(tmp_path: Path):
    sweep = tmp_path / "old"
    for i, k in enumerate((2, 4)):
        _job(sweep, i, {"model.net.num_regions": k}, 0.1 * (i + 1), provenance=False)
    # paths.output_dir differs too (each job's own directory): not a swept key
    assert swept_keys(load_runs([sweep])) == ["model.net.num_regions"]
