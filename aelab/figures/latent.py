"""Figures of latent edits, traversals and interpolations, drawn from ``aelab.latent``'s results.

They take an ``EditResult``, ``TraversalResult`` or ``InterpolationResult``, never a Run or a
model: compute first (``aelab.latent``), then draw here. Each figure is one picture with text
on top (one ``imshow``, not an axis per cell), so an edit figure takes a fraction of a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aelab.figures.base import plt, save, show_image

if TYPE_CHECKING:
    from aelab.latent import EditResult, InterpolationResult, TraversalResult


def _mosaic(rows: np.ndarray, pad: int, vpad: int | None = None) -> np.ndarray:
    """rows × cols × H×W×C uint8 -> one RGB picture with white gaps (fast: one imshow, not one per cell)."""
    r, c, h, w, ch = rows.shape
    vpad = pad if vpad is None else vpad
    out = np.full((r * (h + vpad) - vpad, c * (w + pad) - pad, 3), 255, np.uint8)
    cells = rows if ch == 3 else np.repeat(rows[..., :1], 3, axis=-1)
    for i in np.arange(r):
        y = i * (h + vpad)
        block = cells[i].transpose(1, 0, 2, 3)  # H × cols × W × 3
        strip = np.full((h, c, w + pad, 3), 255, np.uint8)
        strip[:, :, :w] = block
        out[y:y + h] = strip.reshape(h, c * (w + pad), 3)[:, :out.shape[1]]
    return out


def _colour_map(values: np.ndarray, vmax: float, cmap: str = "magma") -> np.ndarray:
    """float H×W (0..vmax) -> uint8 H×W×3 through a matplotlib colour map."""
    import matplotlib

    return (matplotlib.colormaps[cmap](np.clip(values / vmax, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def edit_figure(result: EditResult, path: str | Path, title: str | None = None) -> Path:
    """The edit figure: per edit a row of original, reconstruction, edited, and the colour-mapped
    absolute difference (mean over channels, [0, 1] pixels) with its own colour scale.

    Drawn as one picture with text on top (one imshow, not 32 axes), so it takes a fraction of a
    second: the edit is meant to be interactive."""
    title = title or f"latent edits ({result.code.size}-element code{', sampled' if result.sample else ''})"
    rows = result.edited
    h, w = result.recon.shape[:2]
    n = len(rows)
    bar_w, gap, head = max(3, w // 10), max(6, w // 5), max(24, (h * 3) // 8)
    cells = np.empty((n, 4, h, w, 3), np.uint8)
    three = (lambda im: np.repeat(im, 3, axis=-1)) if result.recon.shape[-1] == 1 else (lambda im: im)
    cells[:, 0] = three(result.original)
    cells[:, 1] = three(result.recon)
    vmax = [max(float(e.diff.max()), 1e-6) for e in rows]
    for i, e in enumerate(rows):
        cells[i, 2] = three(e.image)
        cells[i, 3] = _colour_map(e.diff, vmax[i])
    picture = _mosaic(cells, gap, head)
    x_bar = picture.shape[1] + max(2, gap // 3)
    picture = np.pad(picture, ((head, 0), (0, x_bar + bar_w - picture.shape[1]), (0, 0)), constant_values=255)
    ramp = _colour_map(np.linspace(1.0, 0.0, h)[:, None].repeat(bar_w, 1), 1.0)
    for i in range(n):
        y = head + i * (h + head)
        picture[y:y + h, x_bar:x_bar + bar_w] = ramp
    scale = 0.019  # inches per pixel: a 64-pixel image is 1.2 in wide
    fig = plt.figure(figsize=(picture.shape[1] * scale + 0.5, picture.shape[0] * scale + 0.35))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    for i, e in enumerate(rows):
        y = head + i * (h + head)
        psnr = "∞" if not math.isfinite(e.psnr) else f"{e.psnr:.1f} dB"
        heads = ["original", "reconstruction", f"edited: {e.edit}",
                 f"|{e.edit} − recon|\nmean {e.mean_abs_change:.3f}, {psnr}"]
        for j, text in enumerate(heads):
            ax.text(j * (w + gap) + w / 2, y - 3, text, ha="center", va="bottom", fontsize=6.5,
                    fontweight="bold" if j == 2 else None)
        ax.text(x_bar + bar_w + 2, y, f"{vmax[i]:.2g}", ha="left", va="top", fontsize=6)
        ax.text(x_bar + bar_w + 2, y + h, "0", ha="left", va="bottom", fontsize=6)
    fig.suptitle(title, fontsize=9, y=1.0, va="bottom")
    return save(fig, path, dpi=100)


def _value_text(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 10 else f"{v:.0f}"


def traversal_figure(result: TraversalResult, path: str | Path, title: str | None = None) -> Path:
    """The traversal grid as one picture: a row per element, a column per step; every cell is
    labelled with its value and the cell nearest the image's own value is boxed. The original and
    its reconstruction sit on the left; with ``result.factors``, each row names the factor its
    element tracks."""
    from matplotlib.patches import Rectangle

    title = title or f"latent traversal ({result.range} range)"
    factors = result.factors
    grid = result.images
    n_rows, steps, h, w = grid.shape[:4]
    values = result.values
    shared = bool(np.allclose(values, values[:1]))
    gap_x, gap_y = max(2, w // 16), (max(2, w // 16) if shared else max(12, h // 4))
    picture = _mosaic(grid, gap_x, gap_y)
    # Lay out in inches: original and reconstruction on the left, the grid, row labels on the right.
    grid_w = steps * 0.78
    grid_h = grid_w * picture.shape[0] / picture.shape[1]
    left, right, top, bottom, thumb = 1.15, 2.1 if factors else 1.0, 0.95 if shared else 0.75, 0.2, 0.9
    body_h = max(grid_h, 2 * thumb + 0.45)
    fig_w, fig_h = left + grid_w + right, top + body_h + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))

    def box(x: float, y_top: float, w_in: float, h_in: float) -> list[float]:
        return [x / fig_w, (fig_h - y_top - h_in) / fig_h, w_in / fig_w, h_in / fig_h]

    show_image(fig.add_axes(box(0.1, top + 0.2, thumb, thumb)), result.original, "original")
    show_image(fig.add_axes(box(0.1, top + thumb + 0.45, thumb, thumb)), result.recon, "reconstruction")
    ax = fig.add_axes(box(left, top, grid_w, grid_h))
    ax.imshow(picture, interpolation="nearest", aspect="auto")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.yaxis.tick_right()
    centres_y = np.arange(n_rows) * (h + gap_y) + h / 2
    centres_x = np.arange(steps) * (w + gap_x) + w / 2
    labels = []
    for i, d in enumerate(result.dims):
        label = f"z[{d}]"
        if factors:
            f = factors[i]
            label += f"\n{f['factor']} (r={f['r']:+.2f})"
        label += f"\nΔ {result.effect[i]:.3g}"
        labels.append(label)
    ax.set_yticks(centres_y, labels, fontsize=7)
    ax.tick_params(length=0)
    if shared:
        ax.set_xticks(centres_x, [_value_text(v) for v in values[0]], fontsize=7)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
        for i in np.arange(n_rows):
            for j in np.arange(steps):
                ax.text(centres_x[j], centres_y[i] + h / 2 + gap_y / 2, _value_text(values[i, j]), ha="center",
                        va="center", fontsize=6, color="0.25")
    for i, j in enumerate(result.position):
        ax.add_patch(Rectangle((centres_x[j] - w / 2 - 0.5, centres_y[i] - h / 2 - 0.5), w, h, fill=False,
                               edgecolor="tab:orange", linewidth=1.2))
    how = "ranked by measured output change Δ" if result.ranked else "Δ: measured output change"
    fig.suptitle(f"{title}\none element per row, the others at the image's code; {how}; "
                 f"orange box: nearest the image's own value", fontsize=9)
    return save(fig, path, dpi=100)


def interpolation_figure(result: InterpolationResult, path: str | Path, title: str | None = None) -> Path:
    """Original A, the decoded path from A's code to B's, original B, in one row."""
    title = title or f"{result.mode} interpolation in the code"
    images = result.images
    a, b = result.originals
    row = np.stack([a, *images, b])[None]
    h, w = row.shape[2:4]
    gap = max(2, w // 16)
    picture = _mosaic(row, gap)
    picture[:, w + gap // 2 - 1:w + gap // 2 + 1] = 120  # separators around the decoded path
    x_end = (len(row[0]) - 1) * (w + gap) - gap // 2
    picture[:, x_end - 1:x_end + 1] = 120
    fig, ax = plt.subplots(figsize=(0.8 * len(row[0]) + 0.4, 1.6))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    names = ["A", *(f"t={t:.2f}" for t in result.t), "B"]
    ax.set_xticks(np.arange(len(names)) * (w + gap) + w / 2, names, fontsize=7)
    ax.set_title(f"{title}: original A, decoded codes (ends: the two reconstructions), original B", fontsize=9)
    return save(fig, path, dpi=100)
