"""The evaluation protocols as objects: every caller asks the eval set's protocol, none compares its name.

An eval set (``vreid_lightning.data.datamodule.EvalSet``) carries ``split`` (``pids``, ``camids``),
``protocol`` (a name registered here), ``groups`` (rows of ``split``) and ``options``. The protocol object
says how those rows are scored:

- ``image`` (VeRi-776, CityFlow's labelled validation split): one fixed query set against one gallery,
  junk = same identity and same camera (when every image has a camera).
- ``vehicleid``: per test size, ``repeats`` random galleries of one image per vehicle, every other image a
  query, no junk rule (datasets.md sec. 2); the first size is the main result.

CityFlow registers no protocol of its own: the AI City Challenge scores image-to-image retrieval against a
hidden ground truth, so a labelled CityFlow evaluation is VehicleNet's validation split under ``image``;
its ``*_track.txt`` files give each image's track (``Split.tracks``), which no published CityFlow protocol
scores by. Each protocol also builds its eval set from a parsed dataset (:meth:`Protocol.build_eval_set`),
so the dataset's ``protocol`` name is compared here only.

``get_protocol(name)`` returns the object; :func:`run_protocol` is the one evaluation call of the suite.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from .features import evaluate_features, row_index
from .protocols import image_protocol, vehicleid_draw, vehicleid_protocol

__all__ = ["Protocol", "ImageProtocol", "VehicleIDProtocol", "PROTOCOLS", "get_protocol", "run_protocol",
           "register_protocol"]


def _rows(x: np.ndarray, feats: torch.Tensor) -> torch.Tensor | slice:
    """Index of ``feats`` rows ``x``: a slice (a view, no copy of the features) for consecutive rows."""
    index = row_index(x, feats.shape[0])
    return index if isinstance(index, slice) else torch.as_tensor(index, device=feats.device)


def _cams(split: Any) -> np.ndarray | None:
    """The split's cameras, or None when some image has none (then there is no junk rule)."""
    cams = np.asarray(split.camids)
    return cams if bool((cams >= 0).all()) else None


