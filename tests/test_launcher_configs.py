"""The scale-out and sweep configs compose: the SLURM and local submitit launchers, the Optuna search
example, the paper-table sweeps and the leaderboard (every method it lists, with its overrides)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_one_task_per_gpu():
    cfg = compose_hydra(["+experiment=ram_veri", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.gpus_per_node) == ("gpu", 2, 4)
    assert launcher.tasks_per_node == 4  # Lightning's SLURMEnvironment: one task per GPU
    assert OmegaConf.to_container(launcher, resolve=False)["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    assert launcher.timeout_min > 0 and launcher.max_num_timeout == 0


def test_local_launcher_composes():
    cfg = compose_hydra(["+experiment=baseline_synthetic", "hydra/launcher=local"])
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert cfg.hydra.callbacks.sweep_report._target_ == "vreid_lightning.reports.hydra_callback.SweepReport"


def test_optuna_search_example_targets_keys_that_exist():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_hydra(["+experiment=baseline_synthetic", "+hparams_search=optuna_baseline"])
    sw = cfg.hydra.sweeper
    assert "Optuna" in sw._target_ and sw.direction == "maximize" and sw.sampler.seed == 0
    for key in sw.params:
        assert OmegaConf.select(cfg, key) is not None, key  # every searched key is a real config key


@pytest.mark.parametrize("sweep,table", [("ram_table1", "table1"), ("ram_table2", "table2")])
def test_paper_table_sweeps_name_their_table(sweep: str, table: str):
    from vreid_lightning.reports.spec import load_paper_tables

    cfg = compose_hydra(["+experiment=ram_synthetic", f"+sweep={sweep}"])
    assert list(cfg.report.tables) == [table]
    assert table in load_paper_tables(REPO / cfg.report.paper_tables).tables
    assert "seed" in cfg.hydra.sweeper.params


def test_leaderboard_methods_compose_on_one_world():
    """Every experiment the leaderboard sweeps composes with the sweep's pinned world and trunk."""
    cfg = compose_hydra(["+sweep=leaderboard_synthetic"])
    params = dict(cfg.hydra.sweeper.params)
    experiments = params.pop("+experiment").split(",")
    params.pop("seed")
    assert {"baseline_synthetic", "ram_synthetic"} <= set(experiments)
    pinned = [f"{k}={v}" for k, v in params.items()]
    seen = set()
    for exp in experiments:
        assert (CONF / "experiment" / f"{exp}.yaml").is_file(), exp
        c = compose_hydra(["+sweep=leaderboard_synthetic", f"+experiment={exp}", *pinned])
        seen.add((c.data.dataset, str(dict(c.data.synthetic)), tuple(c.data.image_size), c.backbone.width_mult,
                  c.backbone.norm))
    assert len(seen) == 1  # the same world, input size and trunk for every method
    assert cfg.report.leaderboard is True and "leaderboard_synthetic" in str(cfg.hydra.sweep.dir)
