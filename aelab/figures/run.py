"""Run-level figures, drawn from arrays and log records (no model): reconstructions beside their
originals, and the loss curves with each number on an axis labelled with its unit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aelab.figures.base import image_grid, log_scale_if_wide, moving_average, plt, save
from aelab.logunits import MSE_01


def reconstruction_figure(originals: np.ndarray, reconstructions: np.ndarray, path: str | Path, *,
                          ids: Sequence[int] | None = None, psnr: Sequence[float] | None = None,
                          ssim: Sequence[float] | None = None, title: str | None = None) -> Path:
    """Originals (uint8 N×H×W×C, as the model sees them) above their reconstructions, ten per row pair;
    the title carries the mean PSNR/SSIM when given, so the figure reads on its own."""
    n = len(originals)
    if len(reconstructions) != n:
        raise ValueError(f"{n} originals but {len(reconstructions)} reconstructions")
    ids = list(range(n)) if ids is None else list(ids)
    per_row = min(n, 10)
    grid, row_labels = [], []
    for start in range(0, n, per_row):
        grid += [list(originals[start:start + per_row]), list(reconstructions[start:start + per_row])]
        row_labels += ["original", "recon"]
    scores = ""
    if psnr is not None and ssim is not None and n:
        scores = f" (mean PSNR {float(np.mean(psnr)):.2f} dB, SSIM {float(np.mean(ssim)):.3f})"
    return image_grid(grid, path, row_labels=row_labels,
                      col_labels=[f"id {i}" for i in ids[:per_row]] if n <= per_row else None,
                      title=(title or "reconstructions") + scores)


def _per_step(ax: plt.Axes, steps: np.ndarray, values: np.ndarray, colour: str, label: str) -> None:
    """Per-iteration values (faint under their moving average, over about 1/50 of the run, when there are
    more than 100)."""
    k = max(1, len(values) // 50)
    ax.plot(steps, values, color=colour, alpha=0.3 if k > 1 else 0.9, lw=0.8, label=f"{label} (per iteration)")
    if k > 1:
        ax.plot(steps[k - 1:], moving_average(values, k), color=colour, lw=1.6,
                label=f"{label} ({k}-iteration mean)")


def loss_figure(records: list[dict[str, Any]], path: str | Path, *, objective: str = "train.loss on data.range",
                title: str = "") -> Path:
    """A run's curves from its ``metrics.jsonl`` records (``aelab.logunits``), one unit per panel: the
    reconstruction MSE per pixel on [0, 1] of training batches and of the validation split (comparable:
    same measure, same scale); the training objective (``objective`` names it, e.g. "MSE on [-1, 1] + β·KL/D");
    and, for a VAE, the KL term per image in nats. A log written before training recorded ``mse_01``
    shows validation alone in the first panel, and says so."""
    steps_of = [r for r in records if "loss" in r]
    steps = np.array([r["step"] for r in steps_of])
    epochs = [r for r in records if "val_mse" in r]
    train_mse = [r for r in steps_of if "mse_01" in r]
    kl = [r for r in steps_of if "kl" in r]
    panels = 3 if kl else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7, 2.5 * panels + 0.4), sharex=True, squeeze=False,
                             layout="constrained")
    ax = axes[0][0]
    shown = []
    if train_mse:
        values = np.array([r["mse_01"] for r in train_mse])
        _per_step(ax, np.array([r["step"] for r in train_mse]), values, "tab:blue", "train")
        shown.append(values)
    if epochs:
        val = np.array([r["val_mse"] for r in epochs])
        ax.plot([r["step"] for r in epochs], val, "o-", color="tab:orange", ms=4, label="validation (per epoch)")
        shown.append(val)
    log_scale_if_wide(ax, shown)
    ax.set_ylabel(f"reconstruction\n{MSE_01}", fontsize=8)
    ax.set_title("reconstruction error, train and validation on one scale" if train_mse or not steps_of else
                 "reconstruction error, validation only (this run's log predates the train MSE on [0, 1])",
                 fontsize=9)
    ax = axes[1][0]
    if len(steps):
        loss = np.array([r["loss"] for r in steps_of])
        _per_step(ax, steps, loss, "tab:purple", "training objective")
        log_scale_if_wide(ax, [loss])
    ax.set_ylabel(f"training objective\n({objective})", fontsize=8)
    ax.set_title("what the optimiser minimised (its own scale: not comparable with the panel above)", fontsize=9)
    if kl:
        ax = axes[2][0]
        _per_step(ax, np.array([r["step"] for r in kl]), np.array([r["kl"] for r in kl]), "tab:green", "KL")
        ax.set_ylabel("KL divergence\nper image (nats)", fontsize=8)
        ax.set_title("the VAE's KL term (enters the objective as β·KL/D, D = values per image)", fontsize=9)
    for row in axes:
        row[0].grid(alpha=0.3)
        if row[0].get_legend_handles_labels()[0]:
            row[0].legend(fontsize=7)
    axes[-1][0].set_xlabel("iteration")
    fig.suptitle(title or "training", fontsize=10)
    return save(fig, path)
