"""Generation with Gaussian noise: prior samples, noisy-code augmentation, same-noise comparisons.

Three things, all seeded by explicit generators (never the global RNG state):

* ``sample``: codes drawn from a distribution over the code space, decoded. A
  VAE has its prior N(0, I); a plain autoencoder has none, so a Gaussian (full
  covariance) or a Gaussian mixture is fitted to the codes of its training split
  (cached per ``Run`` object) and sampled instead.
* ``augment``: each chosen image is encoded, Gaussian noise is added to its code
  and the result decoded, ``variants`` times; the result saves as an ``.npz`` that
  loads back as the data source ``npz:FILE``.
* ``compare_noise``: the same noise vectors applied to two models.

The noise stream (what "the same noise" means). For image id ``i``, variant
``v`` and code element ``j``::

    eps[i, v, j] = np.random.default_rng([seed, i]).standard_normal((K, variants))[j, v]

The draw is element-major, so its first ``k`` rows do not depend on ``K``: a
model with a ``k``-element code gets exactly the first ``k`` elements of every
variant's vector, whatever other model it is compared with, and two models
share the first ``min(k_a, k_b)`` elements. Noise depends only on (seed, id),
not on which other ids were chosen or in what order.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from aelab.data.ids import parse_ids
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError
from aelab.io import write_npy, write_npz

if TYPE_CHECKING:
    from aelab.run import Run

Fit = Literal["auto", "prior", "gaussian", "gmm"]
Mode = Literal["fixed", "posterior"]
FITS = ("auto", "prior", "gaussian", "gmm")
MODES = ("fixed", "posterior")


# -- distributions over codes ---------------------------------------------------------

@dataclass
class LatentPrior:
    """A Gaussian mixture over flat codes (one component for a single Gaussian).

    ``chols`` holds a Cholesky factor per component, or is None for N(0, I) (a
    VAE prior, where a D×D identity would be wasteful for big spatial codes)."""

    kind: str
    means: np.ndarray
    weights: np.ndarray
    chols: np.ndarray | None = None
    n_fit: int = 0

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
    """Cholesky factor of a covariance, with a small ridge so rank-deficient fits still work."""
    d = len(cov)
    ridge = 1e-6 * max(float(np.trace(cov)) / d, 1e-12)
    for _ in range(8):
        try:
            return np.linalg.cholesky(cov + ridge * np.eye(d))
        except np.linalg.LinAlgError:
            ridge *= 10
    raise AelabError("the training codes have a degenerate covariance; cannot fit a Gaussian to them")


def fit_gaussian(codes: np.ndarray) -> LatentPrior:
    """Mean and full covariance of ``codes`` (N×D, or N×latent_shape)."""
    flat = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if len(flat) < 2:
        raise AelabError(f"a Gaussian fit needs at least 2 codes, got {len(flat)}")
    cov = np.atleast_2d(np.cov(flat, rowvar=False))
    return LatentPrior("gaussian", flat.mean(0, keepdims=True), np.ones(1), _cholesky(cov)[None], len(flat))


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


_PRIORS: weakref.WeakKeyDictionary[Any, dict[tuple, LatentPrior]] = weakref.WeakKeyDictionary()


def latent_prior(run: Run, fit: Fit = "auto", components: int = 5) -> LatentPrior:
    """The distribution ``sample`` draws codes from.

    ``auto``: the prior for a VAE, a Gaussian fit for any other model. Fits use
    the deterministic codes of the run's training split and are cached per Run."""
    if fit not in FITS:
        raise AelabError(f"--fit '{fit}' is not one of {', '.join(FITS)}")
    if fit == "auto":
        fit = "prior" if run.variational else "gaussian"
    if fit == "prior":
        if not run.variational:
            raise AelabError(f"run {run.path} is a {run.model.family} model and has no prior; "
                             f"use --fit gaussian or gmm")
        return LatentPrior("prior", np.zeros((1, run.latent_size)), np.ones(1))
    cache = _PRIORS.setdefault(run, {})
    key = (fit, components if fit == "gmm" else 1)
    if key not in cache:
        codes = run.encode(run.splits.train)
        cache[key] = fit_gaussian(codes) if fit == "gaussian" else fit_gmm(codes, components)
    return cache[key]


