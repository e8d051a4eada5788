"""What the coarse (model-level) step of trained RNN-HA runs learnt, and how large the two GRU inputs are.

    python experiments/rnn_ha/diagnose.py RUN_DIR [RUN_DIR ...] [--images 512] [--json OUT.json]

Each RUN_DIR is a finished RNN-HA / FC-HA / RNN-H run (``config_resolved.yaml`` and
``checkpoints/last.ckpt``). For each run it prints, on up to ``--images`` training and evaluation images:

- ``model_acc_train`` / ``model_acc_eval``: top-1 accuracy of the model-level classifier (on ``o1``);
- ``majority_eval``: the accuracy of always answering the training set's most frequent model-level class,
  the floor a classifier that learnt nothing about the model level reaches;
- ``x1_norm`` / ``x2_norm``: mean L2 norm of the GRU's two inputs (``x2 = x1`` without attention), which
  shows Eq. 9's ``1/(h w)`` on top of the normalised attention;
- ``attention_entropy``: mean normalised entropy of ``a`` (1 = uniform over the h x w positions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vreid_lightning.data.datamodule import ImageDataset, remap_labels
from vreid_lightning.data.transforms import build_test_transform
from vreid_lightning.methods.rnn_ha import RNNHAModule, eval_model_labels

__all__ = ["diagnose", "main"]


@torch.no_grad()
def _pass(model: RNNHAModule, split, image_size, rows: np.ndarray, batch: int = 128) -> dict[str, np.ndarray]:
    ds = ImageDataset(split, build_test_transform(image_size))
    net = model.net.eval()
    maps: list[torch.Tensor] = []
    hook = net.backbone.register_forward_hook(lambda _m, _i, out: maps.append(out))  # f, from the one forward
    pred, x1n, x2n, ent = [], [], [], []
    for i in range(0, len(rows), batch):
        x = torch.stack([ds[int(j)]["image"] for j in rows[i:i + batch]])
        out = net(x)
        f = maps.pop()
        x1 = f.mean(dim=(2, 3))
        if net.attention is not None:
            x2, a = net.attention(f, out.o1)
            p = a.flatten(1)
            ent.append((-(p * p.clamp_min(1e-12).log()).sum(1) / np.log(p.shape[1])).numpy())
        else:
            x2 = x1
        pred.append(out.logits["model"].argmax(1).numpy())
        x1n.append(x1.norm(dim=1).numpy())
        x2n.append(x2.norm(dim=1).numpy())
    hook.remove()
    return {"pred": np.concatenate(pred), "x1": np.concatenate(x1n), "x2": np.concatenate(x2n),
            "entropy": np.concatenate(ent) if ent else None}


def diagnose(run_dir: Path, images: int = 512) -> dict[str, float]:
    """The numbers of the module docstring for one run."""
    for need in ("config_resolved.yaml", "checkpoints/last.ckpt"):
        if not (run_dir / need).is_file():
            raise SystemExit(f"diagnose: {run_dir / need} does not exist; expected a finished RNN-HA run directory "
                             "(config_resolved.yaml and checkpoints/last.ckpt)")
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    target = str(OmegaConf.select(cfg, "model._target_", default=""))
    if not target.endswith("RNNHAModule"):
        raise SystemExit(f"diagnose: {run_dir / 'config_resolved.yaml'}: model._target_ is {target!r}; "
                         "expected an RNN-HA run (vreid_lightning.methods.rnn_ha.RNNHAModule)")
    model = RNNHAModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                             weights_only=False)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    level = model.model_level
    train_values = dm.train_split.attributes[level]
    train_labels, _ = remap_labels(train_values)
    rng = np.random.default_rng(0)
    out: dict[str, float] = {"run": str(run_dir)}
    tr_rows = rng.choice(len(dm.train_split), min(images, len(dm.train_split)), replace=False)
    tr = _pass(model, dm.train_split, dm.image_size, tr_rows)
    known = train_labels[tr_rows] >= 0
    out["model_acc_train"] = float((tr["pred"][known] == train_labels[tr_rows][known]).mean())
    split = dm.eval_set.split
    ev_rows = rng.choice(len(split), min(images, len(split)), replace=False)
    ev = _pass(model, split, dm.image_size, ev_rows)
    ev_labels = eval_model_labels(train_values, split.attributes[level])[ev_rows]
    known = ev_labels >= 0
    majority = np.bincount(train_labels[train_labels >= 0]).argmax()
    out["model_acc_eval"] = float((ev["pred"][known] == ev_labels[known]).mean())
    out["majority_eval"] = float((ev_labels[known] == majority).mean())
    out["eval_images"] = int(known.sum())
    out["x1_norm"] = float(ev["x1"].mean())
    out["x2_norm"] = float(ev["x2"].mean())
    if ev["entropy"] is not None:
        out["attention_entropy"] = float(ev["entropy"].mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", type=Path, nargs="+")
    ap.add_argument("--images", type=int, default=512, help="training and evaluation images used (each)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    rows = []
    for d in args.run_dirs:
        r = diagnose(d, args.images)
        rows.append(r)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
