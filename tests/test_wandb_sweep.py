"""A real 2-job sweep through the submitit local launcher with logger=wandb (offline, no key): each job
runs in its own process, the sweep ends with its paper table (the sweep-end Hydra callback), and the
offline wandb run files hold the group, job type, summary, media, resolved config and the sweep's table.

The wandb files are read as written (the LevelDB-style log of protobuf records that ``wandb sync``
uploads), not through mocks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from conftest import TINY, run_cli

# the sweep's budget: a row names it too, since a run counts for a row only at the row's own config
SHRUNK = [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.check_val_every_n_epoch=1",
          "callbacks.results_writer.rank_list=4"]  # +debug=tiny draws none; the rank list is uploaded as media
SPEC = {
    "paper": "Sweep test",
    "tables": {"t1": {
        "heading": "Table T", "dataset": "Toy", "units": "fraction",
        "experiments": {"synthetic": "baseline_synthetic"}, "synthetic_world": "the tiny world",
        "labels": ["Seed"], "columns": [{"name": "mAP", "path": "mAP"}, {"name": "Top-1", "path": "rank1"}],
        "rows": [{"labels": ["seed 1"], "at": "test", "overrides": [*SHRUNK, "seed=1"], "paper": [0.5, 0.6]},
                 {"labels": ["seed 2"], "at": "test", "overrides": [*SHRUNK, "seed=2"], "paper": [0.5, 0.6]},
                 {"labels": ["seed 3"], "at": "test", "overrides": [*SHRUNK, "seed=3"], "paper": [0.5, 0.6]}]}},
}


def read_wandb_records(path: Path) -> list:
    """Records of a ``.wandb`` file: a 7-byte header, then 32 KiB blocks of (crc32 u32, length u16,
    type u8, data) chunks (FULL=1, FIRST=2, MIDDLE=3, LAST=4), each record a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, out, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += room
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts += chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            out.append(rec)
            parts = b""
    return out


def run_info(run_dir: Path) -> dict:
    """Group, job type, config keys, summary and history keys of an offline run directory."""
    (f,) = run_dir.glob("*.wandb")
    info: dict = {"group": None, "job_type": None, "config": {}, "summary": {}, "history": set()}
    for rec in read_wandb_records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            info["group"], info["job_type"] = rec.run.run_group, rec.run.job_type
            info["config"].update({i.key: i.value_json for i in rec.run.config.update})
        elif kind == "config":
            info["config"].update({i.key: i.value_json for i in rec.config.update})
        elif kind == "summary":
            info["summary"].update({i.key or "/".join(i.nested_key): i.value_json for i in rec.summary.update})
        elif kind == "history":
            info["history"].update(i.key or i.nested_key[0] for i in rec.history.item)  # media: nested keys
    return info


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, veri_world: Path) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("sweep")
    spec = tmp / "tables.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    home = tmp / "home"
    home.mkdir()
    env = {"HOME": str(home), "WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(home / ".netrc"),
           "WANDB_DISABLE_GIT": "true", "WANDB_SILENT": "true"}
    p = run_cli(["-m", "+experiment=baseline_synthetic", *SHRUNK, "seed=1,2", "hydra/launcher=local", "logger=wandb",
                 f"+report.paper_tables={spec}", "+report.tables=[t1]", "+report.name=table_t"],
                tmp, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (sweep_dir,) = (tmp / "outputs" / "baseline_synthetic" / "multiruns").iterdir()
    return sweep_dir, p.stdout


def test_local_launcher_ran_two_jobs_in_their_own_processes(sweep):
    sweep_dir, _ = sweep
    assert sorted(p.parent.name for p in sweep_dir.glob("*/results.json")) == ["0", "1"]
    logs = list((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # submitit wrote one job log per sweep point
    seeds = sorted(yaml.safe_load((sweep_dir / n / "config_resolved.yaml").read_text())["seed"] for n in "01")
    assert seeds == [1, 2]


def test_sweep_ends_by_writing_and_printing_its_table(sweep):
    sweep_dir, stdout = sweep
    md = (sweep_dir / "table_t.md").read_text()
    for n, seed in (("0", 1), ("1", 2)):
        m = json.loads((sweep_dir / n / "results.json").read_text())["test"]
        assert f"| seed {seed} | 0.500 | 0.600 | {m['mAP']:.3f} | {m['rank1']:.3f} |" in md
    assert "| seed 3 | 0.500 | 0.600 | no run | no run |" in md
    assert "### Table T: paper vs the suite on the tiny world" in stdout and "Sweep table:" in stdout
    # before the first job: the job count and each job's recorded cost (reports/costs.py)
    assert stdout.index("Sweep: 2 jobs") < stdout.index("Sweep table:") and "#1 baseline_synthetic: " in stdout
    # and the sweep-points table beside the paper table: one point, its two seeds aggregated
    points = (sweep_dir / "sweep_points.md").read_text()
    assert "2 runs in 1 sweep point(s); swept: nothing (every run is one point); seeds aggregated" in points
    assert (sweep_dir / "table_t.csv").read_text().startswith("table,row,column")


def test_wandb_offline_files_group_summary_media_config_and_table(sweep):
    sweep_dir, _ = sweep
    job_runs = sorted(sweep_dir.glob("[01]/wandb/offline-run-*"))
    assert len(job_runs) == 2
    infos = [run_info(r) for r in job_runs]
    group = f"baseline_synthetic-sweep-{sweep_dir.name}"
    assert {i["group"] for i in infos} == {group}                       # grouped by the sweep
    assert {i["job_type"] for i in infos} == {"baseline_synthetic"}     # job type: the experiment
    for n, info in zip("01", infos):
        test = json.loads((sweep_dir / n / "results.json").read_text())["test"]
        assert float(info["summary"]["final/mAP"]) == pytest.approx(test["mAP"])   # final metrics in the summary
        cfg = {k: json.loads(v) for k, v in info["config"].items()}
        cfg = {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in cfg.items()}
        assert cfg["experiment_name"] == "baseline_synthetic" and cfg["seed"] == int(n) + 1   # the resolved config
        assert cfg["data"]["image_size"] == [96, 96] and cfg["debug"] == "tiny"
        assert {"media/rank_list", "media/cmc"} <= info["history"]                 # media: rank list, CMC curve
    (table_run,) = sweep_dir.glob("wandb/offline-run-*")
    info = run_info(table_run)
    assert info["group"] == group and info["job_type"] == "sweep_table"
    assert "table_t" in info["history"]
    (table_json,) = table_run.glob("files/media/table/table_t_*.table.json")
    table = json.loads(table_json.read_text())
    assert table["columns"][:3] == ["table", "row", "column"]
    assert {r[1] for r in table["data"]} == {"seed 1", "seed 2", "seed 3"}
