"""Figures of latent edits, traversals and interpolations, drawn from ``aelab.latent``'s results.

They take an ``EditResult``, ``TraversalResult`` or ``InterpolationResult``, never a Run or a
model: compute first (``aelab.latent``), then draw here. Each figure is one picture with text
on top (one ``imshow``, not an axis per cell), so an edit figure takes a fraction of a second.
"""

from __future__ import annotations

import math
import textwrap
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


def diff_scale(result: EditResult) -> float:
    """The one colour scale (0..vmax, [0, 1] pixels) every difference map of an edit figure shares, so a
    brighter map is a larger change, whatever row it is in."""
    return max([float(e.diff.max()) for e in result.edited] + [1e-6])


def edit_cells(result: EditResult) -> tuple[np.ndarray, float]:
    """Per edit the four cells (original, reconstruction, edited, colour-mapped |difference|) as uint8
    rows × 4 × H×W×3, and the shared scale ``diff_scale`` the difference maps were drawn on."""
    rows = result.edited
    h, w = result.recon.shape[:2]
    cells = np.empty((len(rows), 4, h, w, 3), np.uint8)
    three = (lambda im: np.repeat(im, 3, axis=-1)) if result.recon.shape[-1] == 1 else (lambda im: im)
    cells[:, 0] = three(result.original)
    cells[:, 1] = three(result.recon)
    vmax = diff_scale(result)
    for i, e in enumerate(rows):
        cells[i, 2] = three(e.image)
        cells[i, 3] = _colour_map(e.diff, vmax)
    return cells, vmax


def edit_figure(result: EditResult, path: str | Path, title: str | None = None) -> Path:
    """The edit figure: per edit a row of original, reconstruction, edited, and the colour-mapped
    absolute difference (mean over channels, [0, 1] pixels), all maps on one colour scale with one bar.

    Drawn as one picture with text on top (one imshow, not 32 axes), so it takes a fraction of a
    second: the edit is meant to be interactive. Small images are drawn larger so the labels fit."""
    title = title or f"latent edits ({result.code.size}-element code{', sampled' if result.sample else ''})"
    rows = result.edited
    h, w = result.recon.shape[:2]
    cells, vmax = edit_cells(result)
    scale = max(0.019, 1.25 / w)  # inches per pixel: a cell at least 1.25 in wide, room for its label
    gap = max(6, int(0.18 / scale))
    head = max(int(0.42 / scale), (h * 3) // 8)  # room for two lines of labels above each row
    bar_w = max(3, int(0.12 / scale))
    picture = _mosaic(cells, gap, head)
    x_bar = picture.shape[1] + max(2, gap // 3)
    picture = np.pad(picture, ((head, 0), (0, x_bar + bar_w - picture.shape[1]), (0, 0)), constant_values=255)
    span = picture.shape[0] - head  # one bar beside every row of maps: the shared scale
    picture[head:, x_bar:x_bar + bar_w] = _colour_map(np.linspace(1.0, 0.0, span)[:, None].repeat(bar_w, 1), 1.0)
    fig = plt.figure(figsize=(picture.shape[1] * scale + 0.9, picture.shape[0] * scale + 0.35))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    width = max(16, int(w * scale * 20))  # characters that fit above a cell at this font size
    for i, e in enumerate(rows):
        y = head + i * (h + head)
        psnr = "∞" if not math.isfinite(e.psnr) else f"{e.psnr:.1f} dB"
        heads = ["original", "reconstruction", textwrap.shorten(f"edited: {e.edit}", 2 * width, placeholder="…"),
                 f"|edited − recon|\nmean {e.mean_abs_change:.3f}, {psnr}"]
        for j, text in enumerate(heads):
            text = "\n".join(textwrap.fill(line, width) for line in text.split("\n"))
            ax.text(j * (w + gap) + w / 2, y - 3, text, ha="center", va="bottom", fontsize=6.5,
                    fontweight="bold" if j == 2 else None)
    ax.text(x_bar + bar_w + 2, head, f"{vmax:.2g}", ha="left", va="top", fontsize=6.5)
    ax.text(x_bar + bar_w + 2, picture.shape[0], "0", ha="left", va="bottom", fontsize=6.5)
    ax.text(x_bar + bar_w + 2, head + span / 2, "|change|,\none scale\nfor all rows", ha="left", va="center",
            fontsize=6.5)
    fig.suptitle(title, fontsize=9, y=1.0, va="bottom")
    return save(fig, path, dpi=100)


def value_texts(values: np.ndarray) -> np.ndarray:
    """The traversal's values as labels, all with the same number of decimals: enough to tell two
    neighbouring steps apart (two significant digits of the smallest step), at most three."""
    values = np.asarray(values, np.float64)
    steps = np.abs(np.diff(values, axis=-1))
    step = float(steps[steps > 0].min()) if (steps > 0).any() else 1.0
    decimals = int(np.clip(1 - math.floor(math.log10(step)), 0, 3))
    texts = np.vectorize(lambda v: f"{v:.{decimals}f}", otypes=[object])(values)
    return np.where(texts == f"-{0:.{decimals}f}", f"{0:.{decimals}f}", texts)


def factor_label(row: dict) -> str:
    """The two generating factors an element correlates with most, with their Pearson r (one when only one
    was measured): one factor alone can hide that a row visibly changes another."""
    strongest = row.get("strongest") or [{"factor": row["factor"], "r": row["r"]}]
    return "\n".join(f"{f['factor']} (r={f['r']:+.2f})" for f in strongest[:2])


def traversal_figure(result: TraversalResult, path: str | Path, title: str | None = None) -> Path:
    """The traversal grid as one picture: a row per element, a column per step; every cell is
    labelled with its value and the cell nearest the image's own value is boxed. The original and
    its reconstruction sit on the left; with ``result.factors``, each row names the factor its
    element tracks most and next (``factor_label``)."""
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
            label += "\n" + factor_label(factors[i])
        label += f"\nΔ {result.effect[i]:.3f}"
        labels.append(label)
    ax.set_yticks(centres_y, labels, fontsize=7)
    ax.tick_params(length=0)
    texts = value_texts(values)
    if shared:
        ax.set_xticks(centres_x, list(texts[0]), fontsize=7)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
        for i in np.arange(n_rows):
            for j in np.arange(steps):
                ax.text(centres_x[j], centres_y[i] + h / 2 + gap_y / 2, texts[i, j], ha="center",
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
    cell = 1.3  # inches per image: big enough to see what changes from step to step at report width
    fig, ax = plt.subplots(figsize=(cell * len(row[0]) + 0.4, cell + 0.9))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    names = ["A", *(f"t={t:.2f}" for t in result.t), "B"]
    ax.set_xticks(np.arange(len(names)) * (w + gap) + w / 2, names, fontsize=9)
    ax.set_title(f"{title}\noriginal A, decoded codes (ends: the two reconstructions), original B", fontsize=10)
    return save(fig, path, dpi=100)
