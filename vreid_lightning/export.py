"""Export a trained model's test-time feature network to ONNX or TorchScript, with its contract and a parity check.

    python -m vreid_lightning.export RUN_OR_CKPT --format onnx --out model.onnx
    python -m vreid_lightning.export RUN_OR_CKPT --format torchscript --out model.pt --feature f_c+f_b

The exported network maps a float32 batch ``images`` (N, 3, H, W) -- RGB, warp-resized to the run's
data.image_size, scaled to [0, 1] and normalised by the ImageNet mean/std -- to one feature (N, D): the
feature a test run evaluates (the method's main feature or --feature), with the run's test-time flip
averaging and scales inside the graph (--no-flip leaves the flip out). The batch axis is dynamic. The
contract (input name, size, colour order, mean/std, scale, output name and dimension, flip, metric,
method, checkpoint) is stored in the file: ONNX ``metadata_props`` (key ``vreid``, JSON), TorchScript
extra file ``vreid.json``.

After writing, the file is checked on real images of the run's data (its test images, through the test
transform): the exported model's features (ONNX: onnxruntime on CPU; TorchScript: torch.jit.load) must equal
the PyTorch model's to --tolerance (default 1e-4) max abs after L2 normalisation, at a batch size other than
the one traced; otherwise the export fails (exit 2) with the figure, and the file is removed.

Operators: every method's network exports (RAM, SCAN incl. its deconvolution, RNN-HA's GRU steps, VehicleNet,
the camera model). Adaptive pooling to a size that does not divide its input (VGG_CNN_M's pool5 to 6x6), which
the ONNX exporter refuses, is written as the same bins by fixed slices. Multi-scale test-time augmentation
(model.evaluation.scales other than [1.0], VehicleNet's AICity setting) resizes with antialiased bilinear
interpolation (``aten::_upsample_bilinear2d_aa``), which the TorchScript-based ONNX exporter used here (opset
17) cannot convert (ONNX's Resize gained ``antialias`` in opset 18, reachable only through the dynamo exporter
and onnxscript): it is refused for ONNX with that reason; TorchScript keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError

__all__ = ["InferenceNet", "contract", "export_model", "parity_check", "run_onnx", "build_parser", "main",
           "ExportParityError", "exportable", "INPUT_NAME", "FORMATS"]

INPUT_NAME = "images"
FORMATS = ("onnx", "torchscript")
OPSET = 17


def _static_adaptive_pool(x: Tensor, output_size: Any, reduce: str) -> Tensor:
    """Adaptive pooling as fixed slices (the bins of ``torch``'s adaptive pooling: ``floor(i H / o)`` to
    ``ceil((i + 1) H / o)``); the input size is fixed in an exported graph."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = oh or h, ow or w
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cells = []
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            cell = x[..., h0:h1, w0:w1]
            cells.append(cell.amax(dim=(-2, -1)) if reduce == "max" else cell.mean(dim=(-2, -1)))
        rows.append(torch.stack(cells, dim=-1))
    return torch.stack(rows, dim=-2)


@contextlib.contextmanager
def exportable(module: Any) -> Iterator[None]:
    """While exporting: adaptive pooling to an output size that does not divide the input (VGG_CNN_M's pool5
    to 6x6) as fixed slices, since ONNX's exporter refuses it (``adaptive_max_pool2d, output size that are not
    factor of input size``); and the LightningModule marked as being scripted (no Trainer is attached)."""
    import torch.nn.functional as F

    orig_max, orig_avg = F.adaptive_max_pool2d, F.adaptive_avg_pool2d

    def divides(x: Tensor, size: Any) -> bool:
        oh, ow = (size, size) if isinstance(size, int) else size
        return int(x.shape[-2]) % (oh or 1) == 0 and int(x.shape[-1]) % (ow or 1) == 0

    def amax(x: Tensor, output_size: Any, return_indices: bool = False) -> Any:
        if return_indices or divides(x, output_size):
            return orig_max(x, output_size, return_indices)
        return _static_adaptive_pool(x, output_size, "max")

    def avg(x: Tensor, output_size: Any) -> Tensor:
        return orig_avg(x, output_size) if divides(x, output_size) else _static_adaptive_pool(x, output_size, "avg")

    F.adaptive_max_pool2d, F.adaptive_avg_pool2d = amax, avg
    scripting = getattr(module, "_jit_is_scripting", False)
    module._jit_is_scripting = True
    try:
        with warnings.catch_warnings():  # sizes are fixed by the contract; the tracer's notes about them are noise
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        F.adaptive_max_pool2d, F.adaptive_avg_pool2d = orig_max, orig_avg
        module._jit_is_scripting = scripting


