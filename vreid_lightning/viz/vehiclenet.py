"""VehicleNet's pictures: Fig. 7 (activation heatmaps before pooling) and Fig. 6 (top-5 by viewpoint).

Fig. 7 (sec. V-C, "following [38], [61]"): the network activation before the pooling layer, for a
few images of the same identity per row, overlaid on the images. Fig. 6: top-5 retrieval for queries
seen from four viewpoints (front, overhead, rear, side); viewpoints are known for synthetic worlds
(:func:`vreid_lightning.data.synthetic.synthetic_viewpoints`), otherwise the first queries of distinct
identities are shown and labelled "viewpoint unknown". Fig. 8: the training loss of each stage, read
from the run's CSV logs. :class:`VehicleNetFigures` draws them (named by ``conf/model/vehiclenet.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vreid_lightning.viz.figures import Figures, check_count, eval_images

__all__ = ["VehicleNetFigures", "save_activation_figure", "save_viewpoint_rank_lists", "pick_identity_images",
           "pick_viewpoint_queries", "save_stage_losses", "read_losses", "FIG6_VIEWPOINTS"]

FIG6_VIEWPOINTS = ("front", "overhead", "rear", "side")  # Fig. 6, in the paper's order


def pick_identity_images(pids: np.ndarray, camids: np.ndarray, identities: int, per_identity: int,
                         candidates: np.ndarray) -> list[np.ndarray]:
    """Rows of ``identities`` identities (first seen in ``candidates``) with ``per_identity`` images
    each, from distinct cameras first; identities with fewer images are skipped."""
    out: list[np.ndarray] = []
    for pid in dict.fromkeys(pids[candidates].tolist()):
        rows = np.flatnonzero(pids == pid)
        if rows.size < per_identity:
            continue
        _, first = np.unique(camids[rows], return_index=True)
        order = np.concatenate([rows[np.sort(first)], np.setdiff1d(rows, rows[first])])
        out.append(order[:per_identity])
        if len(out) == identities:
            break
    return out


@torch.no_grad()
def save_activation_figure(model: Any, dm: Any, path: str | Path, identities: int = 3,
                           per_identity: int = 4) -> Path:
    """Fig. 7: per identity a row of images and a row of their backbone activation (before pooling)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vreid_lightning.viz.response_maps import response_map

    es = dm.eval_set
    split = es.split
    candidates = es.groups.get("query", np.arange(len(split)))
    groups = pick_identity_images(split.pids, split.camids, identities, per_identity, candidates)
    if not groups:
        raise ValueError(f"no identity has {per_identity} evaluation images for the activation figure")
    x, shown = eval_images(dm, np.concatenate(groups))
    was_training = model.training
    model.eval()
    try:
        maps = response_map(model.net(x.to(model.device)).feature_map).cpu()
    finally:
        model.train(was_training)
    heat = torch.nn.functional.interpolate(maps[:, None], size=shown.shape[2:], mode="bilinear",
                                           align_corners=False)[:, 0].clamp(0, 1).numpy()
    pics = shown.permute(0, 2, 3, 1).numpy()
    fig = Figure(figsize=(per_identity * 1.8, len(groups) * 3.7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * len(groups), per_identity, squeeze=False)
    i = 0
    for g, rows in enumerate(groups):
        for c in range(per_identity):
            axes[2 * g, c].imshow(pics[i])
            axes[2 * g, c].set_title(f"id {split.pids[rows[c]]} cam {split.camids[rows[c]]}", fontsize=7)
            axes[2 * g + 1, c].imshow(pics[i])
            axes[2 * g + 1, c].imshow(heat[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            i += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("activation before pooling (channel mean of ReLU), per identity", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def pick_viewpoint_queries(query_rows: np.ndarray, names: list[str | None],
                           wanted: tuple[str, ...] = FIG6_VIEWPOINTS) -> list[tuple[int, str]]:
    """One query per wanted viewpoint (the first of each, distinct identities not enforced)."""
    out = []
    for view in wanted:
        hit = next((int(r) for r, n in zip(query_rows, names) if n == view), None)
        if hit is not None:
            out.append((hit, view))
    return out


@torch.no_grad()
def _eval_features(model: Any, dm: Any) -> Tensor:
    loader = dm.test_dataloader()  # the test set (dm.eval_set), unsharded outside a trainer
    was_training = model.training
    model.eval()
    parts, rows = [], []
    try:
        for batch in loader:
            f = model.main_features({**batch, "image": batch["image"].to(model.device)})
            parts.append(torch.nn.functional.normalize(f, dim=1).cpu())
            rows.append(batch["index"])
    finally:
        model.train(was_training)
    feats = torch.zeros(len(dm.eval_set.split), parts[0].shape[1])
    feats[torch.cat(rows)] = torch.cat(parts)
    return feats


def save_viewpoint_rank_lists(model: Any, dm: Any, path: str | Path, k: int = 5) -> Path | None:
    """Fig. 6: top-``k`` retrieval (true matches green, false red) for front/overhead/rear/side queries."""
    from vreid_lightning.data.synthetic import synthetic_viewpoints, viewpoint_name
    from vreid_lightning.evaluation.distance import compute_distance
    from vreid_lightning.evaluation.protocol_registry import get_protocol
    from vreid_lightning.viz.ranklist import save_rank_list, top_k_valid

    es = dm.eval_set
    protocol = get_protocol(es)
    if not protocol.fixed_query_gallery:
        return None
    q_rows, g_rows, _ = protocol.query_gallery(es)
    split = es.split
    gallery = split.subset(g_rows)
    angles = synthetic_viewpoints(dm.dataset.root, gallery)
    names: list[str | None] = [None] * len(q_rows)
    if angles is not None:
        by_name = {Path(p).name: tuple(a) for p, a in zip(gallery.paths, angles)}
        names = [viewpoint_name(*by_name[n]) if (n := Path(split.paths[r]).name) in by_name else None
                 for r in q_rows]
    picked = pick_viewpoint_queries(q_rows, names)
    if not picked:  # real data: no viewpoint labels
        _, first = np.unique(split.pids[q_rows], return_index=True)
        picked = [(int(q_rows[i]), "viewpoint unknown") for i in np.sort(first)[:len(FIG6_VIEWPOINTS)]]
    feats = _eval_features(model, dm)
    qs = np.array([r for r, _ in picked])
    dist = compute_distance(feats[torch.as_tensor(qs)], feats[torch.as_tensor(g_rows)], metric="cosine").numpy()
    ranked = top_k_valid(dist, split.pids[qs], split.pids[g_rows], split.camids[qs], split.camids[g_rows], k)
    out = save_rank_list([split.paths[r] for r in qs], split.pids[qs].tolist(), [split.paths[g] for g in g_rows],
                         split.pids[g_rows].tolist(), ranked, path)
    return _label_rows(out, [view for _, view in picked])


def _label_rows(path: Path, labels: list[str], margin: int = 84) -> Path:
    """Prefix each (equally tall) row of a rank-list PNG with its viewpoint name."""
    from PIL import Image, ImageDraw

    with Image.open(path) as im:
        grid = im.convert("RGB")
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = grid.height / max(len(labels), 1)
    for i, text in enumerate(labels):
        draw.text((4, int(i * row_h + row_h / 2) - 6), text, fill=(0, 0, 0))
    canvas.save(path)
    return path


def read_losses(stage_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, train/loss) from a stage's CSV log (``<stage_dir>/csv/**/metrics.csv``), or None."""
    import csv

    files = sorted(Path(stage_dir).glob("csv/**/metrics.csv"))
    if not files:
        return None
    steps, losses = [], []
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                steps.append(int(row["step"]))
                losses.append(float(row["train/loss"]))
    return (np.asarray(steps), np.asarray(losses)) if steps else None


def save_stage_losses(run_dir: str | Path, stages: list[str], path: str | Path) -> Path | None:
    """Fig. 8: the training loss of each stage against its training steps, one panel per stage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = {s: read_losses(Path(run_dir) / "stages" / s) for s in stages}
    curves = {s: c for s, c in curves.items() if c is not None}
    if not curves:
        return None
    fig = Figure(figsize=(4.0 * len(curves), 3.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (stage, (steps, loss)) in zip(axes, curves.items()):
        ax.plot(steps, loss, linewidth=1.2)
        ax.set_title(f"{stage}: training loss", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("cross-entropy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


class VehicleNetFigures(Figures):
    """After each test Fig. 7 (``activation_heatmaps.png``: ``identities`` rows of ``per_identity`` images) and
    Fig. 6 (``rank_list_viewpoints.png``, image protocol only); after a staged run Fig. 8 (``training_losses.png``)."""

    def __init__(self, identities: int = 3, per_identity: int = 4) -> None:
        self.identities = check_count(identities, "identities")
        self.per_identity = check_count(per_identity, "per_identity")

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        paths = [save_activation_figure(module, dm, Path(out) / "activation_heatmaps.png",
                                        identities=self.identities, per_identity=self.per_identity)]
        ranks = save_viewpoint_rank_lists(module, dm, Path(out) / "rank_list_viewpoints.png")
        return paths + ([ranks] if ranks is not None else [])

    def across_stages(self, dm: Any, out: Path, stage_ckpts: Mapping[str, str | None],
                      load: Callable[[str], Any]) -> list[Path]:
        fig = save_stage_losses(out, list(stage_ckpts), Path(out) / "training_losses.png")
        return [fig] if fig is not None else []
