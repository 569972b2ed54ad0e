"""Pixel-level anomaly results where defect masks exist: pixel AUROC and PRO, as anomalib reports them.

The anomaly map of an image is its per-pixel squared reconstruction error (``errormaps.error_maps``,
after the run's preprocessing). Masks mark the defective pixels (True = defect):

- ``builtin:faces`` with ``anomaly_fraction``: a defective face is its normal twin damaged (the same
  arguments with ``anomaly_fraction=0`` draw the twin), so the mask is where the two differ;
- a user's masks: any image source (``npy:masks.npy``, ``folder:masks/``) with one mask per image in
  the same order and size; a non-zero pixel is a defect.

Masks go through the run's geometric preprocessing steps (crop, centre crop, resize) so they lie on
the error maps. ``pixel_auroc`` ranks every pixel of every image; ``pro`` (per-region overlap,
Bergmann et al., MVTec AD) averages, over each connected defect region, the share of its pixels above
a threshold, and integrates that over the false-positive rate on defect-free pixels up to ``max_fpr``
(0.3), divided by ``max_fpr`` so 1 is perfect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import numpy as np

from aelab.data.imageset import ImageSet
from aelab.errormaps import error_maps
from aelab.errors import AelabError
from aelab.rankmetrics import metrics

if TYPE_CHECKING:
    from aelab.run import Run

MAX_FPR = 0.3
CHUNK = 256


def faces_masks(images: ImageSet) -> np.ndarray | None:
    """Defect masks (bool N×H×W) of a ``builtin:faces`` set, from its normal twin; None for any other set."""
    from aelab.data.builtin import faces

    if not images.name.startswith("builtin:faces?") or not images.factors or "anomaly_kind" not in images.factors:
        return None
    args = dict(parse_qsl(images.name.partition("?")[2]))
    twin = faces(int(args["n"]), int(args["seed"]), int(args["size"]), 0.0)
    return (images.batch() != twin.images[images.ids]).any(-1)


def read_masks(source: str, images: ImageSet | np.ndarray) -> np.ndarray:
    """A user's masks (any image source, one per image, same H×W): bool N×H×W, non-zero = defect."""
    from aelab.data.sources import load_images

    masks = load_images(source).batch()
    n, shape = len(images), (images.shape[:2] if isinstance(images, ImageSet) else images.shape[1:3])
    if len(masks) != n or masks.shape[1:3] != tuple(shape):
        raise AelabError(f"{source}: {len(masks)} masks of {masks.shape[1]}×{masks.shape[2]} for {n} images of "
                         f"{shape[0]}×{shape[1]}; give one mask per image, in order, of the images' size")
    return masks.max(-1) > 0


def masks_for(source: str | None, images: ImageSet | np.ndarray) -> np.ndarray | None:
    """``source`` read as masks, or (``auto`` / None) the data's own masks when it has them."""
    if source not in (None, "auto"):
        return read_masks(source, images)
    found = faces_masks(images) if isinstance(images, ImageSet) else None
    if found is None and source == "auto":
        raise AelabError("these images carry no defect masks (builtin:faces with anomaly_fraction does); "
                         "give a mask source with --masks")
    return found


def to_model_grid(run: Run, masks: np.ndarray) -> np.ndarray:
    """Masks through the run's geometric steps (crop, centre crop, resize), onto the error maps' grid."""
    from aelab.data.transforms import CenterCrop, Crop, Preprocess, Resize

    steps = [s for s in run.preprocess.steps if isinstance(s, Crop | CenterCrop | Resize)]
    x = Preprocess(steps, (0.0, 1.0))(masks.astype(np.uint8)[..., None] * np.uint8(255))
    return (x[:, 0] > 0.5).numpy()


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float | None:
    """ROC AUC of every pixel's error against the masks (None when no pixel, or every pixel, is a defect)."""
    return metrics(np.asarray(maps, np.float64).ravel(), np.asarray(masks, bool).ravel())["roc_auc"]


def pro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = MAX_FPR, steps: int = 200) -> float | None:
    """Area under the per-region-overlap curve for FPR in [0, max_fpr], divided by max_fpr."""
    from scipy import ndimage

    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 2)  # 8-connected within an image, never across images
    regions, n_regions = ndimage.label(masks, structure)
    normal = maps[~masks]
    if n_regions == 0 or not normal.size:
        return None
    # thresholds from the defect-free pixels' quantiles, ascending: FPR runs from max_fpr down to 0
    thresholds = np.quantile(normal, 1 - np.linspace(max_fpr, 0, steps))
    region_of, defect = regions[masks], maps[masks]
    sizes = np.bincount(region_of, minlength=n_regions + 1)[1:]
    # FPR per threshold: the defect-free pixels above it, counted by one search in their sorted values
    fpr = (normal.size - np.searchsorted(np.sort(normal), thresholds, side="right")) / normal.size
    # a defect pixel is above the first ``passed`` thresholds; weighted by 1 / its region's size and summed
    # from the highest threshold down, that is each threshold's sum over regions of their overlap
    passed = np.searchsorted(thresholds, defect, side="left")
    weights = np.bincount(passed, 1.0 / sizes[region_of - 1], minlength=steps + 1)
    overlap = np.cumsum(weights[::-1])[::-1][1:] / n_regions
    fpr, overlap = fpr[::-1], overlap[::-1]
    keep = fpr <= max_fpr
    fpr, overlap = np.r_[0.0, fpr[keep], max_fpr], np.r_[overlap[keep][0], overlap[keep], overlap[keep][-1]]
    return float(np.trapezoid(overlap, fpr) / max_fpr)


@dataclass
class PixelResult:
    """Pixel-level numbers of a scored set with masks."""

    pixel_auroc: float | None
    pro: float | None
    max_fpr: float
    n_images: int
    n_with_defects: int
    defect_pixel_share: float
    masks: np.ndarray | None = field(default=None, repr=False)
    """bool N×h×w: the masks on the error maps' grid (what the heat maps outline); not in ``numbers``."""

    def numbers(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "masks"}


def maps_of(run: Run, images: ImageSet | np.ndarray) -> np.ndarray:
    """Per-pixel squared error (float32 N×h×w on the model's grid), computed ``CHUNK`` images at a time.

    A pass of its own rather than kept from the score pass: that one streams (possibly sharded, possibly
    int8) and keeps one number per image, where these maps are fp32 ``error_maps``, the heat maps' pixels."""
    outs = []
    for start in range(0, len(images), CHUNK):
        pos = np.arange(start, min(start + CHUNK, len(images)))
        part = images.subset(pos) if isinstance(images, ImageSet) else images[pos]
        outs.append(error_maps(run, part)[2].astype(np.float32))
    return np.concatenate(outs) if outs else np.empty((0, 0, 0), np.float32)


def analyse_pixels(run: Run, images: ImageSet | np.ndarray, masks: np.ndarray,
                   max_fpr: float = MAX_FPR) -> PixelResult:
    """Pixel AUROC and PRO of the run's error maps of ``images`` against ``masks`` (bool N×H×W, source size)."""
    grid = to_model_grid(run, masks)
    maps = maps_of(run, images)
    if maps.shape != grid.shape:
        raise AelabError(f"masks become {grid.shape[1:]} after preprocessing but the error maps are {maps.shape[1:]}")
    return PixelResult(pixel_auroc(maps, grid), pro(maps, grid, max_fpr), max_fpr, len(grid),
                       int(grid.reshape(len(grid), -1).any(1).sum()), float(grid.mean()), masks=grid)
