"""Figures draw from arrays and results alone: no model, no Run folder."""

from __future__ import annotations

import numpy as np
import pytest

from aelab.errors import AelabError

PNG = b"\x89PNG\r\n\x1a\n"


def test_reconstruction_figure_from_arrays(tmp_path):
    from aelab.figures.run import reconstruction_figure

    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    path = reconstruction_figure(originals, originals[::-1].copy(), tmp_path / "r.png", ids=list(range(100, 112)),
                                 psnr=[20.0] * 12, ssim=[0.5] * 12, title="t")
    assert path.read_bytes()[:8] == PNG


def test_architecture_diagram_from_a_description(tmp_path):
    from PIL import Image

    from aelab.figures.info import diagram

    def node(i, kind, shape, **more):
        return {"id": i, "label": i, "kind": kind, "shape": shape, "part": i, "parameters": 0, "repeat": 1,
                "shapes": [shape], "code": False, **more}

    graph = {"nodes": [node("input", "input", [1, 4, 4]), node("a", "block", [1]), node("b", "block", [1]),
                       node("code", "concat", [2], code=True), node("kl", "loss", []),
                       node("decoder", "block", [1, 4, 4], parameters=48), node("output", "output", [1, 4, 4])],
             "edges": [["input", "a"], ["input", "b"], ["a", "code"], ["b", "code"], ["a", "kl"], ["code", "decoder"],
                       ["decoder", "output"]]}
    description = {"family": "multi_encoder", "latent_shape": [2], "parameters": 90, "graph": graph}
    assert diagram(description, tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")
    wide = Image.open(diagram(description, tmp_path / "a.png")).size
    chain = {"nodes": [graph["nodes"][i] for i in (0, 5, 6)], "edges": [["input", "decoder"], ["decoder", "output"]]}
    narrow = Image.open(diagram({**description, "graph": chain}, tmp_path / "c.png")).size
    assert narrow[0] < wide[0] <= 1600 and narrow[1] < wide[1]  # branches side by side, and more rows
    with pytest.raises(AelabError, match="no 'graph'"):
        diagram({"family": "fcn", "latent_shape": [2], "parameters": 90}, tmp_path / "old.png")


def test_sweep_figures_from_curves_and_rows(tmp_path):
    from aelab.figures.sweep import latent_figure, losses_figure

    steps = np.arange(1, 41)
    curves = [("fcn", steps, 1.0 / steps), ("vae, epochs=2", steps[:20], 2.0 / steps[:20]), ("empty", [], [])]
    assert losses_figure(curves, tmp_path / "l.png", title="t").read_bytes()[:8] == PNG
    rows = [{"latent_size": z, "compression": 768 / z, "val_psnr": 10 + z / 8, "val_ssim": z / 1000}
            for z in (2, 8, 32)]
    assert latent_figure({"fcn, vector code": rows}, tmp_path / "z.png").read_bytes()[:8] == PNG
