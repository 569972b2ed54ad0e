"""Statistics of a run's codes: one Gaussian that sampling, the latent anomaly score and traversal ranges share.

``CodeStats.fit(codes)`` keeps the per-element mean, std, min and max and the full
covariance of N flat codes (N×D). Everything that treats the codes as Gaussian --
``aelab sample`` for a plain autoencoder, ``aelab score --score latent``, the
explorer's random sample -- draws from or measures against this one object, so a
sample and a score always mean the same distribution.

The ridge. ``cov_`` is the sample covariance (ddof 1) plus ``ridge`` times the mean
variance on its diagonal (``RIDGE`` = 1e-3 by default, so 0.1% of a typical
element's variance). Relative, so it means the same for codes of any scale; large
enough that codes with more elements than fitted images (spatial conv codes, whose
covariance is singular) still have an inverse and a Cholesky factor; small enough
to move samples and distances by well under 1% for a well-conditioned code.
``std_`` is the plain per-element std, without the ridge.

``code_stats(run, split, n)`` encodes the split (batched), fits, and caches the fit
twice: on the Run (``run.cache``) and in its folder as ``codestats-<split>-<n>.safetensors``,
float64, with the sha256 of ``model.safetensors`` in its metadata; a file whose hash
differs from the Run's weights is fitted again and replaced.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.errors import AelabError

if TYPE_CHECKING:
    from aelab.data.imageset import ImageSet
    from aelab.run import Run

RIDGE = 1e-3
"""Added to the covariance's diagonal, relative to the mean variance of the elements."""
FIT_MAX = 20_000
"""``code_stats`` fits at most this many images of a split (a seeded subsample beyond it)."""
SPLITS = ("train", "val", "held_out", "full")
_FORMAT = "aelab-codestats-1"


@dataclass(eq=False)
class CodeStats:
    """A Gaussian fitted to flat codes (float64); attributes with a trailing underscore are fitted."""

    mean_: np.ndarray
    cov_: np.ndarray
    """D×D sample covariance with the ridge on its diagonal."""
    std_: np.ndarray
    """Per-element std (ddof 1), without the ridge."""
    min_: np.ndarray
    max_: np.ndarray
    n_: int
    ridge_: float
    """The absolute ridge that was added (``ridge`` × mean variance)."""
    _chol: np.ndarray | None = field(default=None, repr=False)
    _whiten: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, codes: np.ndarray, ridge: float = RIDGE) -> CodeStats:
        """Fit to ``codes`` (N×D, or N×latent_shape: flattened per row); N must be at least 2."""
        flat = checked_codes(codes)
        if not ridge >= 0:
            raise AelabError(f"ridge must be non-negative, got {ridge}")
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / (len(flat) - 1)
        var = cov.diagonal().copy()
        absolute = ridge * max(float(var.mean()), 1e-12)
        cov[np.diag_indices_from(cov)] += absolute
        return cls(mean, cov, np.sqrt(var), flat.min(0), flat.max(0), len(flat), absolute)

    @property
    def size(self) -> int:
        return int(self.mean_.shape[0])

    @property
    def chol_(self) -> np.ndarray:
        """Lower Cholesky factor L of ``cov_`` (L Lᵀ = cov_), computed on first use."""
        if self._chol is None:
            try:
                self._chol = np.linalg.cholesky(self.cov_)
            except np.linalg.LinAlgError:
                raise AelabError("the code covariance is not positive definite; fit with a larger ridge") from None
        return self._chol

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """``n`` codes (float32 n×D): mean + temperature · ε Lᵀ, ε = ``default_rng(seed).standard_normal((n, D))``."""
        eps = np.random.default_rng(seed).standard_normal((n, self.size)) * float(temperature)
        return (self.mean_ + eps @ self.chol_.T).astype(np.float32)

    def whitening(self) -> np.ndarray:
        """W (D×D) with ``|(z - mean_) @ W|`` the Mahalanobis distance: W = L⁻ᵀ (for batched tensor scoring);
        solved once and kept, as the latent, knn and normalised scores each ask for it. Read-only."""
        if self._whiten is None:
            from scipy.linalg import solve_triangular

            self._whiten = solve_triangular(self.chol_, np.eye(self.size), lower=True).T
            self._whiten.setflags(write=False)
        return self._whiten

    def mahalanobis(self, codes: np.ndarray) -> np.ndarray:
        """sqrt((z - mean)ᵀ cov⁻¹ (z - mean)) per row of ``codes`` (float64)."""
        from scipy.linalg import solve_triangular

        flat = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
        if flat.shape[1] != self.size:
            raise AelabError(f"codes of {flat.shape[1]} elements given; these statistics are of {self.size}")
        white = solve_triangular(self.chol_, (flat - self.mean_).T, lower=True)
        return np.sqrt(np.square(white).sum(0))

    def tensors(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "cov": self.cov_, "std": self.std_, "min": self.min_, "max": self.max_}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], n: int, ridge: float) -> CodeStats:
        return cls(t["mean"], t["cov"], t["std"], t["min"], t["max"], n, ridge)