@dataclass
class Samples:
    images: np.ndarray
    """uint8 N×H×W×C, the model's output shape."""
    codes: np.ndarray
    """float32 N×latent_size, the codes that were decoded."""
    prior: LatentPrior
    seed: int
    temperature: float

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


def sample_figure(run: Run, n: int, path: str | Path, seed: int = 0, temperature: float = 1.0, fit: Fit = "auto",
                  components: int = 5, save: str | Path | None = None) -> dict[str, Any]:
    """A grid of ``n`` samples, titled with what they were drawn from (``save``: also the .npz)."""
    import textwrap

    from aelab.figures.base import image_grid

    s = sample(run, n, seed, temperature, fit, components)
    root = int(np.ceil(np.sqrt(n)))
    cols = next((c for c in range(root, 2 * root + 1) if n % c == 0), root) if n > 3 else n
    rows = [list(s.images[i:i + cols]) for i in range(0, n, cols)]
    temp = f", temperature {temperature:g}" if temperature != 1 else ""
    text = f"{run.name}: {n} samples from {s.prior.describe()} (seed {seed}{temp})"
    image_grid(rows, path, title=textwrap.fill(text, max(40, int(cols * 0.9 * 13))), cell=0.9)
    result = {"figure": str(path), "run": str(run.path), "n": n, "seed": seed, "temperature": float(temperature),
              "fit": s.prior.kind, "drawn_from": s.prior.describe(), "sharpness": _mean_sharpness(s.images)}
    if save:
        result["saved"] = str(s.save(save))
    return result


def _mean_sharpness(images: np.ndarray) -> float:
    from aelab.quality import sharpness

    return float(sharpness(images).mean())


# -- noise on codes ---------------------------------------------------------------

def code_noise(seed: int, ids: np.ndarray | list[int], variants: int, size: int) -> np.ndarray:
    """Standard normal noise, float32 N×variants×size, from one stream per image id (see the module doc)."""
    ids = np.asarray(ids, dtype=np.int64)
    if seed < 0:
        raise AelabError(f"--seed must be non-negative, got {seed}")
    out = np.empty((len(ids), variants, size), dtype=np.float32)
    for row, i in enumerate(ids.tolist()):  # a generator per id keeps each image's noise independent of the others
        out[row] = np.random.default_rng([seed, i]).standard_normal((size, variants)).T
    return out


def select(run: Run, ids: str | list[int] | np.ndarray, data: str | ImageSet | None = None) -> ImageSet:
    """Images by id: ids are rows of ``data`` (default: the run's whole data source, before any split)."""
    images = run.splits.full if data is None else (data if isinstance(data, ImageSet) else run.data(data))
    wanted = parse_ids(ids) if isinstance(ids, str | int) else parse_ids([int(i) for i in ids])
    return images.by_ids(wanted)


