"""A trained model as the entry points after ``fit`` use it: the checkpoint, its run's config, the network.

``load_trained(PATH)`` takes a checkpoint file (``RUN/checkpoints/*.ckpt``, or a staged run's
``RUN/stages/NAME/checkpoints/*.ckpt``) or a run directory (its checkpoint; a staged run's last stage), and
reads the run's ``config_resolved.yaml`` (the stage's merged config for a staged run): the test transform,
test-time augmentation and feature combination the test run used come from there and from the
checkpoint's hyper-parameters, never from defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vreid_lightning.errors import ConfigError

__all__ = ["TrainedModel", "load_trained", "resolve_checkpoint", "run_config", "default_device"]

CONFIG = "config_resolved.yaml"


@dataclass
class TrainedModel:
    """A trained ReIDModule (eval mode) with the config of the run (or stage) that trained it."""

    module: Any
    cfg: Any
    checkpoint: Path
    run_dir: Path
    stage: str | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = (int(s) for s in self.cfg.data.image_size)
        return h, w

    @property
    def eval_batch_size(self) -> int:
        return int(self.cfg.data.get("eval_batch_size", 64))

    def feature_names(self) -> list[str]:
        """The feature combinations the method offers (after one forward pass has set the layout)."""
        import torch

        h, w = self.image_size
        p = next(self.module.parameters())
        with torch.no_grad():
            out = self.module.predict_step({"image": torch.zeros(2, 3, h, w, device=p.device),
                                            "index": torch.arange(2)}, 0)
        return list(out["features"])

    def check_feature(self, name: str | None) -> str:
        """``name`` if the method offers it (None: the main feature); else one ConfigError listing them."""
        names = self.feature_names()
        chosen = name or self.module.main_feature
        if chosen not in names:
            raise ConfigError(f"--feature {chosen!r}: {type(self.module).__name__} offers {names}")
        return chosen


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint of ``path``: the file itself, or a run directory's (a staged run: its last stage's)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise ConfigError(f"checkpoint {p} does not exist (expected a .ckpt file or a run directory)")
    ckpts = sorted((p / "checkpoints").glob("*.ckpt"), key=lambda c: c.stat().st_mtime)
    if not ckpts and (p / CONFIG).is_file():  # a staged run: the last stage (in the config's order) with a checkpoint
        from omegaconf import OmegaConf

        for stage in reversed(list(OmegaConf.load(p / CONFIG).get("stages") or [])):
            ckpts = sorted((p / "stages" / str(stage) / "checkpoints").glob("*.ckpt"), key=lambda c: c.stat().st_mtime)
            if ckpts:
                break
    if not ckpts:
        raise ConfigError(f"{p}: no checkpoints/*.ckpt (or stages/*/checkpoints/*.ckpt) in this run directory")
    best = [c for c in ckpts if c.name != "last.ckpt"] or ckpts
    return best[-1]


def run_config(ckpt: Path) -> tuple[Any, Path, str | None]:
    """(config, run directory, stage name or None) of a checkpoint inside a run directory."""
    from omegaconf import OmegaConf

    from vreid_lightning.runner.stages import stage_config

    ckpt = Path(ckpt).resolve()
    owner = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if owner.parent.name == "stages" and (owner.parent.parent / CONFIG).is_file():
        root, stage = owner.parent.parent, owner.name
    else:
        root, stage = owner, None
    if not (root / CONFIG).is_file():
        raise ConfigError(f"{ckpt}: no {CONFIG} of its run found at {root / CONFIG} (a checkpoint is read "
                          "inside the run directory that wrote it: RUN/checkpoints/*.ckpt)")
    cfg = OmegaConf.load(root / CONFIG)
    if cfg.get("stages"):
        stage = stage or list(cfg.stages)[-1]
        if stage not in cfg.stages:
            raise ConfigError(f"{ckpt}: no stage {stage!r} in {root / CONFIG} (stages: {list(cfg.stages)})")
        cfg = stage_config(cfg, stage)
    return cfg, root, stage


def load_trained(path: str | Path, device: str = "cpu") -> TrainedModel:
    """Load a trained model (eval mode, on ``device``) with its run's config; see the module docstring."""
    from hydra.utils import get_class

    from vreid_lightning.callbacks.checkpoint import read_checkpoint

    ckpt = resolve_checkpoint(path)
    read_checkpoint(ckpt, "checkpoint")  # one clear error for a file that is not a checkpoint
    cfg, root, stage = run_config(ckpt)
    module = get_class(cfg.model._target_).load_from_checkpoint(str(ckpt), map_location=device, weights_only=False)
    module.eval()
    return TrainedModel(module, cfg, ckpt, root, stage)


def default_device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
