"""A method's pictures are config (``model.figures``) drawn by callbacks from ``viz/``: the results writer calls
whatever the config names, a bad spec is one error before training, and ``methods/`` draws nothing."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, REPO
from vreid_lightning.callbacks.results import ResultsWriter
from vreid_lightning.errors import ConfigError
from vreid_lightning.viz.figures import Figures, build_figures

PACKAGE = REPO / "vreid_lightning"


class Planted(Figures):
    """A picture no method knows: writes ``<tag>.txt`` with the module's and the datamodule's names."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        path = Path(out) / f"{self.tag}.txt"
        path.write_text(f"{module.name} {dm}")
        return [path]


def _module(figures: Any) -> SimpleNamespace:
    res = {"main": "f", "metrics": {"mAP": 0.5}, "features": {"f": {"mAP": 0.5}}}
    return SimpleNamespace(name="planted-module", hparams={"figures": figures}, eval_results={"test": res},
                           last_test_eval=None)


def test_results_writer_draws_what_the_config_names(tmp_path: Path):
    module = _module({"_target_": f"{__name__}.Planted", "tag": "drawn"})
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path), datamodule="the-dm")
    writer = ResultsWriter(rank_list=0)
    writer.setup(trainer, module, "fit")
    writer.on_test_end(trainer, module)
    assert (tmp_path / "drawn.txt").read_text() == "planted-module the-dm"
    assert tmp_path / "drawn.txt" in writer.written
    off = ResultsWriter(rank_list=0, figures=False)  # the writer's own switch
    off.setup(trainer, module, "fit")
    (tmp_path / "drawn.txt").unlink()
    off.on_test_end(trainer, module)
    assert not (tmp_path / "drawn.txt").exists()


@pytest.mark.parametrize(("spec", "match"), [
    (6, r"model\.figures=6: expected null .*model\.figures\.images=N"),
    ({"images": 2}, r"expected null .*_target_"),
    ({"_target_": "collections.OrderedDict"}, r"built a OrderedDict, not a .*Figures"),
    ({"_target_": "vreid_lightning.viz.ram.ResponseMaps", "images": 0},
     r"model\.figures\.images=0: expected an int >= 1"),
    ({"_target_": "vreid_lightning.viz.vehiclenet.VehicleNetFigures", "per_identity": -1},
     r"model\.figures\.per_identity=-1"),
    ({"_target_": "vreid_lightning.viz.nowhere.Figs"}, r"model\.figures: .*nowhere"),
])
def test_a_bad_figures_spec_is_one_error_at_setup(spec: Any, match: str):
    with pytest.raises(ConfigError, match=match):
        ResultsWriter().setup(SimpleNamespace(), _module(spec), "fit")


def test_null_is_no_pictures():
    assert build_figures(None) is None


@pytest.mark.parametrize("path", sorted((CONF / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_configs_figures_build(path: Path):
    spec = OmegaConf.to_container(OmegaConf.load(path)).get("figures")
    built = build_figures(spec, f"{path.name}: figures")
    assert built is None or isinstance(built, Figures)


def test_methods_draw_nothing_and_callbacks_do_not_reach_methods():
    """The layering a reader checks with grep (issue 21): pictures live in viz/, called from callbacks."""
    drawing = re.compile(r"\bviz\b|matplotlib|PIL\b")
    for f in sorted((PACKAGE / "methods").glob("*.py")):
        hits = [ln for ln in f.read_text().splitlines() if drawing.search(ln)]
        assert not hits, f"{f.name} draws: {hits}"
    for f in sorted((PACKAGE / "callbacks").glob("*.py")):
        hits = [ln for ln in f.read_text().splitlines() if re.search(r"vreid_lightning\.methods|\bmethods\.", ln)]
        assert not hits, f"{f.name} reaches into methods/: {hits}"


def test_vehiclenet_fig8_is_drawn_across_the_stages_from_their_logs(tmp_path: Path):
    from vreid_lightning.viz.vehiclenet import VehicleNetFigures

    for stage, losses in (("stage1", [3.0, 2.0]), ("stage2", [1.5, 1.0, 0.5])):
        log = tmp_path / "stages" / stage / "csv" / "version_0" / "metrics.csv"
        log.parent.mkdir(parents=True)
        log.write_text("step,train/loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(losses)))
    drawn = VehicleNetFigures().across_stages(None, tmp_path, {"stage1": "a.ckpt", "stage2": "b.ckpt"}, load=None)
    assert drawn == [tmp_path / "training_losses.png"] and drawn[0].read_bytes()[:4] == b"\x89PNG"
    assert VehicleNetFigures().across_stages(None, tmp_path / "none", {"stage1": None}, load=None) == []
