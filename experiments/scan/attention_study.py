"""What a trained SCAN model's attention does on the evaluation images: one PNG, one JSON of numbers.

    python experiments/scan/attention_study.py RUN_DIR [--out DIR] [--images 256] [--ablate]

RUN_DIR is a finished SCAN run (its ``config_resolved.yaml`` and ``checkpoints/last.ckpt``). The figure
shows (a) the mean SAB weight map over the images and (b) its spread across images at each position
(image-specific attention shows as spread), (c) the CAB weights of 32 images x all channels, channels
sorted by their mean weight, and (d) each channel's spread across images against its mean. The numbers:
the SAB's range, the share of its variance that is image-specific, and the same for the CAB. With
``--ablate``, the test protocol is also run with each branch's output frozen to its mean over the images
(``sab_mean_map``: the same map for every image; ``sab_constant``: one value everywhere; ``cab_mean``: the
same channel weights for every image; ``cab_constant``) to measure what the image-specific part adds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vreid_lightning.data.datamodule import ImageDataset
from vreid_lightning.data.transforms import build_test_transform
from vreid_lightning.methods.scan import SCANModule

__all__ = ["attention_statistics", "ablation_metrics", "main"]


@torch.no_grad()
def attention_statistics(model: SCANModule, images: torch.Tensor, batch: int = 64) -> dict[str, np.ndarray]:
    """SAB maps ``(N, h, w)`` and CAB weights ``(N, c)`` of ``images`` (eval mode)."""
    model.eval()
    spatial, channel = [], []
    for i in range(0, len(images), batch):
        out = model.net(images[i:i + batch])
        if out.spatial is not None:
            spatial.append(out.spatial[:, 0].numpy())
        if out.channel is not None:
            channel.append(out.channel[:, :, 0, 0].numpy())
    return {"spatial": np.concatenate(spatial) if spatial else None,
            "channel": np.concatenate(channel) if channel else None}


@torch.no_grad()
def ablation_metrics(model: SCANModule, dm, stats: dict[str, np.ndarray], batch: int = 128) -> dict[str, dict[str, float]]:
    """Test-protocol metrics of ``model`` with each branch's output replaced by its mean over ``stats``."""
    from vreid_lightning.evaluation.protocol_registry import run_protocol

    att = model.net.attention
    split = dm.eval_set.split
    ds = ImageDataset(split, build_test_transform(dm.image_size))
    variants: dict[str, tuple[str, torch.Tensor] | None] = {"full": None}
    if stats["spatial"] is not None:
        s = torch.as_tensor(stats["spatial"])
        variants["sab_mean_map"] = ("spatial", s.mean(0)[None, None])
        variants["sab_constant"] = ("spatial", s.mean().reshape(1, 1, 1, 1))
    if stats["channel"] is not None:
        c = torch.as_tensor(stats["channel"])
        variants["cab_mean"] = ("channel", c.mean(0)[None, :, None, None])
        variants["cab_constant"] = ("channel", c.mean().reshape(1, 1, 1, 1).expand(1, c.shape[1], 1, 1))
    out: dict[str, dict[str, float]] = {}
    model.eval()
    for name, frozen in variants.items():
        branch = getattr(att, frozen[0]) if frozen else None
        if frozen:
            value = frozen[1]
            branch.forward = lambda f, v=value: v.expand(f.shape[0], v.shape[1], *(f.shape[2:] if v.shape[2] > 1 else (1, 1)))
        feats = []
        for i in range(0, len(split), batch):
            x = torch.stack([ds[j]["image"] for j in range(i, min(i + batch, len(split)))])
            feats.append(model.net(x).features[model.net.feature_name])
        if frozen:
            del branch.forward
        res = run_protocol(torch.cat(feats), dm.eval_set, model.eval_cfg["metric"])
        out[name] = {k: float(res[k]) for k in ("mAP", "rank1", "rank5")}
        print(name, out[name])
    return out


def _share_image_specific(x: np.ndarray) -> float:
    """Variance across images (per position/channel, averaged) over the total variance."""
    flat = x.reshape(len(x), -1)
    total = flat.var()
    return float(flat.var(axis=0).mean() / total) if total > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the run directory)")
    ap.add_argument("--images", type=int, default=256, help="evaluation images used")
    ap.add_argument("--ablate", action="store_true", help="also evaluate with each branch frozen to its mean")
    args = ap.parse_args(argv)
    cfg = OmegaConf.load(args.run_dir / "config_resolved.yaml")
    model = SCANModule.load_from_checkpoint(args.run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                            weights_only=False)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("test")
    split = dm.eval_set.split
    rows = np.random.default_rng(0).choice(len(split), min(args.images, len(split)), replace=False)
    ds = ImageDataset(split, build_test_transform(dm.image_size))
    images = torch.stack([ds[int(i)]["image"] for i in rows])
    stats = attention_statistics(model, images)
    numbers: dict[str, float] = {}
    out = args.out or args.run_dir
    out.mkdir(parents=True, exist_ok=True)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    s, c = stats["spatial"], stats["channel"]
    if s is not None:
        numbers.update(sab_min=float(s.min()), sab_max=float(s.max()), sab_within_image_std=float(s.std(axis=(1, 2)).mean()),
                       sab_image_specific_share=_share_image_specific(s))
        im = axes[0].imshow(s.mean(0), cmap="jet")
        axes[0].set_title(f"(a) SAB mean map ({s.min():.2f}-{s.max():.2f})", fontsize=9)
        fig.colorbar(im, ax=axes[0], fraction=0.046)
        im = axes[1].imshow(s.std(0), cmap="magma")
        axes[1].set_title(f"(b) SAB std across images ({100 * numbers['sab_image_specific_share']:.0f}% of var.)",
                          fontsize=9)
        fig.colorbar(im, ax=axes[1], fraction=0.046)
    if c is not None:
        order = np.argsort(c.mean(0))
        numbers.update(cab_min=float(c.min()), cab_max=float(c.max()), cab_image_specific_share=_share_image_specific(c),
                       cab_dead_channels=int((c.max(0) <= 1e-6).sum()), channels=int(c.shape[1]))
        im = axes[2].imshow(c[:32, order], aspect="auto", cmap="viridis")
        axes[2].set_title(f"(c) CAB weights, 32 images x {c.shape[1]} channels", fontsize=9)
        axes[2].set_xlabel("channel (sorted by mean weight)", fontsize=8)
        fig.colorbar(im, ax=axes[2], fraction=0.046)
        axes[3].scatter(c.mean(0), c.std(0), s=6)
        axes[3].set_xlabel("channel mean weight", fontsize=8)
        axes[3].set_ylabel("std across images", fontsize=8)
        axes[3].set_title(f"(d) CAB: {100 * numbers['cab_image_specific_share']:.0f}% of var. image-specific, "
                          f"{numbers['cab_dead_channels']} dead", fontsize=9)
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "attention_study.png", format="png")
    if args.ablate:
        numbers["ablation"] = ablation_metrics(model, dm, stats)
    (out / "attention_study.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))
    print(f"wrote {out / 'attention_study.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
