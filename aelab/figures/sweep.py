"""A sweep's figures, drawn from what ``aelab.sweep`` reads out of its runs (``loss_curves``,
``latent_series``): every run's training curve on one plot, and reconstruction against code size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def losses_figure(curves: list[tuple[str, np.ndarray, np.ndarray]], path: str | Path, title: str = "",
                  ylabel: str = "training loss") -> Path:
    """One training curve per iteration of every run, ``(label, steps, values)`` each, on one plot (a moving
    average over the faint raw curve); ``ylabel`` says what the values are and in which unit.

    Longer runs are drawn first so a shorter run that follows the same path
    (same seed, fewer epochs) stays visible on top."""
    from aelab.figures.base import log_scale_if_wide, moving_average, plt, save

    curves = [(name, np.asarray(steps), np.asarray(loss)) for name, steps, loss in curves]
    fig, ax = plt.subplots(figsize=(8, 4.4))
    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    order = sorted(range(len(curves)), key=lambda i: -len(curves[i][1]))
    lines = {}
    longest = max((len(c[1]) for c in curves), default=1) or 1
    k_all = max(1, longest // 50)  # one window for all, so shared paths match
    for rank, i in enumerate(order):
        _, steps, loss = curves[i]
        if not len(loss):
            continue
        colour = colours(i % colours.N)
        k = min(k_all, max(1, len(loss) // 4))
        ax.plot(steps, loss, color=colour, alpha=0.18, lw=0.7)
        sm = moving_average(loss, k)
        (lines[i],) = ax.plot(steps[len(steps) - len(sm):], sm, color=colour, zorder=2 + rank,
                              lw=1.0 + 1.0 * len(loss) / longest)  # a longer run: a wider line under the rest
        ax.plot(steps[-1], sm[-1], "o", color=colour, ms=5, zorder=3 + rank)  # where the run stopped
    log_scale_if_wide(ax, [loss for _, _, loss in curves])
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if lines:  # legend in sweep order, whatever the drawing order
        keys = sorted(lines)
        ax.legend([lines[i] for i in keys], [curves[i][0] for i in keys], fontsize=8,
                  ncol=1 if len(keys) <= 8 else 2, loc="upper right")
    ax.set_title(title or "training loss", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _ratio(r: float) -> str:
    return f"{r:,.0f}×" if r >= 100 else f"{r:.3g}×"


def latent_figure(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                  input_size: int | None = None) -> Path:
    """Validation PSNR and SSIM against code size (two panels), the compression ratio on the top axis.

    One line per series (rows with ``latent_size``, ``compression``, ``val_psnr``, ``val_ssim``). The
    top axis reads input elements / code elements; where the sweep reaches a code as big as the input
    (ratio 1 and below) the region is shaded, "code larger than the image": the reconstruction is sharp
    there, but the code is no longer a compression. ``input_size``: values per model input
    (``sweep.input_elements``); without it neither is drawn."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from aelab.figures.base import plt, save

    rows = [r for pts in series.values() for r in pts]
    sizes = sorted({r["latent_size"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    colours = plt.get_cmap("tab10")
    for ax, key, name in ((axes[0], "val_psnr", "validation PSNR (dB)"), (axes[1], "val_ssim", "validation SSIM")):
        for i, (label_, pts) in enumerate(series.items()):
            pts = sorted(pts, key=lambda r: r["latent_size"])
            ax.plot([p["latent_size"] for p in pts], [p[key] for p in pts], "o-", color=colours(i % 10), lw=1.8,
                    ms=5, label=label_)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{s:,}" for s in sizes], fontsize=8, rotation=45 if len(sizes) > 6 else 0)
        ax.set_xlabel("code size (elements, log scale)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if input_size is not None:
            d = float(input_size)
            top = ax.secondary_xaxis("top", functions=(lambda s, d=d: d / np.maximum(s, 1e-9),
                                                       lambda c, d=d: d / np.maximum(c, 1e-9)))
            top.xaxis.set_major_locator(FixedLocator([d / s for s in sizes]))
            top.xaxis.set_minor_locator(NullLocator())
            top.set_xticklabels([_ratio(d / s) for s in sizes], fontsize=8, rotation=45 if len(sizes) > 6 else 0)
            top.set_xlabel("compression ratio (input elements / code size)", fontsize=9)
            lo, hi = ax.get_xlim()
            if max(sizes) >= d:  # the code is as big as the image: shade from there on, wide enough to read
                hi = max(hi, d * 2)
                ax.axvspan(d, hi, color="grey", alpha=0.15, lw=0)
                y0, y1 = ax.get_ylim()
                ax.text((d * hi) ** 0.5, (y0 + y1) / 2, "code larger than the image", fontsize=8, rotation=90,
                        ha="center", va="center", color="dimgrey")
                ax.set_xlim(lo, hi)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    fig.suptitle(title or "reconstruction against code size", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((len(labels) - 1) // 3), 1, 1))
    return save(fig, path)
