"""The one-class protocol's figure: ROC AUC per normal class, drawn from ``oneclass()``'s rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aelab.figures.base import plt, save


def auroc_figure(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """A bar per normal class (its ROC AUC), the mean as a line and chance (0.5) dashed."""
    names = [str(r.get("class", r["normal"])) for r in rows]
    aucs = [float(r["roc_auc"]) if r.get("roc_auc") is not None else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * len(rows) + 1.5), 3.0))
    ax.bar(range(len(rows)), aucs, color="tab:blue")
    ax.set_xticks(range(len(rows)), names, rotation=45 if max(map(len, names), default=0) > 3 else 0,
                  ha="right" if max(map(len, names), default=0) > 3 else "center", fontsize=8)
    if aucs:
        ax.axhline(sum(aucs) / len(aucs), color="tab:orange", lw=1.2, label=f"mean {sum(aucs) / len(aucs):.3f}")
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("ROC AUC")
    ax.set_xlabel("normal class")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "one-class ROC AUC per normal class", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
