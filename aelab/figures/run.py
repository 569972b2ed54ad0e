"""Run-level figures: reconstructions beside their originals, drawn from arrays (no model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aelab.figures.base import image_grid


def reconstruction_figure(originals: np.ndarray, reconstructions: np.ndarray, path: str | Path, *,
                          ids: Sequence[int] | None = None, psnr: Sequence[float] | None = None,
                          ssim: Sequence[float] | None = None, title: str | None = None) -> Path:
    """Originals (uint8 N×H×W×C, as the model sees them) above their reconstructions, ten per row pair;
    the title carries the mean PSNR/SSIM when given, so the figure reads on its own."""
    n = len(originals)
    if len(reconstructions) != n:
        raise ValueError(f"{n} originals but {len(reconstructions)} reconstructions")
    ids = list(range(n)) if ids is None else list(ids)
    per_row = min(n, 10)
    grid, row_labels = [], []
    for start in range(0, n, per_row):
        grid += [list(originals[start:start + per_row]), list(reconstructions[start:start + per_row])]
        row_labels += ["original", "recon"]
    scores = ""
    if psnr is not None and ssim is not None and n:
        scores = f" (mean PSNR {float(np.mean(psnr)):.2f} dB, SSIM {float(np.mean(ssim)):.3f})"
    return image_grid(grid, path, row_labels=row_labels,
                      col_labels=[f"id {i}" for i in ids[:per_row]] if n <= per_row else None,
                      title=(title or "reconstructions") + scores)
