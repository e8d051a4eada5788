"""The Done-when command: `-m +experiment=ram_synthetic +sweep=ram_table1` ends by printing and writing RAM's
Table 1 with paper and suite columns; its shrunk runs are listed apart from the rows they do not match. Slow (four RAM steps per seed): `pytest -m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY, run_cli


@pytest.mark.slow
def test_ram_table1_sweep_prints_and_writes_table1(tmp_path: Path, veri_world: Path):
    stages = [f"stages.{s}.trainer.{k}=1" for s in ("baseline", "bn", "bn_r", "ram")
              for k in ("max_epochs", "check_val_every_n_epoch")]
    p = run_cli(["-m", "+experiment=ram_synthetic", "+sweep=ram_table1", *TINY, *stages,
                 "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"], tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "ram_synthetic" / "multiruns").iterdir()
    md = (sweep / "paper_tables.md").read_text()
    assert "### Table 1 (VeRi): paper vs the suite on the synthetic VeRi-layout world" in md
    assert "| Model | Feature | paper mAP | paper Top-1 | paper Top-5 | ours mAP | ours Top-1 | ours Top-5 | runs |" in md
    # the shrunk runs (tiny world, one epoch per step) differ from the rows' config: listed apart, never
    # averaged into the "ours" cells (reports/config_match.py)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "no run" in ln]
    assert len(rows) == 14 and rows[0].startswith("| baseline | [f_c] | 0.550 | 0.848 | 0.931 | no run |")
    apart = [ln for ln in md.splitlines() if ln.startswith("- ") and "not matching (" in ln]
    assert len(apart) == 14 * 2 and all("data.synthetic.ids: 12 (row: 100)" in ln for ln in apart)
    assert "### Table 1 (VeRi)" in p.stdout and (sweep / "paper_tables.csv").is_file()
