"""Lightning callbacks of the suite: checkpoints and model selection, the results writer."""

from vreid_lightning.callbacks.checkpoint import (BestCheckpoint, FinalEpochValidation, LastCheckpoint,
                                                  has_held_out_split, read_checkpoint)
from vreid_lightning.callbacks.results import ResultsWriter

__all__ = ["BestCheckpoint", "FinalEpochValidation", "LastCheckpoint", "ResultsWriter", "has_held_out_split",
           "read_checkpoint"]