class Protocol(abc.ABC):
    """How the rows of an eval set are scored.

    Attributes:
        name: the registered name (``EvalSet.protocol``).
        fixed_query_gallery: whether there is one fixed query/gallery split (post-processing, saved
            ``features.npz`` and the test rank list need it).
    """

    name: ClassVar[str]
    fixed_query_gallery: ClassVar[bool]

    @abc.abstractmethod
    def build_eval_set(self, ds: Any, test_sizes: Sequence[Any] | None, options: dict[str, Any]) -> Any:
        """The ``EvalSet`` of a parsed dataset (``ReIDDataset``): every image the test needs, once, and its groups."""

    @abc.abstractmethod
    def evaluate(self, feats: torch.Tensor, eval_set: Any, metric: str) -> dict[str, Any]:
        """Flat metrics (fractions) of features row-aligned with ``eval_set.split``."""

    @abc.abstractmethod
    def cmc_curves(self, feats: torch.Tensor, eval_set: Any, metric: str, max_rank: int = 50) -> dict[str, np.ndarray]:
        """CMC curves (rank 1..K) of the test, scored as :meth:`evaluate` scores it, by name."""

    @abc.abstractmethod
    def query_gallery(self, eval_set: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One query/gallery split of the set (for pictures): ``(query rows, gallery rows, cameras or None)``."""


class ImageProtocol(Protocol):
    """Image-to-image query vs gallery with the same-camera junk rule (datasets.md sec. 1)."""

    name = "image"
    fixed_query_gallery = True

    def build_eval_set(self, ds: Any, test_sizes: Sequence[Any] | None, options: dict[str, Any]) -> Any:
        """The dataset's query split then its gallery split; groups ``query`` and ``gallery``."""
        from vreid_lightning.data.datamodule import EvalSet
        from vreid_lightning.data.datasets.base import DatasetFormatError, Split

        if test_sizes:  # never ignored silently: only VehicleID's protocol has test lists to pick
            from vreid_lightning.errors import ConfigError

            raise ConfigError(f"data.test_sizes={list(test_sizes)}: dataset {ds.name!r} is evaluated under the image "
                              "protocol (one query/gallery split); test_sizes picks VehicleID's test lists. Set it to null")
        if ds.query is None or ds.gallery is None:
            raise DatasetFormatError(ds.root, "query and gallery splits for the image-to-image protocol")
        split = Split.concat([ds.query, ds.gallery])
        nq = len(ds.query)
        return EvalSet(split, self.name, {"query": np.arange(nq), "gallery": np.arange(nq, len(split))}, options)

    def query_gallery(self, eval_set: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return eval_set.groups["query"], eval_set.groups["gallery"], _cams(eval_set.split)

    def evaluate(self, feats: torch.Tensor, eval_set: Any, metric: str) -> dict[str, Any]:
        q, g, cams = self.query_gallery(eval_set)
        pids = eval_set.split.pids
        return image_protocol(feats[_rows(q, feats)], feats[_rows(g, feats)], pids[q], pids[g],
                              None if cams is None else cams[q], None if cams is None else cams[g], metric=metric)

    def cmc_curves(self, feats: torch.Tensor, eval_set: Any, metric: str, max_rank: int = 50) -> dict[str, np.ndarray]:
        q, g, cams = self.query_gallery(eval_set)
        pids = eval_set.split.pids
        res = evaluate_features(feats[_rows(q, feats)], feats[_rows(g, feats)], pids[q], pids[g],
                                None if cams is None else cams[q], None if cams is None else cams[g], metric,
                                max(1, min(max_rank, len(g))))
        return {"all queries": np.asarray(res["cmc"], dtype=np.float64)}


class VehicleIDProtocol(Protocol):
    """VehicleID's repeated random galleries per test size (``options``: ``repeats``, ``seed``)."""

    name = "vehicleid"
    fixed_query_gallery = False

    def build_eval_set(self, ds: Any, test_sizes: Sequence[Any] | None, options: dict[str, Any]) -> Any:
        """The images of the test lists (``test_sizes``; default: every list), each once; one group per size."""
        from vreid_lightning.data.datamodule import EvalSet
        from vreid_lightning.data.datasets.base import DatasetFormatError, Split

        sizes = [str(s) for s in (test_sizes or list(ds.test_lists))]
        missing = [s for s in sizes if s not in ds.test_lists]
        if missing:
            raise DatasetFormatError(Path(ds.root) / "train_test_split",
                                     f"test lists for sizes {missing} (found: {sorted(ds.test_lists, key=int)})")
        parts, groups, offset = [], {}, 0
        path_row: dict[str, int] = {}
        for s in sizes:
            lst = ds.test_lists[s]
            rows = np.empty(len(lst), dtype=np.int64)
            new = []
            for j, p in enumerate(lst.paths):
                r = path_row.get(p)
                if r is None:
                    r = path_row[p] = offset + len(new)
                    new.append(j)
                rows[j] = r
            parts.append(lst.subset(new))
            offset += len(new)
            groups[s] = rows
        return EvalSet(Split.concat(parts), self.name, groups, options)

    @staticmethod
    def _options(eval_set: Any) -> tuple[int, int]:
        opts = eval_set.options
        return int(opts.get("repeats", 10)), int(opts.get("seed", 0))

    def query_gallery(self, eval_set: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The first test size's first seeded draw."""
        rows = next(iter(eval_set.groups.values()))
        q, g = vehicleid_draw(eval_set.split.pids[rows], self._options(eval_set)[1], 0)
        return rows[q], rows[g], None

    def evaluate(self, feats: torch.Tensor, eval_set: Any, metric: str) -> dict[str, Any]:
        repeats, seed = self._options(eval_set)
        sizes = {size: vehicleid_protocol(feats[_rows(rows, feats)], eval_set.split.pids[rows], repeats=repeats,
                                          seed=seed, metric=metric)
                 for size, rows in eval_set.groups.items()}
        first = next(iter(sizes))
        return {**sizes[first], "main_size": first, "sizes": sizes}

    def cmc_curves(self, feats: torch.Tensor, eval_set: Any, metric: str, max_rank: int = 50) -> dict[str, np.ndarray]:
        repeats, seed = self._options(eval_set)
        curves = {}
        for size, rows in eval_set.groups.items():
            ids, sub = eval_set.split.pids[rows], feats[_rows(rows, feats)]
            per = []
            for r in range(repeats):
                qi, gi = vehicleid_draw(ids, seed, r)
                res = evaluate_features(sub[_rows(qi, sub)], sub[_rows(gi, sub)], ids[qi], ids[gi], None, None, metric,
                                        max(1, min(max_rank, len(gi))))
                per.append(np.asarray(res["cmc"], dtype=np.float64))
            n = min(len(c) for c in per)
            curves[f"test size {size}"] = np.mean([c[:n] for c in per], axis=0)
        return curves


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol object under its ``name`` (a dataset whose ``protocol`` names it is then evaluable)."""
    PROTOCOLS[protocol.name] = protocol
    return protocol


for _p in (ImageProtocol(), VehicleIDProtocol()):
    register_protocol(_p)


def get_protocol(name_or_eval_set: Any) -> Protocol:
    """The protocol object of a name or of an eval set (its ``protocol``); one clear error for an unknown name."""
    name = getattr(name_or_eval_set, "protocol", name_or_eval_set)
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown evaluation protocol {name!r}; registered: {sorted(PROTOCOLS)}") from None


def run_protocol(feats: torch.Tensor, eval_set: Any, metric: str) -> dict[str, Any]:
    """Evaluate features (rows of ``eval_set.split``) under the set's protocol.

    Returns a flat dict of metrics (fractions); VehicleID adds ``<metric>_std`` for the main size
    (the first listed) and ``sizes`` with every size's metrics.
    """
    return get_protocol(eval_set).evaluate(feats, eval_set, metric)