@dataclass
class Augmented:
    """Noisy-code variants of some images, grouped per source image (its variants are adjacent)."""

    images: np.ndarray
    """uint8 (N·variants)×H×W×C, decoded variants in the model's output shape."""
    labels: np.ndarray | None
    """The source labels, repeated ``variants`` times (None when the source has none)."""
    source_ids: np.ndarray
    variant: np.ndarray
    originals: np.ndarray
    """uint8 N×H×W×C: the source images as the model saw them (after preprocessing)."""
    seed: int
    sigma: float | None
    mode: str
    variants: int
    code_size: int
    noise: np.ndarray = field(repr=False)
    """The standard normal draws used, float32 N×variants×code_size."""

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"images": self.images}
        if self.labels is not None:
            out["labels"] = self.labels
        out.update(source_ids=self.source_ids, variant=self.variant, seed=np.int64(self.seed),
                   sigma=np.float64(np.nan if self.sigma is None else self.sigma))
        return out

    def save(self, path: str | Path, format: Literal["npz", "npy"] = "npz") -> list[Path]:
        """``npz``: one file (``images``, ``labels``, ``source_ids``, ``variant``, ``seed``, ``sigma``) that
        loads back as ``npz:PATH``. ``npy``: ``<stem>_data.npy``, ``<stem>_label.npy`` and
        ``<stem>_ids.npy`` beside ``path`` (or ``aug_*.npy`` inside it, when it is a folder)."""
        path = Path(path)
        if format == "npz":
            return [write_npz(path, self.arrays())]
        if format != "npy":
            raise AelabError(f"--format '{format}' is not npz or npy")
        folder, stem = (path, "aug") if path.is_dir() or not path.suffix else (path.parent, path.stem)
        parts = {"data": self.images, "label": self.labels, "ids": self.source_ids}
        return [write_npy(folder / f"{stem}_{k}.npy", v) for k, v in parts.items() if v is not None]


def augment(run: Run, images: ImageSet | np.ndarray | str | list[int], variants: int = 5, sigma: float = 0.5,
            seed: int = 0, mode: Mode = "fixed", *, noise: np.ndarray | None = None) -> Augmented:
    """Encode each image, add Gaussian noise to its code, decode; ``variants`` times per image.

    ``fixed``: code + sigma·eps. ``posterior`` (VAE only): mean + exp(logvar/2)·eps,
    a draw from the model's own posterior (sigma is not used). ``images`` may be
    an id list (``"1-5,226-230"``) into the run's data source. ``noise``
    (N×variants×≥code size) replaces the seeded draw."""
    if isinstance(images, str | list):
        images = select(run, images)
    if variants < 1:
        raise AelabError(f"--variants must be at least 1, got {variants}")
    if mode not in MODES:
        raise AelabError(f"--mode '{mode}' is not one of {', '.join(MODES)}")
    if mode == "posterior" and not run.variational:
        raise AelabError(f"--mode posterior needs a VAE; run {run.path} is a {run.model.family} model")
    if mode == "fixed" and not sigma >= 0:
        raise AelabError(f"--sigma must be non-negative, got {sigma}")
    images = run.check_images(images)
    n, k = len(images), run.latent_size
    ids = images.ids if isinstance(images, ImageSet) else np.arange(n)
    if noise is None:
        noise = code_noise(seed, ids, variants, k)
    elif noise.shape[:2] != (n, variants) or noise.shape[2] < k:
        raise AelabError(f"noise of shape {noise.shape} given; need {n}×{variants}×(at least {k})")
    eps = noise[..., :k]
    if mode == "posterior":
        mean, logvar = run.encode_stats(images)
        mean, std = mean.reshape(n, 1, k), np.exp(0.5 * logvar.reshape(n, 1, k))
        codes = mean + std * eps
    else:
        codes = run.encode(images).reshape(n, 1, k) + np.float32(sigma) * eps
    decoded = run.decode(codes.reshape(n * variants, k).astype(np.float32))
    labels = images.get_labels() if isinstance(images, ImageSet) else None
    return Augmented(
        images=decoded,
        labels=None if labels is None else np.repeat(labels.astype(np.int64), variants),
        source_ids=np.repeat(np.asarray(ids, dtype=np.int64), variants),
        variant=np.tile(np.arange(variants, dtype=np.int64), n),
        originals=run.preprocess.inverse(run.to_model(images)),
        seed=int(seed), sigma=None if mode == "posterior" else float(sigma), mode=mode, variants=variants,
        code_size=k, noise=noise[..., :k])


def _noise_text(aug: Augmented) -> str:
    if aug.mode == "posterior":
        return "codes drawn from the VAE posterior N(mean, var)"
    return f"code + σ·ε, σ = {aug.sigma:g}"


