"""Figures drawn from a Run: reconstructions side by side with their originals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aelab.data.imageset import ImageSet
from aelab.figures.base import image_grid
from aelab.metrics import reconstruction_metrics
from aelab.run import Run


def reconstruction_figure(run: Run, images: ImageSet, path: str | Path, title: str | None = None) -> dict[str, Any]:
    """Originals (after the run's preprocessing) above reconstructions, titled with PSNR/SSIM."""
    x = run.to_model(images)
    with torch.inference_mode():
        recon = run.model.decode(run.model.encode(x.to(run.device))).float().cpu()
    per = reconstruction_metrics(run.preprocess.to_unit(recon), run.preprocess.to_unit(x))
    originals, recons = run.preprocess.inverse(x), run.preprocess.inverse(recon)
    ids = images.ids.tolist()
    labels = [f"id {i}" for i in ids]
    rows = [list(originals), list(recons)]
    n = len(ids)
    per_row = min(n, 10)
    grid, row_labels = [], []
    for start in range(0, n, per_row):
        grid += [rows[0][start:start + per_row], rows[1][start:start + per_row]]
        row_labels += ["original", "recon"]
    image_grid(grid, path, row_labels=row_labels, col_labels=labels[:per_row] if n <= per_row else None,
               title=title or f"{run.name}: reconstructions (mean PSNR {float(per['psnr'].mean()):.2f} dB, "
                              f"SSIM {float(per['ssim'].mean()):.3f})")
    return {"figure": str(path), "ids": ids, "psnr": per["psnr"].tolist(), "ssim": per["ssim"].tolist(),
            "mse": per["mse"].tolist(), "mean_psnr": float(np.mean(per["psnr"].numpy()))}
