"""runner.ckpt_match: a test-only run lets a module's refit tensors differ in shape, nothing else."""

import pytest
import torch
from torch import nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.runner.ckpt_match import check_checkpoint_matches


class _Net(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.trunk = nn.Linear(4, 3)
        self.classifier = nn.Linear(3, classes)


def test_refit_prefixes_allow_another_classifier_size_and_nothing_else():
    saved = {"state_dict": _Net(8).state_dict()}
    model = _Net(12)
    with pytest.raises(ConfigError, match=r"classifier\.weight: \(8, 3\) saved, \(12, 3\) expected"):
        check_checkpoint_matches(saved, "a.ckpt", "ckpt_path", model)
    check_checkpoint_matches(saved, "a.ckpt", "ckpt_path", model, refit=("classifier.",))  # accepted
    other = {"state_dict": {**saved["state_dict"], "trunk.weight": torch.zeros(5, 4)}}
    with pytest.raises(ConfigError, match=r"trunk\.weight"):
        check_checkpoint_matches(other, "a.ckpt", "ckpt_path", model, refit=("classifier.",))
