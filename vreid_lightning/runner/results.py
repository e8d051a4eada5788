"""results.json: the run-level summary (stages, features, model selection, provenance) and its table."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from vreid_lightning.atomic import atomic_write_text
from vreid_lightning.evaluation.protocols import METRIC_KEYS, as_float_dict

__all__ = ["summary", "format_results_table", "write_results", "test_record", "test_extras"]

log = logging.getLogger(__name__)


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The flat metrics of one test result (``METRIC_KEYS``, ``*_std`` and a method's extra metrics)."""
    metrics = res.get("metrics", {})
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    out.update({k: v for k, v in metrics.items() if k.endswith("_std")})
    out.update(metrics.get("extra", {}))  # a method's own scalar metrics (ReIDModule.extra_metrics)
    return as_float_dict(out)


def test_extras(res: dict[str, Any]) -> dict[str, Any]:
    """What a test's metrics leave out: the query counts (``queries``) and a cut-short loop (``partial``).

    ``queries: {total, evaluated, skipped_no_positive}`` (image protocol: a query whose every match is in
    its own camera has no valid positive and is left out of the averages). ``partial: {evaluated_images,
    total_images}`` when the test loop did not see every image (``trainer.limit_test_batches``,
    ``fast_dev_run``): :func:`write_results` then writes the metrics as ``partial_test``, never ``test``.
    """
    out: dict[str, Any] = {}
    m = res.get("metrics", {})
    if "num_queries" in m and "num_valid_queries" in m:
        total, valid = int(m["num_queries"]), int(m["num_valid_queries"])
        out["queries"] = {"total": total, "evaluated": valid, "skipped_no_positive": total - valid}
    if res.get("partial"):
        out["partial"] = {k: int(v) for k, v in res["partial"].items()}
    return out


def test_record(res: dict[str, Any]) -> dict[str, Any]:
    """The results.json entries of one tested model: test metrics, main feature, feature study, sizes."""
    rec: dict[str, Any] = {"test": summary(res), "main_feature": res.get("main"),
                           "features": {k: summary({"metrics": v}) for k, v in res.get("features", {}).items()}}
    if "sizes" in res.get("metrics", {}):
        rec["test_sizes"] = {k: summary({"metrics": m}) for k, m in res["metrics"]["sizes"].items()}
    rec.update(test_extras(res))
    return rec


def format_results_table(results: dict[str, Any]) -> str:
    """A plain-text table of the test metrics (and stages / feature combinations when present)."""
    cols = ["mAP", "rank1", "rank5", "rank10", "mINP"]
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, m in results.get("stages", {}).items():
        rows.append((f"stage {name}", m))
    for name, m in results.get("features", {}).items():
        rows.append((f"feature {name}", m))
    part = results.get("partial")
    if part:
        rows.append((f"PARTIAL test ({part['evaluated_images']} of {part['total_images']} images)",
                     results.get("partial_test", results.get("test", {}))))
    else:
        rows.append(("test (final)", results.get("test", {})))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in rows:
        lines.append(f"{name:<{width}}" + "".join(
            f"{m[c]:>9.4f}" if isinstance(m.get(c), float) else f"{'-':>9}" for c in cols))
    q = results.get("queries")
    if q:
        lines.append(f"queries: {q['total']} total, {q['evaluated']} evaluated, {q['skipped_no_positive']} skipped "
                     f"(no valid positive in the gallery)")
    if part:
        lines.append("PARTIAL: the test loop was limited (trainer.limit_test_batches / fast_dev_run); these are not "
                     "test results and results.json holds them as partial_test")
    return "\n".join(lines)


@rank_zero_only
def write_results(out: Path, results: dict[str, Any], cfg: DictConfig | None = None, dm: Any = None) -> None:
    """Write ``results.json`` (with the run's provenance) and print the table and the run directory."""
    if cfg is not None and "provenance" not in results:
        from vreid_lightning.provenance import collect_provenance

        results["provenance"] = collect_provenance(cfg, dm)
    if results.get("partial") and "test" in results:  # a cut-short evaluation is never written as the test
        results["partial_test"] = results.pop("test")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, sort_keys=True))
    print(format_results_table(results))
    print(f"\nRun directory: {out.resolve()}")
