"""Figures of ``aelab.anomaly``'s results: error heat maps, the score histogram, the ROC curve.

Drawn from an ``AnomalyResult`` and the ``HeatMaps`` that ``errormaps.heatmaps`` computed, never from a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aelab.anomaly import AnomalyResult
from aelab.errormaps import HeatMaps
from aelab.figures.base import plt, save, show_image
from aelab.rankmetrics import MAX_FPR, metrics, roc_curve


def draw_maps(result: AnomalyResult, maps: Sequence[HeatMaps], folder: str | Path) -> dict[str, str]:
    """``worst.png`` / ``sample.png`` (one per entry of ``maps``), ``score_hist.png`` and, with both
    classes labelled, ``roc.png`` in ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {m.name: str(heatmap_figure(m.inputs, m.recons, m.errors, folder / f"{m.name}.png", m.tags, m.title,
                                      masks=m.masks)) for m in maps}
    scores, anomalous = result.scores, result.anomalous
    out["score_hist"] = str(score_histogram(scores, anomalous, folder / "score_hist.png", result.kind,
                                            result.metrics))
    if anomalous is not None and 0 < anomalous.sum() < len(anomalous):
        out["roc"] = str(roc_figure(scores, anomalous, folder / "roc.png", result.kind, result.metrics))
    return out


def heatmap_figure(inputs: np.ndarray, recons: np.ndarray, err: np.ndarray, path: Path, tags: Sequence[str],
                   title: str, masks: np.ndarray | None = None) -> Path:
    """Three rows: the image, its reconstruction, the error heat map over the image (one colour scale);
    ``masks`` (bool N×H×W, the true defects) are outlined on the heat maps."""
    n = len(inputs)
    vmax = float(np.quantile(err, 0.995)) or 1e-6
    fig, axes = plt.subplots(3, n, figsize=(1.45 * n + 1.2, 5.2), squeeze=False)
    for j in range(n):
        show_image(axes[0][j], inputs[j], tags[j], fontsize=7)
        show_image(axes[1][j], recons[j])
        gray = inputs[j].mean(-1)
        show_image(axes[2][j], np.repeat(gray[..., None], 3, -1).astype(np.uint8))
        im = axes[2][j].imshow(err[j], cmap="inferno", alpha=0.6, vmin=0, vmax=vmax, interpolation="nearest")
        if masks is not None and masks[j].any():  # padded, so a defect reaching the border is closed by a frame
            h, w = masks[j].shape
            axes[2][j].contour(np.arange(-1, w + 1), np.arange(-1, h + 1), np.pad(masks[j], 1).astype(float),
                               levels=[0.5], colors="cyan", linewidths=0.9)
    for i, label in enumerate(("image", "recon", "error" if masks is None else "error,\ndefect outlined")):
        axes[i][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    bar = fig.colorbar(im, ax=axes[2].tolist(), fraction=0.025, pad=0.01)
    bar.set_label("squared error", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return save(fig, path)


def score_histogram(scores: np.ndarray, anomalous: np.ndarray | None, path: Path, kind: str = "score",
                    measured: dict[str, Any] | None = None) -> Path:
    """Scores of normal and anomalous images on shared bins, with the best-F1 threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = np.histogram_bin_edges(scores, bins=min(60, max(10, len(scores) // 20)))
    if anomalous is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label=f"all images ({len(scores)})")
    else:
        for mask, name, colour in ((~anomalous, "normal", "tab:blue"), (anomalous, "anomalous", "tab:red")):
            if mask.any():
                ax.hist(scores[mask], bins=bins, color=colour, alpha=0.55, label=f"{name} ({int(mask.sum())})")
    if measured and measured.get("threshold") is not None:
        ax.axvline(measured["threshold"], color="black", ls="--", lw=1,
                   label=f"best-F1 threshold (F1 {measured['best_f1']:.3f})")
    ax.set_xlabel(f"{kind} score (higher = more anomalous)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    auc = f", ROC AUC {measured['roc_auc']:.3f}" if measured and measured.get("roc_auc") is not None else ""
    ax.set_title(f"score histogram{auc}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def roc_figure(scores: np.ndarray, anomalous: np.ndarray, path: Path, kind: str = "score",
               measured: dict[str, Any] | None = None) -> Path:
    """The ROC curve with its area and the operating point at 5% FPR."""
    fpr, tpr, _ = roc_curve(scores, anomalous)
    m = measured or metrics(scores, anomalous)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, color="tab:red", lw=1.8, label=f"{kind} (AUC {m['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1, label="chance")
    tpr5 = m.get("tpr_at_5pct_fpr")
    if tpr5 is not None:
        ax.plot([MAX_FPR], [tpr5], "o", color="black", ms=5, label=f"TPR {tpr5:.3f} at 5% FPR")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"ROC: {int(anomalous.sum())} anomalous of {len(anomalous)}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
