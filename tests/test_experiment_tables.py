"""experiments/ram/make_tables.py fills the README tables from results.json, not by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "ram" / "make_tables.py"


def test_tables_are_generated_from_results(tmp_path: Path):
    veri = {"experiment": "ram_synthetic", "stage_features": {
        "baseline": {"f_c": {"mAP": 0.1234, "rank1": 0.2, "rank5": 0.3}},
        "ram": {"f_c+f_b+f_r+f_a": {"mAP": 0.4567, "rank1": 0.5, "rank5": 0.6}}}}
    vid = {"experiment": "ram_synthetic_vehicleid", "stage_sizes": {
        "ram": {"800": {"rank1": 0.71, "rank5": 0.81}, "1600": {"rank1": 0.72, "rank5": 0.82},
                "2400": {"rank1": 0.73, "rank5": 0.83}}}}
    (tmp_path / "v.json").write_text(json.dumps(veri))
    (tmp_path / "i.json").write_text(json.dumps(vid))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- tables:begin -->\nold\n<!-- tables:end -->\noutro\n")
    p = subprocess.run([sys.executable, str(SCRIPT), "--veri", str(tmp_path / "v.json"), "--vehicleid",
                        str(tmp_path / "i.json"), "--readme", str(readme)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| baseline | [f_c] | 0.550 | 0.848 | 0.931 | 0.123 | 0.200 | 0.300 |" in text
    assert "| RAM | [f_c; f_b; f_r; f_a] | 0.615 | 0.886 | 0.940 | 0.457 | 0.500 | 0.600 |" in text
    assert "0.710 / 0.720 / 0.730" in text and "0.810 / 0.820 / 0.830" in text
    # a results file that is not a staged run is refused with its name
    (tmp_path / "flat.json").write_text(json.dumps({"test": {}}))
    p = subprocess.run([sys.executable, str(SCRIPT), "--veri", str(tmp_path / "flat.json"), "--readme", str(readme)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "flat.json" in p.stderr