class ExportParityError(ConfigError):
    """The exported model's features differ from the PyTorch model's beyond the tolerance."""


class InferenceNet(nn.Module):
    """A trained ReIDModule's test-time feature as one forward: images -> (N, D) feature ``name``."""

    def __init__(self, module: Any, feature: str, flip: bool | None = None) -> None:
        super().__init__()
        self.module = module
        self.feature = feature
        self.flip = bool(module.eval_cfg["flip"]) if flip is None else bool(flip)

    def forward(self, images: Tensor) -> Tensor:
        m = self.module
        saved = m.eval_cfg["flip"]
        m.eval_cfg["flip"] = self.flip
        try:
            return m.combined_features({"image": images}, study=self.feature != m.main_feature)[self.feature]
        finally:
            m.eval_cfg["flip"] = saved


def contract(trained: Any, net: InferenceNet, dim: int, fmt: str) -> dict[str, Any]:
    """The preprocessing and output contract stored in the exported file."""
    from vreid_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    h, w = trained.image_size
    return {
        "format": fmt, "input": INPUT_NAME, "input_shape": ["batch", 3, h, w], "input_size_hw": [h, w],
        "colour_order": "RGB", "layout": "NCHW", "dtype": "float32",
        "resize": "warp to (H, W), bilinear, antialiased (torchvision Resize)", "scale": "pixel / 255",
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "output": net.feature, "output_dim": dim, "flip_averaged": net.flip,
        "scales": list(trained.module.eval_cfg["scales"]), "metric": trained.module.eval_cfg["metric"],
        "method": type(trained.module).__name__, "checkpoint": str(trained.checkpoint),
    }


def _safe_name(feature: str) -> str:
    return "feature" if not feature.replace("_", "").isalnum() else feature


