"""What the ``knn`` and ``normalised`` anomaly scores measure against: the training codes and
the held-out normal images' score statistics.

``knn``: an image's code is compared with the codes of the training images in the
whitened code space of ``aelab.codestats`` (where Euclidean distance is the
Mahalanobis distance of the fitted Gaussian): the mean distance to its
``KNN_K`` nearest training codes. Unlike ``latent`` (one Gaussian) it follows a
class whose codes form several clusters (Fashion-MNIST's bags, shirts).

``normalised``: each component of ``NORMALISED_PARTS`` is z-scored with the mean
and std it has on held-out normal images (``anomaly.heldout_stats``: the run's
validation split; its training split when ``val_fraction`` is 0), and the z-scores
are averaged. The
statistics come from normal training data only, so the score of an image does not
depend on which other images are scored with it (``combined``'s ranks do), and a
threshold chosen once applies to any later batch. The parts were chosen on
Fashion-MNIST with held-out normals against other classes' *training* images,
never the test set (benchmarks/oneclass.md).

The reference codes and the statistics are computed once per Run and kept in ``run.cache``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from aelab.errors import AelabError

if TYPE_CHECKING:
    from aelab.run import Run

KNN_K = 5
"""Neighbours averaged by the ``knn`` score."""
NORMALISED_PARTS = ("ssim", "latent", "knn")
"""The components ``normalised`` averages, each z-scored on held-out normal images."""


def reference_codes(run: Run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, whitening W, whitened training codes) as float32 tensors on the run's device.

    The codes are those ``code_stats(run)`` is fitted to (``codestats.fit_images``: the same seeded
    subsample of at most ``codestats.FIT_MAX`` training images), encoded once for both when neither is
    cached, so ``latent`` and ``knn`` share one space."""
    key = ("knn_reference",)
    if key not in run.cache:
        from aelab.codestats import code_stats, fit_images

        images = fit_images(run)
        codes = run.encode(images).reshape(len(images), -1)
        stats = code_stats(run, codes=codes)  # fitted from these codes unless the fit is cached
        white = (codes.astype(np.float64) - stats.mean_) @ stats.whitening()
        run.cache[key] = tuple(torch.from_numpy(np.asarray(a, np.float32)).to(run.device)  # float32 copies, writable
                               for a in (stats.mean_, stats.whitening(), white))
    return run.cache[key]


def whitened(codes: torch.Tensor, mean: torch.Tensor, whiten: torch.Tensor) -> torch.Tensor:
    """A batch of codes (any code shape) in the whitened space: ``(z - mean) @ W``, float32 N×D; its row
    norms are the ``latent`` score, its distances to the reference codes the ``knn`` score."""
    return (codes.flatten(1).float() - mean) @ whiten


def nearest_mean(white: torch.Tensor, refs: torch.Tensor, k: int = KNN_K) -> torch.Tensor:
    """Mean distance of each whitened code to its ``k`` nearest whitened reference codes."""
    k = min(k, len(refs))
    return torch.cdist(white, refs).topk(k, dim=1, largest=False).values.mean(1)


def knn_distance(codes: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 k: int = KNN_K) -> torch.Tensor:
    """Mean whitened distance of each code (a batch, any code shape) to its ``k`` nearest reference codes."""
    mean, whiten, refs = reference
    return nearest_mean(whitened(codes, mean, whiten), refs, k)


def zmean(parts: dict[str, np.ndarray], stats: dict[str, tuple[float, float]]) -> np.ndarray:
    """The mean over ``stats``' kinds of ``(parts[kind] - mean) / std`` (a zero std counts as 1)."""
    missing = [k for k in stats if k not in parts]
    if missing:
        raise AelabError(f"normalised score: missing component score(s) {', '.join(missing)}")
    z = [(np.asarray(parts[k], dtype=np.float64) - m) / (s if s > 0 else 1.0) for k, (m, s) in stats.items()]
    return np.mean(z, axis=0)
