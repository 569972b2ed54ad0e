"""How well anomaly scores rank the anomalous images above the normal ones: ROC AUC, PR AUC
(average precision), the best-F1 threshold, TPR at a low FPR, and the ROC curve.

Apart from the scores (``aelab.anomaly``) because they measure any per-image scores against 0/1
labels: the one-class protocol, pixel-level results, the figures and the benchmarks use them too.
Every score is "higher = more anomalous"; an image is called anomalous when its score is >= the
threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aelab.errors import AelabError

MAX_FPR = 0.05


def anomaly_labels(labels: np.ndarray, normal: Sequence[int] | None = None) -> np.ndarray:
    """Boolean "is anomalous" per image: label not in ``normal``, or label 1 of 0/1 labels."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels
    if normal is not None:
        return ~np.isin(labels, list(normal))
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
        raise AelabError(f"labels hold the values {shown}; anomaly metrics need 0 (normal) / 1 (anomalous) labels, "
                         f"or the normal classes named (see `aelab oneclass`)")
    return labels == 1


def metrics(scores: np.ndarray, labels: np.ndarray, max_fpr: float = MAX_FPR) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision), the best-F1 threshold and TPR at ``max_fpr`` FPR.

    ``labels``: True / 1 = anomalous. An image is called anomalous when its score
    is >= the threshold. With only one class present, the metrics that need both
    are None and ``undefined`` says why."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = anomaly_labels(np.asarray(labels).ravel())
    if len(s) != len(y):
        raise AelabError(f"{len(y)} labels for {len(s)} scores")
    if not len(s):
        raise AelabError("no scores to measure")
    if not np.isfinite(s).all():
        raise AelabError(f"{int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    out: dict[str, Any] = {"n": len(s), "n_anomalous": n_pos, "n_normal": n_neg,
                           "score_mean_normal": float(s[~y].mean()) if n_neg else None,
                           "score_mean_anomalous": float(s[y].mean()) if n_pos else None,
                           "roc_auc": None, "pr_auc": None, "best_f1": None, "threshold": None,
                           "precision": None, "recall": None, f"tpr_at_{round(max_fpr * 100):g}pct_fpr": None}
    if n_pos == 0 or n_neg == 0:
        which = "normal" if n_pos == 0 else "anomalous"
        why = f"the labels hold only {which} images, and these metrics compare normal with anomalous ones"
        out["undefined"] = {k: why for k, v in out.items() if v is None and k not in ("score_mean_normal",
                                                                                    "score_mean_anomalous")}
        return out
    tps, fps, thresholds = _counts(s, y)
    tpr, fpr = tps / n_pos, fps / n_neg
    precision = tps / (tps + fps)
    f1 = np.divide(2 * precision * tpr, precision + tpr, out=np.zeros_like(tpr), where=(precision + tpr) > 0)
    best = int(np.argmax(f1))
    ok = fpr <= max_fpr
    out.update({
        "roc_auc": float(np.trapezoid(np.r_[0.0, tpr], np.r_[0.0, fpr])),
        "pr_auc": float(np.sum(np.diff(np.r_[0.0, tpr]) * precision)),
        "best_f1": float(f1[best]), "threshold": float(thresholds[best]),
        "precision": float(precision[best]), "recall": float(tpr[best]),
        f"tpr_at_{round(max_fpr * 100):g}pct_fpr": float(tpr[ok].max()) if ok.any() else 0.0,
    })
    return out


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y = anomaly_labels(labels)
    tps, fps, thresholds = _counts(np.asarray(scores, dtype=np.float64), y)
    return np.r_[0.0, fps / max(len(y) - y.sum(), 1)], np.r_[0.0, tps / max(y.sum(), 1)], np.r_[np.inf, thresholds]


def _counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when calling every score >= t anomalous, per distinct t (descending)."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    return tps, (last + 1) - tps, s[last]