def augment_figure(aug: Augmented, path: str | Path, title: str = "", max_rows: int = 24) -> Path:
    """Each original (first column) beside its variants, one row per source image."""
    from aelab.figures.base import image_grid

    n, v = len(aug.originals), aug.variants
    shown = min(n, max_rows)
    rows = [[aug.originals[i], *aug.images[i * v:(i + 1) * v]] for i in range(shown)]
    ids = aug.source_ids[::v]
    more = f" (first {shown} of {n} images)" if shown < n else ""
    head = title or "augmentation"
    image_grid(rows, path, row_labels=[f"id {i}" for i in ids[:shown]],
               col_labels=["original", *(f"variant {j + 1}" for j in range(v))],
               title=f"{head}: {_noise_text(aug)}, seed {aug.seed}{more}", cell=1.0)
    return Path(path)


# -- the same noise through two models --------------------------------------------------

def variant_stats(aug: Augmented) -> dict[str, float]:
    """MSE/PSNR/SSIM of the variants against their original (images in [0, 1]) and the
    diversity among an image's variants: the mean absolute pixel difference in [0, 1]
    units, averaged over all pairs of variants and then over images."""
    from aelab.metrics import reconstruction_metrics

    v = aug.variants
    unit = torch.from_numpy(aug.images).permute(0, 3, 1, 2).float() / 255.0
    orig = torch.from_numpy(aug.originals).permute(0, 3, 1, 2).float().repeat_interleave(v, 0) / 255.0
    per = reconstruction_metrics(unit, orig)
    stats = {k: float(t.mean()) for k, t in per.items()}
    grouped = unit.reshape(len(aug.originals), v, -1)
    pairs = [(a, b) for a in range(v) for b in range(a + 1, v)]
    stats["diversity"] = float(torch.stack([(grouped[:, a] - grouped[:, b]).abs().mean(1) for a, b in pairs])
                               .mean()) if pairs else 0.0
    return stats


def compare_noise(run_a: Run, run_b: Run, images: ImageSet, variants: int = 5, sigma: float = 0.5, seed: int = 0,
                  mode: Mode = "fixed") -> tuple[Augmented, Augmented, dict[str, Any]]:
    """``augment`` both runs with one noise draw of max(k_a, k_b) elements per variant.

    ``mode`` posterior applies to the variational runs; a plain autoencoder always gets code + sigma·eps."""
    ids = images.ids
    k = max(run_a.latent_size, run_b.latent_size)
    noise = code_noise(seed, ids, variants, k)
    augs = [augment(r, images, variants, sigma, seed, mode if r.variational else "fixed", noise=noise)
            for r in (run_a, run_b)]
    shared = min(run_a.latent_size, run_b.latent_size)
    result: dict[str, Any] = {
        "ids": ids.tolist(), "variants": variants, "sigma": float(sigma), "seed": int(seed), "mode": mode,
        "noise": f"per image id one stream default_rng([seed, id]) of {k}×{variants} standard normals "
                 f"(element-major); each model uses the first k elements of its code size, "
                 f"so the first {shared} are shared",
        "shared_elements": shared,
    }
    for key, run, aug in (("a", run_a, augs[0]), ("b", run_b, augs[1])):
        codes = run.encode(images).reshape(len(images), -1)
        result[key] = {"run": str(run.path), "name": run.name, "family": run.model.family,
                       "code_size": run.latent_size, "mode": aug.mode,
                       "code_rms": float(np.sqrt(np.mean(codes.astype(np.float64) ** 2))), **variant_stats(aug)}
    return augs[0], augs[1], result


