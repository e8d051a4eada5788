"""LightningDataModule for re-ID: a training set, and the evaluation sets of the dataset's protocol.

Data flows one way: a parser reads the layout into a :class:`ReIDDataset`; this module remaps labels
to contiguous classes (per attribute, unlabelled stays -1), builds the training loader with an
identity sampler, and one evaluation loader per stage holding every image the protocol needs exactly
once. Evaluation metadata (ids, cameras, which rows are queries/gallery) is kept here as arrays and
handed to the method, which evaluates tensors, never files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from vreid_lightning.errors import ConfigError
from vreid_lightning.data.datasets import load_dataset, merge_datasets
from vreid_lightning.data.datasets.merge import SOURCE_SPLITS, VEHICLENET_OPTIONS
from vreid_lightning.data.datasets.registry import canonical_name
from vreid_lightning.data.datasets.base import MISSING, DatasetFormatError, ReIDDataset, Split
from vreid_lightning.data.samplers import build_sampler
from vreid_lightning.data.transforms import build_test_transform, build_train_transform
from vreid_lightning.data.transforms import input_norm as _input_norm

__all__ = ["EvalSet", "ImageDataset", "ReIDDataModule", "ShardSampler", "remap_labels", "format_source_table",
           "SOURCE_KEYS"]

SOURCE_KEYS = ("dataset", "root", "synthetic", "options")  # the keys of one data.extra_sources entry

log = logging.getLogger(__name__)


def remap_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to contiguous 0..C-1, keeping ``MISSING`` (-1) as the ignore label.

    Returns:
        (remapped, classes): ``classes[c]`` is the original value of class ``c``.
    """
    values = np.asarray(values, dtype=np.int64)
    known = values != MISSING
    classes, inverse = np.unique(values[known], return_inverse=True)
    out = np.full(values.shape, MISSING, dtype=np.int64)
    out[known] = inverse
    return out, classes


class ImageDataset(Dataset):
    """Images of a :class:`Split` with their (remapped) labels.

    Items are dicts: ``image`` (tensor), ``index`` (row in the split), ``pid``, ``camid``, ``timestamp``,
    ``track`` (-1 = unknown) and ``attrs`` (name -> label, -1 = unlabelled; the view is ``attrs["viewpoint"]``
    where the dataset has it).
    """

    def __init__(self, split: Split, transform: Callable, pids: np.ndarray | None = None,
                 attributes: dict[str, np.ndarray] | None = None) -> None:
        self.split = split
        self.transform = transform
        self.pids = split.pids if pids is None else pids
        self.attributes = attributes if attributes is not None else {}

    def __len__(self) -> int:
        return len(self.split)

    def load(self, i: int) -> Image.Image:
        path = self.split.paths[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetFormatError(path, "a readable image (JPEG/PNG)", got=f"{type(e).__name__}: {e}") from None
        if self.split.boxes is not None and self.split.boxes[i][0] != MISSING:
            x1, y1, x2, y2 = (int(v) for v in self.split.boxes[i])
            img = img.crop((x1, y1, x2, y2))
        return img

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "image": self.transform(self.load(i)),
            "index": i,
            "pid": int(self.pids[i]),
            "camid": int(self.split.camids[i]),
            "timestamp": int(self.split.timestamps[i]),
            "track": int(self.split.tracks[i]),
            "attrs": {k: int(v[i]) for k, v in self.attributes.items()},
        }


