"""Sampling: new images decoded from codes drawn from a distribution over the code space.

``sample`` draws codes, seeded by an explicit generator (never the global RNG state), and
decodes them. A VAE has its prior N(0, I); a plain autoencoder has none, so a Gaussian (full
covariance: ``aelab.codestats``, the same fit the latent anomaly score uses) or a Gaussian
mixture is fitted to the codes of its training split and sampled instead.

Noise on the codes of chosen images (``augment``, ``compare_noise``) is ``aelab.codenoise``.
Figures of these results are in ``aelab.figures.generate``; the demo's section in
``aelab.demo.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aelab.codestats import CodeStats, code_stats
from aelab.errors import AelabError
from aelab.io import write_npz

if TYPE_CHECKING:
    from aelab.run import Run

Fit = Literal["auto", "prior", "gaussian", "gmm"]
FITS = ("auto", "prior", "gaussian", "gmm")


# -- distributions over codes ---------------------------------------------------------

@dataclass
class LatentPrior:
    """A distribution over flat codes: the VAE prior, one Gaussian, or a Gaussian mixture.

    ``chols`` holds a Cholesky factor per component, or is None for N(0, I) (a
    VAE prior, where a D×D identity would be wasteful for big spatial codes).
    A single Gaussian keeps its ``CodeStats`` in ``stats`` and draws through it."""

    kind: str
    means: np.ndarray
    weights: np.ndarray
    chols: np.ndarray | None = None
    n_fit: int = 0
    stats: CodeStats | None = None

    @classmethod
    def gaussian(cls, stats: CodeStats) -> LatentPrior:
        """One Gaussian: the fitted code statistics."""
        return cls("gaussian", stats.mean_[None], np.ones(1), stats.chol_[None], stats.n_, stats)

    @property
    def size(self) -> int:
        return int(self.means.shape[1])

    def describe(self) -> str:
        if self.kind == "prior":
            return "the VAE prior N(0, I)"
        if self.kind == "gaussian":
            return f"a Gaussian (full covariance) fitted to {self.n_fit} training codes"
        return (f"a {len(self.weights)}-component Gaussian mixture (full covariance) fitted to "
                f"{self.n_fit} training codes")

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """``n`` flat codes (float32 n×D). The temperature scales the spread around each mean.

        Stream: ``default_rng(seed)`` draws the component of every sample (only
        for a mixture), then an n×D block of standard normals."""
        if self.stats is not None:
            return self.stats.sample(n, seed, temperature)
        rng = np.random.default_rng(seed)
        k = len(self.weights)
        comp = rng.choice(k, size=n, p=self.weights) if k > 1 else np.zeros(n, dtype=np.int64)
        eps = rng.standard_normal((n, self.size)) * float(temperature)
        if self.chols is None:
            return (self.means[comp] + eps).astype(np.float32)
        out = np.empty((n, self.size))
        for c in range(k):  # one matrix product per component, not per sample
            rows = comp == c
            out[rows] = self.means[c] + eps[rows] @ self.chols[c].T
        return out.astype(np.float32)


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Cholesky factor of a mixture component's covariance, with a small ridge so rank-deficient fits still work."""
    d = len(cov)
    ridge = 1e-6 * max(float(np.trace(cov)) / d, 1e-12)
    for _ in range(8):
        try:
            return np.linalg.cholesky(cov + ridge * np.eye(d))
        except np.linalg.LinAlgError:
            ridge *= 10
    raise AelabError("the training codes have a degenerate covariance; cannot fit a Gaussian to them")


def fit_gaussian(codes: np.ndarray) -> LatentPrior:
    """One Gaussian over ``codes`` (N×D, or N×latent_shape): ``CodeStats.fit`` with its documented ridge."""
    return LatentPrior.gaussian(CodeStats.fit(codes))


def fit_gmm(codes: np.ndarray, components: int = 5, seed: int = 0) -> LatentPrior:
    """A full-covariance Gaussian mixture (scikit-learn EM, k-means init seeded by ``seed``)."""
    from sklearn.mixture import GaussianMixture

    flat = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if components < 1:
        raise AelabError(f"--components must be at least 1, got {components}")
    if len(flat) < max(2, components):
        raise AelabError(f"a {components}-component mixture needs at least {max(2, components)} codes, got {len(flat)}")
    gmm = GaussianMixture(components, covariance_type="full", random_state=seed, reg_covar=1e-6).fit(flat)
    chols = np.stack([_cholesky(c) for c in gmm.covariances_])
    weights = gmm.weights_ / gmm.weights_.sum()
    return LatentPrior("gmm", gmm.means_, weights, chols, len(flat))


def latent_prior(run: Run, fit: Fit = "auto", components: int = 5) -> LatentPrior:
    """The distribution ``sample`` draws codes from.

    ``auto``: the prior for a VAE, a Gaussian fit for any other model. Fits use
    the deterministic codes of the run's training split: ``gaussian`` is
    ``aelab.codestats.code_stats(run)`` (the Gaussian the latent anomaly score
    measures against), ``gmm`` is fitted to all of them and kept in ``run.cache``."""
    if fit not in FITS:
        raise AelabError(f"--fit '{fit}' is not one of {', '.join(FITS)}")
    if fit == "auto":
        fit = "prior" if run.variational else "gaussian"
    if fit == "prior":
        if not run.variational:
            raise AelabError(f"run {run.path} is a {run.model.family} model and has no prior; "
                             f"use --fit gaussian or gmm")
        return LatentPrior("prior", np.zeros((1, run.latent_size)), np.ones(1))
    if fit == "gaussian":
        return LatentPrior.gaussian(code_stats(run))
    key = ("generate.gmm", components)
    if key not in run.cache:
        run.cache[key] = fit_gmm(run.encode(run.splits.train), components)
    return run.cache[key]


@dataclass
class Samples:
    images: np.ndarray
    """uint8 N×H×W×C, the model's output shape."""
    codes: np.ndarray
    """float32 N×latent_size, the codes that were decoded."""
    prior: LatentPrior
    seed: int
    temperature: float

    def numbers(self) -> dict[str, Any]:
        """What was drawn, for JSON: n, seed, temperature, the fit's kind and what it is."""
        return {"n": len(self.images), "seed": self.seed, "temperature": self.temperature, "fit": self.prior.kind,
                "drawn_from": self.prior.describe()}

    def save(self, path: str | Path) -> Path:
        """An ``.npz`` with ``images`` (loads back as ``npz:PATH``), ``codes``, ``seed`` and ``temperature``."""
        return write_npz(path, {"images": self.images, "codes": self.codes, "seed": np.int64(self.seed),
                                "temperature": np.float64(self.temperature)})


def sample(run: Run, n: int = 64, seed: int = 0, temperature: float = 1.0, fit: Fit = "auto",
           components: int = 5) -> Samples:
    """Draw ``n`` codes from ``latent_prior(run, fit)`` and decode them."""
    if n < 1:
        raise AelabError(f"-n must be at least 1, got {n}")
    if not temperature > 0:
        raise AelabError(f"--temperature must be positive, got {temperature}")
    prior = latent_prior(run, fit, components)
    codes = prior.sample(n, seed, temperature)
    return Samples(run.decode(codes), codes, prior, seed, float(temperature))


