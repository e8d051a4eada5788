"""Does a run's resolved config equal a paper-table row's, on every key that changes training or evaluation?

A row's config is what ``python -m vreid_lightning +experiment=<the run's experiment> <row overrides>``
composes (:func:`vreid_lightning.reports.check.compose_row`), with the run's seed. The run's
``config_resolved.yaml`` is compared with it key by key; budget keys (epochs, ``limit_train_batches``,
``max_steps``, stage budgets), the world, the network and the loss all count. Keys that only say where
or how verbosely a run writes, or on which hardware (:data:`IGNORED`), do not; the batch size, device
count and learning rate count through their effect (the global batch and learning rate in force, from
results.json ``batch``) when the run recorded it; neither do keys present on one side only (a run
written before a key existed, or after one was removed). Runs without a resolved config, or of an
experiment that is not in ``conf/experiment/``, cannot be compared and are matched by the row's
constraints alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from vreid_lightning.reports.runs import Run
from vreid_lightning.reports.spec import CONF_DIR, Row

__all__ = ["IGNORED", "EFFECTIVE_BATCH", "config_differences", "format_differences"]

# dotted prefixes that do not change what is trained or how it is evaluated
IGNORED: tuple[str, ...] = (
    "paths", "logger", "callbacks", "hydra", "run", "sweep", "report", "resume", "seed", "experiment_name",
    "data.root", "data.cache_dir", "data.num_workers", "data.pin_memory", "data.eval_batch_size",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "model.figures", "checkpoint", "progress",
    # where it runs, not what it trains (numerics move like thread counts do; provenance records them)
    "trainer.accelerator", "trainer.strategy", "trainer.deterministic", "trainer.benchmark",
)
# compared through their effect (results.json `batch`: the global batch and the learning rate in force)
# when the run recorded it, so 4 GPUs x 8 per rank matches a row of batch 32 on one device
EFFECTIVE_BATCH: tuple[str, ...] = ("trainer.devices", "trainer.num_nodes", "batch_semantics", "data.batch_size",
                                    "optimizer.lr")


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in IGNORED) or ".figures" in key


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


@lru_cache(maxsize=256)
def _row_config(experiment: str, overrides: tuple[str, ...], seed: Any) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

    from vreid_lightning.reports.check import compose_row

    if not (CONF_DIR / "experiment" / f"{experiment}.yaml").is_file():
        return None
    try:
        cfg = compose_row(experiment, overrides).copy()
    except Exception:  # a row that does not compose is `reports check`'s to report
        return None
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = ""  # ${hydra:runtime.output_dir} does not resolve outside a Hydra run
    cfg.seed = seed
    return _flat(OmegaConf.to_container(cfg, resolve=True))


def config_differences(run: Run, row: Row) -> list[tuple[str, Any, Any]] | None:
    """``(key, run's value, row's value)`` for each training/evaluation key on which the run differs from
    the row's config; None when the run cannot be compared (no resolved config, unknown experiment)."""
    from vreid_lightning.reports.match import same_value

    if run.config is None or run.experiment is None:
        return None
    want = _row_config(run.experiment, row.overrides, run.config.get("seed"))
    if want is None:
        return None
    got = _flat(run.config)
    batch = run.results.get("batch")
    effective = isinstance(batch, dict) and "global_batch" in batch
    diffs = [(k, got[k], v) for k, v in want.items()
             if k in got and not _ignored(k) and not (effective and k in EFFECTIVE_BATCH) and not same_value(v, got[k])]
    if effective:
        world = int(want.get("trainer.devices") or 1) * int(want.get("trainer.num_nodes") or 1)
        sem = want.get("batch_semantics", "per_rank")
        bs, lr = want.get("data.batch_size"), want.get("optimizer.lr")
        if isinstance(bs, int):
            row_global = bs if sem == "global" else bs * world
            if not same_value(row_global, batch["global_batch"]):
                diffs.append(("global batch", batch["global_batch"], row_global))
        if isinstance(lr, (int, float)) and isinstance(batch.get("lr"), (int, float)):
            row_lr = float(lr) * (world if sem == "scale_lr" else 1)
            if not same_value(row_lr, batch["lr"]):
                diffs.append(("learning rate in force", batch["lr"], row_lr))
    return diffs


def format_differences(diffs: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``key: run value (row: value)``, the first ``limit`` of them."""
    shown = [f"{k}: {g!r} (row: {w!r})" for k, g, w in diffs[:limit]]
    more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(shown) + more
