"""Figures of ``aelab.generate``'s and ``aelab.codenoise``'s results: sample grids, augmentations, the same
noise through two models.

Each takes a result (``Samples``, ``Augmented``, ``compare_noise``'s numbers), never a Run or a model.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from aelab.codenoise import Augmented
from aelab.figures.base import image_grid
from aelab.generate import Samples


def samples_figure(samples: Samples, path: str | Path, name: str = "") -> Path:
    """A grid of the samples, titled with what they were drawn from (``name``: the run's, for the title)."""
    n = len(samples.images)
    root = math.ceil(math.sqrt(n))
    cols = next((c for c in range(root, 2 * root + 1) if n % c == 0), root) if n > 3 else n
    rows = [list(samples.images[i:i + cols]) for i in range(0, n, cols)]
    temp = f", temperature {samples.temperature:g}" if samples.temperature != 1 else ""
    head = f"{name}: " if name else ""
    text = f"{head}{n} samples from {samples.prior.describe()} (seed {samples.seed}{temp})"
    image_grid(rows, path, title=textwrap.fill(text, max(40, int(cols * 0.9 * 13))), cell=0.9)
    return Path(path)


def noise_text(aug: Augmented) -> str:
    """How the variants were made, in a few words."""
    if aug.mode == "posterior":
        return "codes drawn from the VAE posterior N(mean, var)"
    return f"code + σ·ε, σ = {aug.sigma:g}"


def augment_figure(aug: Augmented, path: str | Path, title: str = "", max_rows: int = 24) -> Path:
    """Each original (first column) beside its variants, one row per source image."""
    n, v = len(aug.originals), aug.variants
    shown = min(n, max_rows)
    rows = [[aug.originals[i], *aug.images[i * v:(i + 1) * v]] for i in range(shown)]
    ids = aug.source_ids[::v]
    more = f" (first {shown} of {n} images)" if shown < n else ""
    head = title or "augmentation"
    image_grid(rows, path, row_labels=[f"id {i}" for i in ids[:shown]],
               col_labels=["original", *(f"variant {j + 1}" for j in range(v))],
               title=f"{head}: {noise_text(aug)}, seed {aug.seed}{more}", cell=1.0)
    return Path(path)


def _spread_text(model: dict[str, Any], sigma: float, mode: str, name: str) -> str:
    """How big the noise is for this model: σ, and σ in units of the model's own code spread."""
    if mode == "posterior":
        return f"{name}: posterior mean + std·ε (its own spread)"
    rel = model.get("sigma_in_code_std")
    spread = f" = {rel:.2f} × its code std {model['code_std']:.2f}" if rel is not None else ""
    return f"{name}: code + σ·ε, σ = {sigma:g}{spread}"


def _scores(model: dict[str, Any], name: str) -> str:
    recon = f"reconstruction {model['recon_psnr']:.2f} dB; " if "recon_psnr" in model else ""
    return (f"{name}: {recon}variants {model['psnr']:.2f} dB, diversity {model['diversity']:.4f}")


def same_noise_figure(aug_a: Augmented, aug_b: Augmented, numbers: dict[str, Any], path: str | Path,
                      max_rows: int = 24) -> Path:
    """One row per image: the original, then per model its un-noised reconstruction (when ``compare_noise``
    kept it) and its variants. The title gives each model's σ in units of its own code spread, and the PSNR
    of reconstructions and variants against the original with the variants' diversity (mean |pixel
    difference| between two variants of one image, [0, 1] pixels)."""
    a, b = numbers["a"], numbers["b"]
    n, v = len(aug_a.originals), aug_a.variants
    shown = min(n, max_rows)
    recon = aug_a.recons is not None and aug_b.recons is not None

    def side(aug: Augmented, i: int) -> list[Any]:
        return ([aug.recons[i]] if recon else []) + list(aug.images[i * v:(i + 1) * v])

    rows = [[aug_a.originals[i], *side(aug_a, i), *side(aug_b, i)] for i in range(shown)]
    ka, kb, seed, sigma = a["code_size"], b["code_size"], numbers["seed"], numbers["sigma"]
    title = (f"Same noise ε (seed {seed}) through A = {a['name']} ({a['family']}, {ka}-element code) and "
             f"B = {b['name']} ({b['family']}, {kb}-element code)\n"
             f"{_spread_text(a, sigma, aug_a.mode, 'A')};  {_spread_text(b, sigma, aug_b.mode, 'B')}\n"
             f"PSNR against the original: {_scores(a, 'A')};  {_scores(b, 'B')} "
             f"(diversity: mean |pixel difference| between two variants of an image, [0, 1] pixels)\n"
             f"ε drawn per element from one stream per image: A uses its first {ka} elements, B its first {kb}, "
             f"the first {min(ka, kb)} are shared"
             + (f"\n(first {shown} of {n} images shown; the numbers cover all)" if shown < n else ""))
    cols = 1 + 2 * (v + recon)
    width = max(60, cols * 14)  # characters that fit above the grid
    title = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    ids = aug_a.source_ids[::v]
    heads = [*(["A: no noise"] if recon else []), *(f"A{j + 1}" for j in range(v)),
             *(["B: no noise"] if recon else []), *(f"B{j + 1}" for j in range(v))]
    image_grid(rows, path, row_labels=[f"id {i}" for i in ids[:shown]], col_labels=["original", *heads],
               title=title, cell=1.0)
    return Path(path)
