"""Per-pixel error maps of scored images: what ``aelab.figures.anomaly`` draws as heat maps, and what
``aelab.pixel`` measures against defect masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aelab.data.imageset import ImageSet

if TYPE_CHECKING:
    from aelab.anomaly import AnomalyResult
    from aelab.run import Run

@dataclass
class HeatMaps:
    """A few images with their reconstructions and per-pixel errors, for ``figures.anomaly.heatmap_figure``."""

    name: str
    """``worst`` or ``sample``: the file the figure goes to."""
    title: str
    tags: list[str]
    inputs: np.ndarray
    """uint8 N×H×W×C after the run's preprocessing."""
    recons: np.ndarray
    errors: np.ndarray
    """float N×H×W squared error, channel mean, [0, 1] pixel units."""
    masks: np.ndarray | None = None
    """bool N×H×W true defects on the same grid (``aelab.pixel``), outlined on the heat maps."""


def error_maps(run: Run, images: ImageSet | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, reconstructions, per-pixel squared error) for a few images: uint8 N×H×W×C twice
    (after the run's preprocessing) and float N×H×W (channel mean, [0, 1] pixel units)."""
    x = run.to_model(images)
    recon = run.reconstruct_tensor(x)
    err = ((recon - x) / (run.preprocess.hi - run.preprocess.lo)).square().mean(1)
    return run.preprocess.inverse(x), run.preprocess.inverse(recon), err.numpy()


def heatmaps(run: Run, result: AnomalyResult, top_k: int = 8, sample: int = 8,
             masks: np.ndarray | None = None) -> list[HeatMaps]:
    """Error maps of the ``top_k`` highest scores and of a seeded random ``sample`` (seed 0); ``masks``
    (bool N×h×w on the model's grid, one per scored image) go with them."""
    scores, images, ids, anomalous = result.scores, result.images, result.ids, result.anomalous
    picks = {"worst": np.argsort(-scores, kind="stable")[:max(top_k, 0)],
             "sample": np.sort(np.random.default_rng(0).choice(len(scores), min(max(sample, 0), len(scores)),
                                                               replace=False))}
    out = []
    for name, pos in picks.items():
        if not len(pos):
            continue
        subset = images.subset(pos) if isinstance(images, ImageSet) else np.asarray(images[pos])
        title = (f"{run.name}: the {len(pos)} highest {result.kind} scores" if name == "worst"
                 else f"{run.name}: {len(pos)} images drawn at random")
        tags = [f"id {ids[p]}\n{scores[p]:.4g}" + ("" if anomalous is None else
                                                   (" anom." if anomalous[p] else " normal")) for p in pos]
        out.append(HeatMaps(name, title, tags, *error_maps(run, subset), masks=None if masks is None else masks[pos]))
    return out
