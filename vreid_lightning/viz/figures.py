"""A method's pictures, named by its model config (``model.figures``) and drawn by callbacks.

``model.figures`` is null (no pictures) or a Hydra ``_target_`` config of a :class:`Figures` subclass with its
sizes (``conf/model/ram.yaml``: ``{_target_: vreid_lightning.viz.ram.ResponseMaps, images: 6}``). The module keeps
it with its hyper-parameters; the results writer (:mod:`vreid_lightning.callbacks.results`) draws
:meth:`Figures.after_test` into each test's directory, and the staged runner
(:mod:`vreid_lightning.runner.stages`) draws :meth:`Figures.across_stages` once after the last stage. No caller
knows a method's name: a new method adds its pictures with a ``Figures`` subclass in ``viz/`` and one config key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vreid_lightning.errors import ConfigError

__all__ = ["Figures", "build_figures", "check_count", "eval_images", "query_images"]


class Figures:
    """The pictures of one method: override one or both hooks; each returns the paths it wrote."""

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        """Pictures of the tested ``module`` on ``dm``'s evaluation set, written into ``out``."""
        return []

    def across_stages(self, dm: Any, out: Path, stage_ckpts: Mapping[str, str | None],
                      load: Callable[[str], Any]) -> list[Path]:
        """A run-level picture of a staged run, after its last stage: ``stage_ckpts`` are the stages' tested
        checkpoints in order, ``load(path)`` rebuilds the module of one."""
        return []


def build_figures(spec: Any, where: str = "model.figures") -> Figures | None:
    """``spec`` (null, or a mapping with a ``_target_`` naming a :class:`Figures` subclass) built; one error else."""
    if spec is None:
        return None
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(f"{where}={spec!r}: expected null (no pictures) or {{_target_: a Figures class of "
                          f"vreid_lightning.viz, and its sizes}}, e.g. {{_target_: "
                          f"vreid_lightning.viz.ram.ResponseMaps, images: 6}}"
                          + ("; a count alone is the form of configs and checkpoints from before pictures were named "
                             "by their class: set the count on the class (model.figures.images=N)"
                             if isinstance(spec, int) and not isinstance(spec, bool) else ""))
    try:
        figures = instantiate(dict(spec), _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):  # the class's own check names its key
            raise e.__cause__ from None
        raise ConfigError(f"{where}: {e}") from None
    if not isinstance(figures, Figures):
        raise ConfigError(f"{where}._target_={spec['_target_']!r} built a {type(figures).__name__}, not a "
                          f"vreid_lightning.viz.figures.Figures")
    return figures


def eval_images(dm: Any, rows: Sequence[int] | Any) -> tuple[Tensor, Tensor]:
    """Evaluation images ``rows`` of ``dm.eval_set``: the network input (the test loader's transform) and, for
    display, the same images in ``[0, 1]`` RGB (normalisation undone, BGR flipped back)."""
    from vreid_lightning.data.datamodule import ImageDataset
    from vreid_lightning.data.transforms import build_test_transform, input_norm

    norm = getattr(dm, "input_norm", None) or input_norm()  # the run's input (e.g. the RAM authors' BGR 0-255)
    opts = {**norm, **getattr(dm, "test_transform_options", {})}
    ds = ImageDataset(dm.eval_set.split, build_test_transform(dm.image_size, **opts))
    x = torch.stack([ds[int(i)]["image"] for i in rows])
    shown = x * torch.tensor(opts["std"]).view(1, 3, 1, 1) + torch.tensor(opts["mean"]).view(1, 3, 1, 1)
    shown = shown / opts["pixel_range"]
    return x, (shown.flip(1) if opts["channels"] == "bgr" else shown).clamp(0.0, 1.0)


def query_images(dm: Any, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` query images of distinct identities (:func:`eval_images` of them)."""
    from vreid_lightning.data.eval_sets import one_image_per_identity

    return eval_images(dm, one_image_per_identity(dm.eval_set, n))


def check_count(value: Any, key: str) -> int:
    """``value`` as an int >= 1, or one error naming ``model.figures.<key>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.figures.{key}={value!r}: expected an int >= 1 (model.figures=null: no pictures)")
    return int(value)