def export_model(trained: Any, fmt: str, out: str | Path, feature: str | None = None, flip: bool | None = None,
                 trace_batch: int = 2) -> tuple[Path, dict[str, Any]]:
    """Write ``trained``'s inference network to ``out`` (``onnx`` or ``torchscript``); returns (path, contract)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {list(FORMATS)}")
    feature = trained.check_feature(feature)
    module = trained.module.cpu().eval()
    net = InferenceNet(module, feature, flip).eval()
    h, w = trained.image_size
    dummy = torch.randn(trace_batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dim = int(net(dummy).shape[1])
    meta = contract(trained, net, dim, fmt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        if list(module.eval_cfg["scales"]) != [1.0]:
            raise ConfigError(f"--format onnx: model.evaluation.scales={list(module.eval_cfg['scales'])} resizes with "
                              "antialiased bilinear interpolation (aten::_upsample_bilinear2d_aa), which the ONNX "
                              f"exporter (opset {OPSET}) cannot convert; export to torchscript, or a run tested at "
                              "scales [1.0]")
        with exportable(module):
            _export_onnx(net, dummy, out, meta)
    else:
        with torch.no_grad(), exportable(module):
            traced = torch.jit.trace(net, dummy, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"vreid.json": json.dumps(meta)})
    return out, meta


def _export_onnx(net: nn.Module, dummy: Tensor, out: Path, meta: dict[str, Any]) -> None:
    try:
        import onnx
    except ImportError:
        raise ConfigError("--format onnx needs the onnx package: pip install -e '.[export]'") from None
    name = _safe_name(meta["output"])
    meta["output_name"] = name
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(out), input_names=[INPUT_NAME], output_names=[name],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, name: {0: "batch"}}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = "vreid", json.dumps(meta)
    onnx.save(model, str(out))


def run_onnx(path: str | Path, images: np.ndarray) -> np.ndarray:
    """The features of an exported ONNX model for a normalised (N, 3, H, W) float32 batch (onnxruntime, CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the parity check of an ONNX export needs onnxruntime: pip install -e '.[export]'") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {INPUT_NAME: images.astype(np.float32)})[0]


def parity_images(trained: Any, n: int = 8) -> Tensor:
    """``n`` real images of the run's data (its test images), through the run's test transform."""
    from hydra.utils import instantiate

    from vreid_lightning.data.datamodule import ImageDataset
    from vreid_lightning.data.transforms import build_test_transform

    dm = instantiate(trained.cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("test")
    split = dm.eval_set.split
    rows = np.linspace(0, len(split) - 1, num=min(n, len(split))).round().astype(int)
    opts = dict(trained.cfg.data.get("test_transform") or {})  # the run's test resize (VehicleNet authors: 1.1x)
    ds = ImageDataset(split, build_test_transform(trained.image_size, **opts))
    return torch.stack([ds[int(i)]["image"] for i in rows])


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def parity_check(trained: Any, path: Path, meta: dict[str, Any], images: Tensor, tolerance: float = 1e-4) -> float:
    """Max abs difference (after L2 normalisation) of the exported model's features and the PyTorch model's
    on ``images``; raises :class:`ExportParityError` above ``tolerance``."""
    net = InferenceNet(trained.module.cpu().eval(), meta["output"], meta["flip_averaged"]).eval()
    with torch.no_grad():
        ref = net(images).numpy()
    if meta["format"] == "onnx":
        got = run_onnx(path, images.numpy())
    else:
        with torch.no_grad():
            got = torch.jit.load(str(path), map_location="cpu")(images).numpy()
    if got.shape != ref.shape:
        raise ExportParityError(f"{path}: parity check: exported output shape {got.shape}, PyTorch {ref.shape}")
    diff = float(np.abs(_l2(got) - _l2(ref)).max())
    if not diff <= tolerance:
        raise ExportParityError(f"{path}: parity check failed: max abs difference {diff:.3g} after L2 normalisation "
                                f"on {len(images)} real images (tolerance {tolerance:g})")
    return diff


def run_export(args: argparse.Namespace) -> dict[str, Any]:
    from vreid_lightning.inference import load_trained

    trained = load_trained(args.checkpoint, "cpu")
    flip = False if args.no_flip else None
    out, meta = export_model(trained, args.format, args.out, args.feature, flip)
    images = parity_images(trained, args.parity_images)
    try:
        diff = parity_check(trained, out, meta, images, args.tolerance)
    except ExportParityError:
        out.unlink(missing_ok=True)
        raise
    meta["parity_max_abs_diff"] = diff
    print(json.dumps(meta, indent=1))
    print(f"exported {out} ({args.format}); parity on {len(images)} real images: max abs diff {diff:.2e} after L2")
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vreid_lightning.export", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("checkpoint", help="a run directory or a checkpoint inside one (RUN/checkpoints/*.ckpt)")
    p.add_argument("--format", choices=list(FORMATS), required=True, help="onnx (opset 17) or torchscript (traced)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--feature", help="the feature combination to output (default: the method's main feature)")
    p.add_argument("--no-flip", action="store_true", help="leave the test-time flip averaging out of the graph")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="parity: max abs difference after L2 normalisation (default: %(default)s)")
    p.add_argument("--parity-images", type=int, default=8, help="real test images in the parity check (default: 8)")
    return p


def main(argv: list[str] | None = None) -> int:
    from vreid_lightning.errors import USER_ERRORS, format_user_error

    args = build_parser().parse_args(argv)
    try:
        run_export(args)
    except USER_ERRORS as e:
        print(format_user_error(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
