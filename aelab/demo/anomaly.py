"""``aelab demo``'s anomaly section: a conv autoencoder trained on normal faces ranks defective ones."""

from __future__ import annotations

from typing import Any

from aelab.anomaly import analyse, record
from aelab.config import config_from_dict
from aelab.errormaps import heatmaps
from aelab.figures.anomaly import draw_maps
from aelab.run import SUMMARY, load_run
from aelab.runfolder import SCORES
from aelab.train import train


def demo_section(demo: Any) -> list[str]:
    """A conv autoencoder trained on normal ``builtin:faces`` ranks a test set with 10% defective faces
    (no eyes, smeared, wrong colours, occluded): ROC AUC, the ROC curve, the score histogram and heat
    maps of the five worst, into the run's ``figures/``; the numbers into ``RUN/anomaly.json``."""
    n, epochs, n_test = (1000, 8, 500) if demo.quick else (5000, 15, 2000)
    cfg = config_from_dict({
        "name": "anomaly-conv", "seed": 0,
        "data": {"source": f"builtin:faces?n={n}&seed=0", "val_fraction": 0.1, "preprocess": [{"resize": 32}]},
        "model": {"type": "conv", "channels": [16, 32, 64], "kernel": 4, "latent_dim": 16},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.003}})
    folder = demo.out / "anomaly"
    run = load_run(folder) if (folder / SUMMARY).exists() else None
    if run is None or run.config.to_dict() != cfg.to_dict():
        run = train(cfg, folder, force=True, progress=demo.progress)
    test = f"builtin:faces?n={n_test}&seed=1&anomaly_fraction=0.1"
    res = analyse(run, test, "mse", csv=folder / SCORES)
    res.figures = draw_maps(res, heatmaps(run, res, top_k=5, sample=0), run.figures)
    record(run, res)
    m = res.metrics
    demo.result["anomaly"] = {"run": str(run.path), "data": test, "kind": "mse",
                              **{k: m[k] for k in ("n", "n_anomalous", "roc_auc", "pr_auc", "best_f1",
                                                   "tpr_at_5pct_fpr")},
                              "figures": res.figures, "record": res.record}
    return [f"anomaly: ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f}, TPR {m['tpr_at_5pct_fpr']:.2f} at 5% FPR "
            f"on {m['n']} test faces ({m['n_anomalous']} defective); figures in {run.figures}"]