class ShardSampler(Sampler[int]):
    """Deterministic, non-padding shard of ``range(n)``: whole batches dealt round-robin to ranks.

    Unlike ``DistributedSampler`` it never repeats samples to even out the shards (the evaluation
    gathers features with their row indices, so uneven shards are exact), and each image lands in
    the same batch as in a single-process run, so its features are computed identically.
    """

    def __init__(self, n: int, batch_size: int = 1, rank: int | None = None, world: int | None = None) -> None:
        if world is None:
            dist = torch.distributed
            world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        rank = rank or 0
        starts = range(rank * batch_size, n, world * batch_size)
        self.indices = [i for s in starts for i in range(s, min(s + batch_size, n))]
        if not self.indices and n > 0:
            # every rank must take part in the gather at the end of the evaluation: a rank without a
            # batch of its own extracts row 0 again (de-duplicated by row index afterwards)
            self.indices = [0]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class EvalSet:
    """Every image one evaluation needs, once, and how the protocol uses them.

    Attributes:
        split: the unique images to extract features from.
        protocol: ``image`` (query vs gallery with junk removal) or ``vehicleid``.
        groups: for ``image``: ``{"query": rows, "gallery": rows}``; for ``vehicleid``:
            ``{"800": rows, "1600": rows, ...}`` (rows index ``split``).
        options: protocol options (repeats, seed ...).
    """

    split: Split
    protocol: str
    groups: dict[str, np.ndarray]
    options: dict[str, Any] = field(default_factory=dict)


def _build_eval_set(ds: ReIDDataset, test_sizes: Sequence[str] | None, options: dict[str, Any]) -> EvalSet:
    """The dataset's eval set, as its protocol object builds it (evaluation.protocol_registry)."""
    from vreid_lightning.evaluation.protocol_registry import get_protocol

    return get_protocol(ds.protocol).build_eval_set(ds, test_sizes, options)


def _hold_out_validation(train: Split, num_ids: int, seed: int, options: dict[str, Any]) -> tuple[Split, EvalSet]:
    """Split ``num_ids`` seeded identities off ``train`` as a validation set.

    With cameras: image-to-image protocol, queries = one image per (identity, camera), gallery = all
    held-out images (a query's own copy is junk: same identity, same camera). Without cameras
    (VehicleID): the random-gallery protocol on the held-out images.
    """
    ids = np.unique(train.pids)
    if not 0 < num_ids < ids.size:
        raise ConfigError(f"data.val_ids={num_ids}: expected between 1 and {ids.size - 1} "
                          f"(the training split has {ids.size} identities)")
    rng = np.random.default_rng([seed, 7])
    held = np.isin(train.pids, rng.choice(ids, size=num_ids, replace=False))
    val = train.subset(np.flatnonzero(held))
    rest = train.subset(np.flatnonzero(~held))
    if (val.camids >= 0).all():
        order = rng.permutation(len(val))
        _, first = np.unique(np.stack([val.pids[order], val.camids[order]], 1), axis=0, return_index=True)
        groups = {"query": np.sort(order[first]), "gallery": np.arange(len(val))}
        return rest, EvalSet(val, "image", groups, options)
    return rest, EvalSet(val, "vehicleid", {"val": np.arange(len(val))}, options)


def _real(root: str | Path) -> str:
    return str(Path(root).expanduser().resolve())


def format_source_table(summary: list[dict[str, Any]]) -> str:
    """The per-source summary printed before training: images, identities and class range per source."""
    rows = [(f"{i}: {s['name']}", s.get("splits", "train"), s["images"], s["ids"], s["id_offset"], s["root"])
            for i, s in enumerate(summary)]
    lines = [f"{'source':<16}{'splits':>7}{'images':>9}{'ids':>8}{'classes from':>14}  root"]
    lines += [f"{a:<16}{b:>7}{c:>9}{d:>8}{e:>14}  {f}" for a, b, c, d, e, f in rows]
    lines.append(f"{'total':<16}{'':>7}{sum(s['images'] for s in summary):>9}{sum(s['ids'] for s in summary):>8}")
    return "\n".join(lines)


