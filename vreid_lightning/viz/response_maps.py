"""Feature-map responses of RAM's branches (RAM Fig. 3), drawn as heat-map overlays.

Fig. 3 shows, per vehicle image, the responses of the map ``M`` learned with the Conv branch, of
``M_b = BN(M)`` in the BN branch and of ``M`` learned with the Region branch: BN spreads the response
over larger context, the Region branch lights up more local details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["response_map", "branch_response_maps", "save_response_grid", "region_caption"]


def response_map(feature_map: Tensor) -> Tensor:
    """Channel mean of ``ReLU(feature_map)``, min-max normalised to ``[0, 1]`` per image.

    Args:
        feature_map: ``(B, C, H, W)``.

    Returns:
        ``(B, H, W)`` float tensor (all zeros for an image whose response is constant).
    """
    if feature_map.dim() != 4:
        raise ValueError(f"response_map: feature_map must be (B, C, H, W), got shape {tuple(feature_map.shape)}")
    r = feature_map.detach().float().relu().mean(dim=1)
    flat = r.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    return (r - lo) / (hi - lo).clamp(min=1e-12)


@torch.no_grad()
def branch_response_maps(
    images: Tensor,
    conv_model: nn.Module | None = None,
    bn_model: nn.Module | None = None,
    region_model: nn.Module | None = None,
) -> dict[str, Tensor]:
    """Fig. 3's three columns from RAM networks (run in eval mode, mode restored afterwards).

    Args:
        images: ``(B, 3, H, W)`` network input (normalised as for the model).
        conv_model: a model trained with the Conv branch (e.g. the ``baseline`` stage): its ``M``.
        bn_model: a model with a BN branch (``bn`` stage or later): its ``BN(M)``.
        region_model: a model trained with the Region branch (``bn_r`` or ``ram``): its ``M``.

    Returns:
        column title -> ``(B, h, w)`` response maps, for the models given.
    """
    jobs = [
        ("Conv branch (M)", conv_model, "feature_map"),
        ("BN branch (BN(M))", bn_model, "bn_feature_map"),
        ("Region branch (M)", region_model, "feature_map"),
    ]
    maps = {}
    for title, model, method in jobs:
        if model is None:
            continue
        was_training = model.training
        model.eval()
        try:
            maps[title] = response_map(getattr(model, method)(images)).cpu()
        finally:
            model.train(was_training)
    return maps


def region_caption(bounds_for: Mapping[str, Sequence[tuple[int, int]]], map_rows: Mapping[str, int],
                   colours: Sequence[str]) -> str:
    """The caption of the region lines: which colour is which region, solid = first row, dashed = end.

    Heat: the channel mean of ReLU(map), min-max normalised per image (red: high response, blue: low).
    """
    drawn = {t: list(b) for t, b in bounds_for.items() if b}
    if not drawn:
        return ""
    title, bounds = next(iter(drawn.items()))
    rows = map_rows.get(title, 0)
    parts = [f"region {i + 1} ({colours[i % len(colours)]}): rows {a}-{e} of {rows}" for i, (a, e) in enumerate(bounds)]
    cols = "all map columns" if len(drawn) == len(map_rows) else ", ".join(drawn)
    return ("Lines (" + cols + "): RAM's horizontal regions of the feature map (sec. 2.2), each from its solid "
            "line (first row) to its dashed line (end) in its colour; an edge line may sit on the border; regions "
            "overlap (model.net.region_overlap).\n" + "; ".join(parts) +
            ".  Heat: channel mean of ReLU(map), per image min-max (red: high response, blue: low).")


def save_response_grid(
    images: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
    region_bounds: Sequence[tuple[int, int]] | Mapping[str, Sequence[tuple[int, int]]] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    cell_inches: float = 2.0,
    dpi: int = 100,
    layout: str = "rows",
    columns: int = 4,
) -> Path:
    """Draw one row per image: the image, then each response map overlaid on it; save a PNG.

    With ``layout="interleaved"`` (SCAN Fig. 5) the images run across the rows ``columns`` at a time,
    each row of images followed by one row per map title with the maps drawn alone (not overlaid).

    Args:
        images: ``(B, 3, H, W)`` images with values in ``[0, 1]``.
        maps: column title -> ``(B, h, w)`` maps in ``[0, 1]`` (bilinearly upsampled to ``H x W``).
        path: output PNG path (parent folders are created).
        region_bounds: region rows ``[(start, end), ...]`` in map rows, drawn as horizontal lines on
            every map column (solid: a region's first row, dashed: its end, one colour per region; a
            caption under the grid says so), or column title -> such rows for some columns only.
        alpha: opacity of the heat map.
        cmap: matplotlib colour map.
        cell_inches: size of one cell.
        dpi: resolution (a cell is ``cell_inches * dpi`` pixels).
        layout: ``"rows"`` (one row per image) or ``"interleaved"`` (image rows, then map rows).
        columns: images per row in the interleaved layout.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"save_response_grid: images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if not maps:
        raise ValueError("save_response_grid: maps is empty; give at least one column title -> (B, h, w) maps")
    b, _, height, width = images.shape
    upsampled = {}
    for title, m in maps.items():
        if m.dim() != 3 or m.shape[0] != b:
            raise ValueError(f"save_response_grid: maps[{title!r}] must be ({b}, h, w), got shape {tuple(m.shape)}")
        small = m.detach().float().cpu()[:, None]
        up = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        upsampled[title] = (up[:, 0].clamp(0, 1).numpy(), m.shape[1])
    if isinstance(region_bounds, Mapping):
        bounds_for = {str(k): list(v) for k, v in region_bounds.items()}
        unknown = [k for k in bounds_for if k not in maps]
        if unknown:
            raise ValueError(f"save_response_grid: region_bounds names columns {unknown} not in maps {list(maps)}")
    else:
        bounds_for = {t: list(region_bounds) for t in maps} if region_bounds is not None else {}

    pictures = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    if layout not in ("rows", "interleaved"):
        raise ValueError(f"save_response_grid: layout={layout!r}; expected 'rows' or 'interleaved'")
    if layout == "interleaved":
        return _save_interleaved(pictures, upsampled, Path(path), cmap, cell_inches, dpi, max(1, int(columns)))
    cols = 1 + len(maps)
    fig = Figure(figsize=(cols * cell_inches, b * cell_inches), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(b, cols, squeeze=False)
    colours = ("white", "cyan", "magenta", "yellow", "lime", "orange")
    for row in range(b):
        axes[row, 0].imshow(pictures[row])
        for col, (title, (heat, map_rows)) in enumerate(upsampled.items(), start=1):
            ax = axes[row, col]
            ax.imshow(pictures[row])
            ax.imshow(heat[row], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            scale = height / map_rows
            for i, (start, end) in enumerate(bounds_for.get(title, [])):
                colour = colours[i % len(colours)]
                for edge, style in ((start, "-"), (end, "--")):
                    ax.axhline(edge * scale - 0.5, color=colour, linestyle=style, linewidth=1.2)
        if row == 0:
            axes[0, 0].set_title("Image", fontsize=8)
            for col, title in enumerate(upsampled, start=1):
                axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    caption = region_caption(bounds_for, {t: rows for t, (_, rows) in upsampled.items()}, colours)
    if caption:  # what the lines are, under the grid
        fig.text(0.01, 0.004, caption, fontsize=7, va="bottom", ha="left", wrap=True)
    fig.tight_layout(rect=(0, min(0.3, (0.12 * caption.count("\n") + 0.15) / b) if caption else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _save_interleaved(pictures, upsampled, path: Path, cmap: str, cell_inches: float, dpi: int, columns: int) -> Path:
    """Image rows, each followed by one row per map title (maps alone, ``vmin=0, vmax=1``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    b = len(pictures)
    cols = min(columns, b)
    groups = -(-b // cols)
    rows = groups * (1 + len(upsampled))
    fig = Figure(figsize=(cols * cell_inches, rows * cell_inches), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for i in range(b):
        g, c = divmod(i, cols)
        top = g * (1 + len(upsampled))
        axes[top, c].imshow(pictures[i])
        for j, (title, (heat, _)) in enumerate(upsampled.items(), start=1):
            axes[top + j, c].imshow(heat[i], cmap=cmap, vmin=0.0, vmax=1.0)
    fig.suptitle("rows: image, then " + "; ".join(upsampled), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
