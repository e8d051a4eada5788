"""Entry point: ``python -m vreid_lightning +experiment=NAME [overrides]``.

Thin: compose the config with Hydra, hand it to :func:`vreid_lightning.run.run`. User errors (a wrong
dataset path, a malformed annotation, an unknown option) end with one line naming the file or key and
exit code 2; set ``VREID_DEBUG=1`` for the full traceback. A run stopped by SIGTERM (a scheduler's
preemption, ``kill``) ends with exit code 143 (128 + 15, what a shell reports for SIGTERM) and prints
the command that resumes it from its last epoch boundary.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from vreid_lightning.errors import USER_ERRORS, format_user_error, worker_user_error

log = logging.getLogger("vreid_lightning")

SIGTERM_EXIT = 143  # 128 + SIGTERM, as a shell reports a process the signal ended


def resume_hint(cfg: DictConfig) -> str:
    """The command that resumes this run in its directory (the original overrides plus ``resume=``)."""
    from hydra.core.hydra_config import HydraConfig

    from vreid_lightning.run import run_dir

    over = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "break_lock="))]
    where = run_dir(cfg)
    return (f"the run stopped at its last epoch boundary; resume it with: python -m vreid_lightning "
            f"{' '.join(over)} resume={where}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from vreid_lightning.run import run
    from vreid_lightning.wandb_utils import finish_wandb

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    code = 1
    try:
        results = run(cfg)
        code = 0
        return float(results.get("test", {}).get("mAP", float("nan")))
    except SIGTERMException:  # Lightning ends its loops with a bare SystemExit: not a success
        print(f"terminated (SIGTERM): {resume_hint(cfg)}", file=sys.stderr, flush=True)
        sys.exit(SIGTERM_EXIT)
    except USER_ERRORS as e:
        if os.environ.get("VREID_DEBUG"):
            raise
        print(f"error: {format_user_error(e)}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # a user error inside a DataLoader worker (num_workers > 0): the same one line
        line = worker_user_error(e)
        if line is None or os.environ.get("VREID_DEBUG"):
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    finally:
        finish_wandb(exit_code=code)


if __name__ == "__main__":
    main()
