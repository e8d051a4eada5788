"""Every experiment of ``conf/experiment/`` end to end, picked up from the config tree (no list to edit).

Each one composes, and runs at ``+debug=tiny`` (``conf/debug/tiny.yaml``: a tiny synthetic world in the
experiment's own layout, so the real-data experiments run their real parsers too; two training steps per
stage; the experiment's own extra small sizes come from its ``tiny:`` section). The assertions are what
the run must have done, read from what it wrote: every stage trained and was tested, the tested model is
the last step's, the metrics are the protocol's, and the saved test features are the eval set's images.
Method-specific behaviour (RAM's stage transfer, SCAN*'s partner, VehicleNet's source merge) is tested in
each method's own file; no test here looks at an experiment's or a method's name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_papers_experiments_are_there():
    """A deleted or renamed experiment file is noticed (the parametrised tests would just shrink)."""
    assert {"baseline_synthetic", "ram_synthetic", "ram_veri", "ram_vehicleid", "scan_veri", "rnn_ha_veri",
            "vehiclenet_veri", "bot_veri"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_resolves(name: str, tmp_path: Path):
    cfg = compose([f"+experiment={name}"], tmp_path)
    assert cfg.experiment_name == name  # names the run directory: a copied file that kept another's name is caught
    for node in (cfg.data, cfg.model, cfg.trainer):
        assert get_class(node._target_) is not None
    OmegaConf.to_container(cfg.model, resolve=True)


def _tested_dirs(out: Path, results: dict) -> list[Path]:
    """The directories of the tested models: the run directory, or one per stage."""
    return [out / "stages" / s for s in results["stages"]] if results.get("stages") else [out]


def _eval_set(cfg):
    """The run's eval set, built again from its (debug-merged) data config: the target alone, no image decoding."""
    dm = instantiate(cfg.data, extra_sources=[], verify_eval_images=False, _recursive_=False)
    dm.prepare_data()
    dm.setup("test")
    return dm.eval_set


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_and_tests_at_tiny_size(name: str, tmp_path: Path, cache_dir: Path):
    from vreid_lightning.evaluation.protocol_registry import get_protocol
    from vreid_lightning.evaluation.protocols import METRIC_KEYS
    from vreid_lightning.runner.fit import SELECT_LAST
    from vreid_lightning.run import run

    cfg = compose([f"+experiment={name}", "+debug=tiny"], tmp_path)
    run(cfg)  # merges the experiment's tiny: section into cfg
    saved = json.loads((tmp_path / "results.json").read_text())
    stages = list(cfg.stages or [])
    steps = int(cfg.trainer.max_steps)

    # every stage trained its steps and was tested; nothing was selected on test images: the last step is tested
    assert list(saved.get("stages", {})) == stages
    records = list(saved["stage_checkpoints"].values()) if stages else [saved["tested_checkpoint"]]
    assert [r["global_step"] for r in records] == [steps] * len(records)
    assert all(r["rule"] == SELECT_LAST for r in records)
    assert "partial" not in saved and "partial_test" not in saved  # the whole tiny test set was evaluated

    # the reported test is the main feature's, with the protocol's metrics (spread over draws where it draws)
    eval_set = _eval_set(cfg)
    protocol = get_protocol(eval_set)
    test = saved["test"]
    assert saved["features"][saved["main_feature"]].items() <= test.items()
    expected = set(METRIC_KEYS) | (set() if protocol.fixed_query_gallery else {f"{k}_std" for k in METRIC_KEYS})
    assert {k for k in test if k in METRIC_KEYS or k.endswith("_std")} == expected
    sizes = saved.get("stage_sizes", {}).get(stages[-1]) if stages else saved.get("test_sizes")  # each size's metrics
    assert set(sizes or {}) == (set() if protocol.fixed_query_gallery else set(eval_set.groups))
    assert saved["data"]["eval_images"] == len(eval_set.split)

    # each tested model's saved features are the eval set's query and gallery images, in order
    for d in _tested_dirs(tmp_path, saved):
        files = list(d.rglob("features.npz"))
        if not protocol.fixed_query_gallery:  # repeated random galleries: no one split to save
            assert files == []
            continue
        (path,) = files
        with np.load(path) as z:
            q, g, _ = protocol.query_gallery(eval_set)
            assert list(z["query_paths"]) == [str(eval_set.split.paths[i]) for i in q]
            assert list(z["gallery_paths"]) == [str(eval_set.split.paths[i]) for i in g]
            assert z["query_feats"].shape[0] == len(q) and z["gallery_feats"].shape[0] == len(g)
            assert np.isfinite(z["query_feats"]).all()


def test_debug_tiny_generates_the_fixture_world(tmp_path: Path):
    """conftest's ``veri_world`` is the world ``+debug=tiny`` generates, so the session generates it once."""
    from tests.conftest import TINY, TINY_WORLD

    cfg = compose(["+experiment=baseline_synthetic", *TINY], tmp_path)
    assert OmegaConf.to_container(cfg.data.synthetic, resolve=True) == TINY_WORLD


def test_debug_selected_before_the_experiment_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=r"put \+debug=NAME after \+experiment=NAME"):
        run(compose(["+debug=tiny", "+experiment=baseline_synthetic"], tmp_path))


def test_a_tiny_section_key_the_config_lacks_is_refused(tmp_path: Path):
    from vreid_lightning.errors import ConfigError
    from vreid_lightning.run import run

    with pytest.raises(ConfigError, match=r"tiny: .*no_such_key"):
        run(compose(["+experiment=baseline_synthetic", "+debug=tiny", "tiny={model: {net: {no_such_key: 1}}}"],
                    tmp_path))
