"""``+debug=NAME`` (conf/debug/): the experiment's own small sizes, and the order of the two selections.

``conf/debug/tiny.yaml`` shrinks any experiment with the keys every experiment has (a tiny synthetic world
in the experiment's layout, small images and batches, two steps per stage). What only one experiment has
(VehicleNet's source worlds, one stage's own batch size) it declares in its own ``tiny:`` section, which
:func:`apply_debug` merges over the config when ``debug=tiny`` is selected: a key the config does not have
is refused, so a ``tiny:`` section cannot silently do nothing; an entry set to null is dropped (an
experiment built on another one removes an entry that does not apply to it).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from vreid_lightning.errors import ConfigError

__all__ = ["apply_debug"]


def _selection_order() -> list[str]:
    """The command line's group selections (``+experiment=``, ``+debug=``) in order; [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except (ValueError, AttributeError):
        return []
    return [o.lstrip("+~").split("=")[0] for o in task if o.lstrip("+~").split("=")[0] in ("experiment", "debug")]


def apply_debug(cfg: DictConfig) -> None:
    """Merge the experiment's ``tiny:`` section when ``+debug=tiny`` is selected (in place)."""
    if cfg.get("debug") is None:
        return
    order = _selection_order()
    if order == ["debug", "experiment"]:
        raise ConfigError("+debug=... is selected before +experiment=...: the experiment's sizes would override the "
                          "debug config's; put +debug=NAME after +experiment=NAME")
    own = cfg.get("tiny")
    if cfg.debug != "tiny" or own is None:
        return
    own = {k: v for k, v in own.items() if v is not None}  # null: an experiment drops an entry it inherited
    try:
        merged = OmegaConf.merge(cfg, own)
    except (ConfigKeyError, ConfigAttributeError) as e:
        raise ConfigError(f"tiny: {e.msg.splitlines()[0]} (an experiment's tiny: section overrides keys its config "
                          f"has)") from None
    with open_dict(cfg):
        for key in own:
            cfg[key] = merged[key]