def weights_hash(run: Run) -> str:
    """sha256 of the weights file the Run loaded (``model.safetensors``, or ``best.safetensors`` for
    ``weights="best"``), read once per Run (kept in ``run.cache``)."""
    key = ("weights_sha256",)
    if key not in run.cache:
        import hashlib

        h = hashlib.sha256()
        with open(run.weights_file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        run.cache[key] = h.hexdigest()
    return run.cache[key]


def file_name(split: str, n: int) -> str:
    """``codestats-<split>-<n>.safetensors`` (n: the number of images fitted)."""
    return f"codestats-{split}-{n}.safetensors"


def checked_codes(codes: np.ndarray) -> np.ndarray:
    """``codes`` as float64 N×D (a row per code, flattened), refused with one line when they cannot be
    summarised: fewer than 2, or NaN / infinite values."""
    flat = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if len(flat) < 2:
        raise AelabError(f"code statistics need at least 2 codes, got {len(flat)}")
    if not np.isfinite(flat).all():
        raise AelabError("the codes contain NaN or infinite values; the run may have diverged")
    return flat


def moments(codes: np.ndarray) -> dict[str, Any]:
    """Per-element ``mean``, ``std`` (ddof 1), ``min``, ``max`` and ``n``: ``CodeStats``' moments without its
    D×D covariance, which a spatial code of thousands of elements cannot afford on every explorer load."""
    flat = checked_codes(codes)
    return {"mean": flat.mean(0), "std": flat.std(0, ddof=1), "min": flat.min(0), "max": flat.max(0), "n": len(flat)}


def fit_images(run: Run, split: str = "train", n: int | None = None) -> ImageSet:
    """The images ``code_stats(run, split, n)`` fits: the split, or a subsample of ``n`` (default ``FIT_MAX``)
    seeded by the run's seed when the split is larger (so ``scorenorm`` compares with the very same codes)."""
    if split not in SPLITS:
        raise AelabError(f"split '{split}' is not one of {', '.join(SPLITS)}")
    images = getattr(run.splits, split)
    if images is None:
        raise AelabError(f"run {run.path} has no {split} split (its val_fraction is 0)")
    limit = FIT_MAX if n is None else int(n)
    if limit < 2:
        raise AelabError(f"code statistics need at least 2 images, got n={limit}")
    if len(images) > limit:
        pick = np.sort(np.random.default_rng(run.config.seed).choice(len(images), limit, replace=False))
        images = images.subset(pick)
    return images


def code_stats(run: Run, split: str = "train", n: int | None = None, *, codes: np.ndarray | None = None) -> CodeStats:
    """The ``CodeStats`` of the run's deterministic codes (posterior means for a VAE) over ``fit_images``.

    ``codes``: the codes of those images when the caller has encoded them already (fitted from them
    rather than encoded again; unused when the fit is cached). Cached on the Run and in its folder
    (see the module doc)."""
    images = fit_images(run, split, n)
    count = len(images)
    if codes is not None and len(codes) != count:
        raise AelabError(f"{len(codes)} codes given for the {count} images code statistics of '{split}' fit")
    key = ("codestats", split, count)
    if key in run.cache:
        return run.cache[key]
    import torch
    from safetensors import safe_open

    from aelab.io import save_tensors

    path = run.path / file_name(split, count)
    digest = weights_hash(run)
    stats = None
    if path.exists():
        with contextlib.suppress(Exception), safe_open(str(path), "np") as fh:  # unreadable or stale: refit
            meta = fh.metadata() or {}
            if meta.get("format") == _FORMAT and meta.get("weights_sha256") == digest:
                t = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 -- safe_open has no __iter__
                stats = CodeStats.from_tensors(t, int(meta["n"]), float(meta["ridge"]))
    if stats is None:
        stats = CodeStats.fit((run.encode(images) if codes is None else codes).reshape(count, -1))
        with contextlib.suppress(OSError):  # a read-only run folder: fit again next time
            save_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in stats.tensors().items()},
                         metadata={"format": _FORMAT, "weights_sha256": digest, "split": split, "n": str(count),
                                   "ridge": repr(stats.ridge_)})
    run.cache[key] = stats
    return stats
