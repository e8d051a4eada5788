"""Test-time augmentation: horizontal flip and multi-scale averaging, and the "cropped image" views of
VehicleNet sec. IV-C (vehicle boxes from a boxes file or torchvision's Mask R-CNN given local weights).

Multi-scale (VehicleNet sec. V-B, AICity: scale factors [1, 0.9, 0.8]), two readings (``mode``):

- ``original``: every scale resizes the original image (bilinear, antialiased); the features of all scales
  (each flip-averaged when ``flip``) are averaged.
- ``authors``: the VehicleNet authors' test code (layumi/AICIty-reID-2020 pytorch/test_2020.py:119-123,
  213-216): each factor is square-rooted and applied to the previous scale's output
  (``F.interpolate(scale_factor=...)``, bilinear, no antialias), once for the image and once for its flip;
  the features are summed (the sum and the mean differ by a global scale only).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vreid_lightning.errors import ConfigError, DatasetFormatError

__all__ = ["multi_scale_features", "SCALE_MODES", "read_boxes", "lookup_box", "crop_to_box", "MaskRCNNBoxes",
           "COCO_VEHICLES"]

COCO_VEHICLES = (3, 4, 6, 8)  # COCO category ids: car, motorcycle, bus, truck


def _resize(images: Tensor, scale: float) -> Tensor:
    if scale == 1.0:
        return images
    h, w = (int(s) for s in images.shape[-2:])  # ints also while traced for export
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


SCALE_MODES = ("original", "authors")


def _authors_views(images: Tensor, scales: Sequence[float], flip: bool):
    """test_2020.py:213-216: per flip, the square-rooted factors compounded (scale 1 leaves the input as is)."""
    for view in ([images, torch.flip(images, dims=[3])] if flip else [images]):
        x = view
        for s in scales:
            if s != 1:
                x = F.interpolate(x, scale_factor=math.sqrt(s), mode="bilinear", align_corners=False)
            yield x


@torch.no_grad()
def multi_scale_features(extract: Callable[[Tensor], dict[str, Tensor]], images: Tensor,
                         scales: Sequence[float] = (1.0,), flip: bool = True, mode: str = "original"
                         ) -> dict[str, Tensor]:
    """Named features averaged over ``scales`` and, with ``flip``, over horizontal flips (``mode``: see the
    module docstring)."""
    scales = [float(s) for s in scales]
    if not scales or any(not 0 < s <= 4 for s in scales):
        raise ConfigError(f"evaluation.scales: expected scale factors in (0, 4], got {scales}")
    if mode not in SCALE_MODES:
        raise ConfigError(f"evaluation.scale_mode={mode!r}: expected one of {list(SCALE_MODES)}")
    if mode == "authors":
        views = _authors_views(images, scales, flip)
    else:
        views = (v for s in scales for x in [_resize(images, s)] for v in ([x, torch.flip(x, dims=[3])] if flip else [x]))
    total: dict[str, Tensor] = {}
    n = 0
    for v in views:  # one view at a time (memory)
        for k, f in extract(v).items():
            total[k] = total[k] + f if k in total else f.clone()
        n += 1
    return {k: v / n for k, v in total.items()}


def read_boxes(path: str | Path) -> dict[str, tuple[float, float, float, float]]:
    """A boxes file: CSV lines ``image,x0,y0,x1,y1`` (pixels of the original image, 0-based, end
    exclusive), keyed by the image as written (a file name, or a path relative to the dataset root as the
    synthetic world's ``synth_boxes.csv``; match them with ``lookup_box``). A malformed line or an image
    listed twice raises DatasetFormatError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(path, "a boxes file (CSV: image,x0,y0,x1,y1)", got="no such file")
    out = {}
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            if not row or row[0].startswith("#") or (i == 1 and row[0] == "image"):
                continue
            try:
                x0, y0, x1, y1 = (float(v) for v in row[1:5])
            except ValueError:
                raise DatasetFormatError(path, "image,x0,y0,x1,y1 with numeric coordinates", line=i,
                                         got=",".join(row)) from None
            if len(row) != 5 or not (x1 > x0 and y1 > y0):
                raise DatasetFormatError(path, "image,x0,y0,x1,y1 with x1 > x0 and y1 > y0", line=i, got=",".join(row))
            key = Path(row[0]).as_posix()
            if key in out:
                raise DatasetFormatError(path, "each image once (file names that repeat across folders need their "
                                         "folder, e.g. image_test/000001.jpg)", line=i, got=",".join(row))
            out[key] = (x0, y0, x1, y1)
    return out


def lookup_box(table: dict[str, tuple[float, float, float, float]], image: str | Path
               ) -> tuple[float, float, float, float] | None:
    """The box of ``image`` (a full path) in a ``read_boxes`` table: the key that is the longest trailing part of
    the path (``000001.jpg``, ``image_test/000001.jpg``, ...); None when the file lists no box for it."""
    parts = Path(image).parts
    for k in range(len(parts), 0, -1):
        box = table.get("/".join(parts[-k:]))
        if box is not None:
            return box
    return None


def crop_to_box(image, box: tuple[float, float, float, float] | None):
    """Crop a PIL image to ``box`` (clipped to the image; None: the whole image)."""
    if box is None:
        return image
    w, h = image.size
    x0, y0, x1, y1 = max(0, int(box[0])), max(0, int(box[1])), min(w, int(round(box[2]))), min(h, int(round(box[3])))
    return image if x1 <= x0 or y1 <= y0 else image.crop((x0, y0, x1, y1))


class MaskRCNNBoxes:
    """Vehicle boxes from torchvision's Mask R-CNN (ResNet-50 FPN, COCO) with weights from a local file.

    Args:
        weights: path of the ``maskrcnn_resnet50_fpn`` state dict (no download here: a missing file is a
            ConfigError naming it).
        score: least detection score; the highest-scoring vehicle (COCO car, motorcycle, bus, truck) wins,
            and an image without one keeps its whole frame.
    """

    def __init__(self, weights: str | Path, score: float = 0.5, device: str | torch.device = "cpu") -> None:
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        weights = Path(weights)
        if not weights.is_file():
            raise ConfigError(f"tta.detector_weights: no Mask R-CNN weights file at {weights} (download "
                              "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth where there is internet and pass its path)")
        self.model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        self.model.eval().to(device)
        self.score, self.device = float(score), device

    @torch.no_grad()
    def __call__(self, images: Sequence[Tensor]) -> list[tuple[float, float, float, float] | None]:
        """Boxes of a list of (3, H, W) float images in [0, 1]."""
        out = []
        for det in self.model([im.to(self.device) for im in images]):
            keep = (det["scores"] >= self.score) & torch.isin(det["labels"], torch.tensor(COCO_VEHICLES,
                                                                                       device=det["labels"].device))
            if not bool(keep.any()):
                out.append(None)
                continue
            best = int(torch.argmax(torch.where(keep, det["scores"], torch.zeros_like(det["scores"]))))
            out.append(tuple(float(v) for v in det["boxes"][best].tolist()))
        return out
