"""Before a sweep starts it says how many jobs it will run and what each costs (experiments/costs.yaml)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF
from vreid_lightning.reports.costs import load_costs, sweep_cost_lines, sweep_jobs


def _cfg(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_full_ram_ablation_is_24_jobs_with_their_recorded_cost():
    cfg = _cfg(["+experiment=ram_synthetic", "+sweep=ram_ablation"])
    jobs = sweep_jobs(cfg)
    assert isinstance(jobs, list) and len(jobs) == 2 * 2 * 3 * 2
    lines = sweep_cost_lines(cfg)
    assert lines[0].startswith("Sweep: 24 jobs")
    assert lines[24].startswith("  #23 ram_synthetic: 2 min 56 s wall, 287 MB disk")  # experiments/costs.yaml
    assert lines[-1].startswith("Total recorded: 1 h 10 min wall")      # 24 x 176 s


def test_shrunk_sweep_flags_the_budget_change_and_optuna_counts_trials():
    from omegaconf import open_dict

    cfg = _cfg(["+experiment=ram_synthetic", "+sweep=ram_ablation", "trainer.limit_train_batches=2"])
    with open_dict(cfg):  # the command line's sweep values (compose() refuses them; a multirun has them here)
        cfg.hydra.overrides.task += ["model.net.num_regions=2,3,4", "model.loss.lambda_region=1.0",
                                     "model.loss.lambda_attr=1.0", "model.net.region_overlap=0.5"]
    lines = sweep_cost_lines(cfg)
    assert lines[0].startswith("Sweep: 3 jobs") and "this job changes trainer.limit_train_batches" in lines[1]
    opt = _cfg(["+experiment=baseline_synthetic", "+hparams_search=optuna_baseline", "hydra.sweeper.n_trials=4"])
    assert sweep_jobs(opt) == 4
    assert sweep_cost_lines(opt, {})[0] == "Sweep: 4 trials of baseline_synthetic; recorded cost per trial: no recorded cost."


def test_every_recorded_cost_names_an_experiment_and_its_source():
    costs = load_costs()
    assert costs and all((CONF / "experiment" / f"{k}.yaml").is_file() for k in costs)
    assert all(c.source and c.measured and (c.wall_s or c.train_s) for c in costs.values())


def test_command_line_sweep_without_sweep_params():
    from omegaconf import open_dict

    cfg = _cfg(["+experiment=baseline_synthetic"])
    with open_dict(cfg):
        cfg.hydra.overrides.task += ["seed=1,2"]
    assert sweep_cost_lines(cfg, {})[:3] == ["Sweep: 2 jobs (recorded costs: experiments/costs.yaml, README 'Cost of a run'):",
                                             "  #0 baseline_synthetic: no recorded cost",
                                             "  #1 baseline_synthetic: no recorded cost"]