def _default_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "image": torch.stack([it["image"] for it in items]),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "pid": torch.tensor([it["pid"] for it in items], dtype=torch.long),
        "camid": torch.tensor([it["camid"] for it in items], dtype=torch.long),
        "timestamp": torch.tensor([it["timestamp"] for it in items], dtype=torch.long),
        "track": torch.tensor([it["track"] for it in items], dtype=torch.long),
    }
    names = items[0]["attrs"].keys() if items else []
    out["attrs"] = {k: torch.tensor([it["attrs"][k] for it in items], dtype=torch.long) for k in names}
    return out


class ReIDDataModule(L.LightningDataModule):
    """Training and evaluation data for one target dataset (plus optional extra training sources).

    Args:
        dataset: parser name (``veri``, ``vehicleid``, ``cityflow``, ``compcars``).
        root: dataset root folder. Ignored when ``synthetic`` is given.
        dataset_options: keyword options of the parser (e.g. ``verify_images``, ``val_seed``).
        synthetic: generator parameters: the VeRi-layout (or other) synthetic world is generated
            into ``cache_dir`` on first use and reused afterwards.
        cache_dir: where synthetic worlds are cached.
        extra_sources: list of ``{dataset, root | synthetic, options}``: extra training sources merged
            with disjoint label spaces (VehicleNet, sec. III-A). ``synthetic`` generates the source as a
            synthetic world (like ``synthetic`` for the target); ``options`` override the parser's
            VehicleNet defaults (``merge.VEHICLENET_OPTIONS``). Every source is loaded, and refused with
            its name and path when missing or broken, before any training; a root given twice (target
            and source, or two sources) is refused. The target contributes its training split only.
        source_splits: what a source contributes: ``all`` (every labelled image, VehicleNet Table II's
            counts) or ``train`` (its training split).
        attributes: attribute columns to train on (None: every attribute of the training split).
        image_size: (height, width) fed to the network.
        batch_size: training batch size (P x K for the PK sampler).
        sampler: ``pk``, ``balanced`` or ``shuffle``.
        num_instances: K of the PK sampler.
        eval_batch_size, num_workers, pin_memory: loader settings.
        train_transform: keyword options of :func:`build_train_transform` (pad, flip, random_erasing ...).
        test_transform: keyword options of :func:`build_test_transform` (``scale``, ``interpolation``;
            ``mean``, ``std``: the input normalisation, ImageNet's by default).
        test_sizes: VehicleID test lists to evaluate (default: every list present).
        protocol_options: e.g. ``{"repeats": 10, "seed": 0}`` for VehicleID.
        max_train_images: cap on training images (debugging); logged loudly when it bites.
        train_labelled: train only on the images labelled with each of these attributes (the RNN-HA
            authors' VehicleID list holds the 90,168 images with a model label); None: every image.
        val_ids: hold out this many training identities (seeded) as the validation set used for
            checkpoint selection; 0: validate on the test protocol's images (no held-out set).
        seed: seed of the samplers, the training-image cap and the validation identities.
        sampler_options: options of the ``carcont`` sampler (:class:`~vreid_lightning.data.carcont.GroupBlockSampler`:
            ``blocks``, ``num_batches``).
        input_norm: the pipelines' normalisation (:func:`~vreid_lightning.data.transforms.input_norm`: channels,
            pixel_range, mean, std); default: torchvision's ImageNet RGB statistics.
    """

    def __init__(
        self,
        dataset: str = "veri",
        root: str | None = None,
        dataset_options: dict[str, Any] | None = None,
        synthetic: dict[str, Any] | None = None,
        cache_dir: str = ".cache",
        extra_sources: list[dict[str, Any]] | None = None,
        source_splits: str = "all",
        attributes: list[str] | None = None,
        image_size: Sequence[int] = (224, 224),
        batch_size: int = 64,
        sampler: str = "shuffle",
        num_instances: int = 4,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        pin_memory: bool = False,
        train_transform: dict[str, Any] | None = None,
        test_transform: dict[str, Any] | None = None,
        test_sizes: Sequence[int | str] | None = None,
        protocol_options: dict[str, Any] | None = None,
        max_train_images: int | None = None,
        train_labelled: Sequence[str] | None = None,
        val_ids: int = 0,
        seed: int = 0,
        verify_eval_images: bool = True,
        sampler_options: dict[str, Any] | None = None,
        input_norm: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if synthetic is None and not root:
            raise ConfigError(f"data.root is not set: point it at your {dataset} copy (data.root=/path/to/{dataset})")
        self.dataset_name = dataset
        self.root = root
        self.dataset_options = dict(dataset_options or {})
        self.synthetic = dict(synthetic) if synthetic else None
        self.cache_dir = cache_dir
        self.extra_sources = [dict(s) for s in (extra_sources or [])]
        if source_splits not in SOURCE_SPLITS:
            raise ConfigError(f"data.source_splits={source_splits!r}; expected one of {list(SOURCE_SPLITS)}")
        self.source_splits = source_splits
        self.source_summary: list[dict[str, Any]] = []
        for i, src in enumerate(self.extra_sources):
            unknown = sorted(set(src) - set(SOURCE_KEYS))
            if unknown or "dataset" not in src:
                raise ConfigError(f"data.extra_sources[{i}]: expected keys {list(SOURCE_KEYS)} with 'dataset' and "
                                  f"'root' or 'synthetic'; got {sorted(src)}")
            if not src.get("root") and not src.get("synthetic"):
                raise ConfigError(f"data.extra_sources[{i}] ({src['dataset']}): neither root nor synthetic is set")
        self.attribute_names = list(attributes) if attributes is not None else None
        self.image_size = tuple(int(s) for s in image_size)
        self.batch_size = batch_size
        self.sampler_name = sampler
        self.num_instances = num_instances
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.train_transform_options = dict(train_transform or {})
        self.test_transform_options = dict(test_transform or {})
        try:  # a bad test option fails here, not in the first test batch
            build_test_transform(self.image_size, **self.test_transform_options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.test_transform={self.test_transform_options}: {e}") from None
        self.test_sizes = [str(s) for s in test_sizes] if test_sizes else None
        self.protocol_options = dict(protocol_options or {})
        self.max_train_images = max_train_images
        self.train_labelled = [str(n) for n in (train_labelled or [])]
        self.val_ids = int(val_ids)
        self.seed = seed
        self.verify_eval_images = bool(verify_eval_images)
        self.sampler_options = dict(sampler_options or {})
        if self.sampler_options and sampler != "carcont":
            raise ConfigError(f"data.sampler_options={self.sampler_options} only apply to data.sampler=carcont "
                              f"(got sampler={sampler!r})")
        try:
            self.input_norm = _input_norm(**dict(input_norm or {}))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.input_norm: {e}") from None
        try:  # a bad train option (e.g. autoaugment=foo) fails here, not in the first training batch
            build_train_transform(self.image_size, **{**self.input_norm, **self.train_transform_options})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.train_transform={self.train_transform_options}: {e}") from None
        self._ready = False

    # ------------------------------------------------------------------ preparation
    def prepare_data(self) -> None:
        if self.synthetic is not None:
            from vreid_lightning.data.synthetic import ensure_synthetic_world

            ensure_synthetic_world(self.cache_dir, self.synthetic)
        for src in self.extra_sources:
            if src.get("synthetic"):
                from vreid_lightning.data.synthetic import ensure_synthetic_world

                ensure_synthetic_world(self.cache_dir, dict(src["synthetic"]))

    def _resolve_root(self) -> str:
        if self.synthetic is not None:
            from vreid_lightning.data.synthetic import ensure_synthetic_world

            return str(ensure_synthetic_world(self.cache_dir, self.synthetic))
        return str(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        root = self._resolve_root()
        self.data_root = Path(root)  # the dataset's folder as given or generated (a synthetic world's cache folder)
        self.dataset = load_dataset(self.dataset_name, root, **self.dataset_options)
        for w in self.dataset.warnings:
            log.warning("%s: %s", self.dataset_name, w)
        train = self.dataset.train
        self.source_summary: list[dict[str, Any]] = []
        if self.extra_sources:
            sources = [self.dataset] + self._load_sources(root)
            train, self.source_summary = merge_datasets(sources, "train", source_splits=self.source_splits)
            table = format_source_table(self.source_summary)
            log.info("VehicleNet training sources:\n%s", table)
        if self.max_train_images is not None and len(train) > self.max_train_images:
            log.warning("data.max_train_images=%d: training on %d of %d images (a subset!)",
                        self.max_train_images, self.max_train_images, len(train))
            rng = np.random.default_rng(self.seed)
            train = train.subset(np.sort(rng.choice(len(train), self.max_train_images, replace=False)))
        for n in self.train_labelled:
            if n not in train.attributes:
                raise ConfigError(f"data.train_labelled: {n!r} is not an attribute of the {self.dataset_name} training "
                                  f"split (available: {sorted(train.attributes)})")
            keep = np.flatnonzero(np.asarray(train.attributes[n]) >= 0)
            log.info("data.train_labelled: %d of %d training images carry a %r label; training on those",
                     len(keep), len(train), n)
            train = train.subset(keep)
        self.eval_set = _build_eval_set(self.dataset, self.test_sizes, self.protocol_options)
        self.val_set = self.eval_set
        if self.val_ids > 0:
            train, self.val_set = _hold_out_validation(train, self.val_ids, self.seed, self.protocol_options)
            log.info("validation: %d held-out training identities (%d images); training on %d identities",
                     self.val_ids, len(self.val_set.split), np.unique(train.pids).size)
        self._check_eval_data(root)
        self.train_split = train
        self.train_pids, self.pid_classes = remap_labels(train.pids)
        names = self.attribute_names if self.attribute_names is not None else sorted(train.attributes)
        unknown = [n for n in names if n not in train.attributes]
        if unknown:
            raise ConfigError(
                f"data.attributes: {unknown} not in the {self.dataset_name} training split "
                f"(available: {sorted(train.attributes)})"
            )
        self.train_attributes: dict[str, np.ndarray] = {}
        self.attribute_classes: dict[str, int] = {}
        for n in names:
            mapped, classes = remap_labels(train.attributes[n])
            if len(classes) == 0:
                log.warning("attribute %r has no labelled training image: not trained", n)
                continue
            self.train_attributes[n] = mapped
            self.attribute_classes[n] = int(len(classes))
        self._ready = True

    def _check_eval_data(self, root: str) -> None:
        """Before training: a valid query exists in each evaluated split; its images decode (data.checks)."""
        from vreid_lightning.data.checks import check_eval_images, check_eval_queries

        check_eval_queries(self.eval_set, f"{root} ({self.dataset_name} query/gallery)", "test")
        if self.val_set is not self.eval_set:
            check_eval_queries(self.val_set, f"{root} (held-out validation identities, data.val_ids)", "validation")
        if self.verify_eval_images:
            check_eval_images(self.eval_set, "query/gallery")

    def _load_sources(self, target_root: str) -> list[ReIDDataset]:
        """Load every extra source (before any training), refusing a missing/broken or repeated root."""
        from vreid_lightning.data.synthetic import ensure_synthetic_world

        seen = {_real(target_root): f"the target data.root ({self.dataset_name})"}
        out = []
        for i, src in enumerate(self.extra_sources):
            name = str(src["dataset"])
            where = f"data.extra_sources[{i}] ({name})"
            root = str(ensure_synthetic_world(self.cache_dir, dict(src["synthetic"]))) if src.get("synthetic") \
                else str(src["root"])
            real = _real(root)
            if real in seen:
                raise ConfigError(f"{where}: root {root} is also {seen[real]}: the same images would be trained on "
                                  f"twice under two label spaces; list each dataset once")
            seen[real] = where
            key = canonical_name(name)
            options = {**VEHICLENET_OPTIONS.get(key, {}), **dict(src.get("options") or {})}
            try:
                ds = load_dataset(key, root, **options)
            except (DatasetFormatError, ConfigError, FileNotFoundError) as e:
                raise ConfigError(f"{where} at {root}: {e}") from None
            for w in ds.warnings:
                log.warning("%s: %s", where, w)
            out.append(ds)
        return out

    # ------------------------------------------------------------------ properties
    def eval_set_for(self, stage: str) -> EvalSet:
        """The evaluation set of ``stage``: the held-out validation set for ``val`` when there is one."""
        return self.val_set if stage == "val" else self.eval_set

    @property
    def model_selection(self) -> str:
        """What the best checkpoint is chosen on (recorded in results.json)."""
        if self.val_set is not self.eval_set:
            return f"validation split: {self.val_ids} held-out training identities (data.val_ids)"
        return "the test protocol's images (data.val_ids=0: no held-out validation split)"

    @property
    def num_classes(self) -> int:
        return int(len(self.pid_classes))

    @property
    def sources(self) -> dict[str, Any]:
        """Per training source (``"<index>:<dataset>"``) its images, ids and class offset, and the totals;
        empty for a single-source run (what results.json records under ``data.sources``)."""
        if not self.source_summary:
            return {}
        out: dict[str, Any] = {f"{i}:{s['name']}": {"images": s["images"], "ids": s["ids"], "splits": s["splits"],
                                                     "class_offset": s["id_offset"], "root": s["root"]}
                               for i, s in enumerate(self.source_summary)}
        out["total"] = {"images": len(self.train_split), "ids": self.num_classes}
        return out

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds: Dataset, batch_size: int, sampler: Sampler | None, train: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=train,
            collate_fn=_default_collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        tf = build_train_transform(self.image_size, **{**self.input_norm, **self.train_transform_options})
        ds = ImageDataset(self.train_split, tf, self.train_pids, self.train_attributes)
        if self.sampler_name == "carcont":  # the RAM authors' CarcontImageData batches (data/carcont.py)
            from vreid_lightning.data.carcont import GroupBlockSampler

            try:
                sampler = GroupBlockSampler({"pid": self.train_pids, **self.train_attributes}, seed=self.seed,
                                            **self.sampler_options)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"data.sampler=carcont (data.sampler_options): {e}") from None
            if sampler.batch_size != self.batch_size:
                raise ConfigError(f"data.batch_size={self.batch_size} but data.sampler_options.blocks make batches of "
                                  f"{sampler.batch_size}: set them equal")
            return self._loader(ds, self.batch_size, sampler, train=True)
        extra = {"k": self.num_instances} if self.sampler_name == "pk" else {}
        what = (f"data.batch_size={self.batch_size} (data.sampler={self.sampler_name}"
                + (f", data.num_instances={self.num_instances}" if extra else "") + f") on {len(self.train_pids)} "
                f"training images of {len(set(np.asarray(self.train_pids).tolist()))} identities")
        try:
            sampler = build_sampler(self.sampler_name, self.train_pids, self.batch_size, seed=self.seed, **extra)
        except ValueError as e:
            raise ConfigError(f"{what}: {e}") from None
        if len(sampler) < self.batch_size:  # incomplete batches are dropped: the epoch would have no step at all
            raise ConfigError(f"{what}: an epoch gives {len(sampler)} samples per process, not one whole batch "
                              "(incomplete training batches are dropped); lower data.batch_size")
        return self._loader(ds, self.batch_size, sampler, train=True)

    def _eval_loader(self, eval_set: EvalSet) -> DataLoader:
        ds = ImageDataset(eval_set.split,
                          build_test_transform(self.image_size, **{**self.input_norm, **self.test_transform_options}))
        return self._loader(ds, self.eval_batch_size, ShardSampler(len(ds), self.eval_batch_size), train=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_set)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_set)
