"""Figures draw from arrays and results alone: no model, no Run folder."""

from __future__ import annotations

import numpy as np

PNG = b"\x89PNG\r\n\x1a\n"


def test_reconstruction_figure_from_arrays(tmp_path):
    from aelab.figures.run import reconstruction_figure

    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    path = reconstruction_figure(originals, originals[::-1].copy(), tmp_path / "r.png", ids=list(range(100, 112)),
                                 psnr=[20.0] * 12, ssim=[0.5] * 12, title="t")
    assert path.read_bytes()[:8] == PNG


def test_architecture_diagram_from_a_description(tmp_path):
    from aelab.figures.info import diagram

    description = {"family": "fcn", "input_shape": [1, 4, 4], "latent_shape": [2], "parameters": 90, "layers": [
        {"name": "encoder.0", "type": "Linear(16→2)", "output_shape": [2], "parameters": 34, "part": "encoder"},
        {"name": "encoder.1", "type": "ReLU", "output_shape": [2], "parameters": 0, "part": "encoder"},
        {"name": "decoder.0", "type": "Linear(2→16)", "output_shape": [16], "parameters": 48, "part": "decoder"}]}
    assert diagram(description, tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")


def test_sweep_figures_from_curves_and_rows(tmp_path):
    from aelab.figures.sweep import latent_figure, losses_figure

    steps = np.arange(1, 41)
    curves = [("fcn", steps, 1.0 / steps), ("vae, epochs=2", steps[:20], 2.0 / steps[:20]), ("empty", [], [])]
    assert losses_figure(curves, tmp_path / "l.png", title="t").read_bytes()[:8] == PNG
    rows = [{"latent_size": z, "compression": 768 / z, "val_psnr": 10 + z / 8, "val_ssim": z / 1000}
            for z in (2, 8, 32)]
    assert latent_figure({"fcn, vector code": rows}, tmp_path / "z.png").read_bytes()[:8] == PNG
