"""What every figure shares: headless matplotlib, atomic saving, image grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aelab.errors import AelabError  # noqa: E402
from aelab.io import atomic_write  # noqa: E402


def save(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write a figure atomically (PNG, SVG or PDF by suffix) and close it."""
    import io

    path = Path(path)
    if path.is_dir():
        plt.close(fig)
        raise AelabError(f"{path} is a folder; give a file name such as {path / 'figure.png'}")
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    try:
        if fmt not in fig.canvas.get_supported_filetypes():
            raise AelabError(f"{path}: a figure cannot be written as .{fmt}; use .png, .svg or .pdf")
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    try:
        atomic_write(path, buf.getvalue())
    except OSError as exc:  # a missing, read-only or not-a-folder parent: the user's path to fix
        blocker = next((p for p in path.parents if p.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else exc.strerror or exc
        raise AelabError(f"cannot write {path}: {why}") from None
    return path


def moving_average(values: np.ndarray, k: int) -> np.ndarray:
    """The mean of each ``k`` consecutive values (``len - k + 1`` of them); the values themselves for k <= 1
    or fewer than k values. A training curve is drawn smoothed by it over its faint raw self."""
    values = np.asarray(values, float)
    if k <= 1 or len(values) < k:
        return values
    return np.convolve(values, np.ones(k) / k, mode="valid")


def log_scale_if_wide(ax: plt.Axes, values: Sequence[np.ndarray], ratio: float = 20) -> None:
    """A log y axis when the positive ``values`` (curves, together) span more than ``ratio`` times."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values]) if values else np.array([])
    if len(v) and v.min() > 0 and v.max() / v.min() > ratio:
        ax.set_yscale("log")


def show_image(ax: plt.Axes, image: np.ndarray, title: str | None = None, fontsize: int = 8) -> None:
    """One uint8 H×W×C image on an axis, without ticks; grayscale for one channel."""
    img = image[..., 0] if image.shape[-1] == 1 else image
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=fontsize)


def image_grid(rows: Sequence[Sequence[np.ndarray]], path: str | Path, *, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, title: str | None = None, cell: float = 1.25) -> Path:
    """A grid of images, one list per row (rows may differ in length)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    title_h = 0.2 * (title.count("\n") + 1) + 0.15 if title else 0.0  # inches for the (multi-line) title
    height = cell * n_rows + title_h
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols + (0.8 if row_labels else 0), height),
                             squeeze=False, layout="constrained")
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            if j < len(rows[i]):
                show_image(ax, rows[i][j], col_labels[j] if col_labels and i == 0 and j < len(col_labels) else None)
            else:
                ax.axis("off")
        if row_labels:
            axes[i][0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)  # constrained layout keeps room for it, however many lines
    return save(fig, path)