def compare_noise_figure(run_a: Run, run_b: Run, ids: str | list[int], sigma: float, seed: int, path: str | Path,
                         variants: int = 5, data: str | ImageSet | None = None, mode: Mode = "fixed",
                         max_rows: int = 24) -> dict[str, Any]:
    """One row per image: the original, A's variants, B's variants (the same noise). Returns the numbers."""
    import textwrap

    from aelab.figures.base import image_grid

    images = select(run_a, ids, data)
    run_b.check_images(images, "images for run B")
    aug_a, aug_b, result = compare_noise(run_a, run_b, images, variants, sigma, seed, mode)
    v, shown = variants, min(len(images), max_rows)
    rows = [[aug_a.originals[i], *aug_a.images[i * v:(i + 1) * v], *aug_b.images[i * v:(i + 1) * v]]
            for i in range(shown)]
    ka, kb = run_a.latent_size, run_b.latent_size
    how = {"fixed": f"code + σ·ε, σ = {sigma:g}", "posterior": "VAE: posterior mean + std·ε"}
    title = (f"Same noise ε (seed {seed}) through A = {run_a.name} ({run_a.model.family}, {ka}-element code) and "
             f"B = {run_b.name} ({run_b.model.family}, {kb}-element code)\n"
             f"A: {how[aug_a.mode]};  B: {how[aug_b.mode]};  ε drawn per element from one stream per image: "
             f"A uses its first {ka} elements, B its first {kb}, the first {min(ka, kb)} are shared"
             + (f"\n(first {shown} of {len(images)} images shown; the numbers cover all)"
                if shown < len(images) else ""))
    width = max(60, (1 + 2 * v) * 14)  # characters that fit above the grid
    title = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    image_grid(rows, path, row_labels=[f"id {i}" for i in images.ids[:shown]],
               col_labels=["original", *(f"A{j + 1}" for j in range(v)), *(f"B{j + 1}" for j in range(v))],
               title=title, cell=1.0)
    return {"figure": str(path), **result}


# -- the demo ---------------------------------------------------------------------

DEMO_IDS = "1-5,226-230,841-845,1471-1475"
"""The ids the course reports augmented (five variants each)."""


def demo_section(demo: Any) -> list[str]:
    """``aelab demo``: a sample grid per model, the AE-vs-VAE same-noise figure, the VAE's
    augmentation of the reports' ids as ``aug.npz``, and (full demo only) sample quality."""
    from aelab.quality import generation_quality, sharpness

    ae, vae = demo.runs["ae"], demo.runs["vae"]
    n = 32 if demo.quick else 64
    lines: list[str] = []
    numbers: dict[str, Any] = {"samples": {}}
    for key, run in (("vae", vae), ("ae", ae)):
        s = sample_figure(run, n, run.figures / "samples.png", seed=0)
        real = run.preprocess.inverse(run.to_model(run.val_data()))
        s["sharpness_real"] = float(sharpness(real).mean())
        numbers["samples"][key] = s
        lines.append(f"samples ({key}): {s['figure']}  ({s['drawn_from']}; sharpness {s['sharpness']:.4f} "
                     f"vs {s['sharpness_real']:.4f} real)")
    ids = DEMO_IDS if len(vae.splits.full) > 1475 else "0-9"
    c = compare_noise_figure(ae, vae, ids, 0.5, 0, vae.figures / "same_noise.png")
    numbers["same_noise"] = c
    lines.append(f"same noise, AE vs VAE: {c['figure']}  (PSNR of variants {c['a']['psnr']:.2f} vs "
                 f"{c['b']['psnr']:.2f} dB, diversity {c['a']['diversity']:.4f} vs {c['b']['diversity']:.4f})")
    aug = augment(vae, ids, 5, 0.5, 0)
    path = aug.save(demo.out / "aug.npz")[0]
    numbers["augment"] = {"file": str(path), "images": list(aug.images.shape), "ids": ids, "sigma": 0.5, "seed": 0}
    lines.append(f"augmented data: {path}  ({aug.images.shape[0]} images, load with npz:{path})")
    if not demo.quick:
        numbers["quality"] = {}
        for key, run in (("vae", vae), ("ae", ae)):
            q = generation_quality(run, n=1000)
            numbers["quality"][key] = {k: v for k, v in q.items() if k != "feature_net"}
            lines.append(f"sample quality ({key}): Fréchet distance {q['fd_generated']:.2f} (real vs real "
                         f"{q['fd_train_vs_held_out']:.2f}), sharpness {q['sharpness_ratio_generated']:.2f}× real")
    demo.result["generation"] = numbers
    return lines
