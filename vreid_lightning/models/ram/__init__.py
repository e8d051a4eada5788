"""RAM: the Region-Aware deep Model (Liu et al., ICME 2018), as a pure ``nn.Module``.

Shared conv layers (the backbone) give the map ``M``; four branches read it (RAM sec. 2, Fig. 2):

- Conv branch: pool ``M`` to 6x6, two FC layers -> ``f_c``, ID classifier (sec. 2.1).
- BN branch: ``BatchNorm2d(M)`` before the same pooling, two FC layers -> ``f_b``, ID classifier.
- Region branch: ``k`` overlapping horizontal regions of ``M``, each pooled and sent through its own
  FC layers -> ``f_rt``, ``f_rm``, ``f_rb`` (``f_r1..f_rk`` when ``k != 3``), each with its own ID
  classifier (sec. 2.2).
- Attribute branch: the Conv branch's first FC output (fc6) -> one FC layer -> ``f_a``, one classifier
  per attribute (sec. 2.3).

Training is staged (sec. 2.4, 3.3): ``baseline`` (Conv) -> ``bn`` (+BN) -> ``bn_r`` (+Region) -> ``ram``
(+Attribute); :func:`load_previous_stage` carries a trained stage into the next one.
The feature study of Table 1 is :func:`combine_features` over one feature extraction.

The package splits it by role: :mod:`.regions` (region geometry), :mod:`.branches`, :mod:`.net`
(:class:`RAMNet`), :mod:`.stages` (stage weight transfer) and :mod:`.features` (Table 1 combinations);
the names below are re-exported so ``from vreid_lightning.models.ram import ...`` keeps working.
"""

from vreid_lightning.models.ram.branches import AttributeBranch, GlobalBranch, RegionBranch
from vreid_lightning.models.ram.features import TABLE1_COMBINATIONS, combine_features, table1_combinations
from vreid_lightning.models.ram.net import BRANCHES, STAGE_BRANCHES, STAGES, RAMNet, RAMOutput
from vreid_lightning.models.ram.regions import region_bounds, region_names
from vreid_lightning.models.ram.stages import load_previous_stage

__all__ = [
    "BRANCHES",
    "STAGES",
    "STAGE_BRANCHES",
    "TABLE1_COMBINATIONS",
    "RAMOutput",
    "RAMNet",
    "GlobalBranch",
    "RegionBranch",
    "AttributeBranch",
    "region_bounds",
    "region_names",
    "load_previous_stage",
    "table1_combinations",
    "combine_features",
]
