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


@pytest.mark.slow(reason="draws the sweep figures (~0.7 s)")
def test_sweep_figures_from_curves_and_rows(tmp_path):
    from aelab.figures.sweep import latent_figure, losses_figure

    steps = np.arange(1, 41)
    curves = [("fcn", steps, 1.0 / steps), ("vae, epochs=2", steps[:20], 2.0 / steps[:20]), ("empty", [], [])]
    assert losses_figure(curves, tmp_path / "l.png", title="t").read_bytes()[:8] == PNG
    rows = [{"latent_size": z, "compression": 768 / z, "val_psnr": 10 + z / 8, "val_ssim": z / 1000}
            for z in (2, 8, 32)]
    assert latent_figure({"fcn, vector code": rows}, tmp_path / "z.png").read_bytes()[:8] == PNG


def _capture(monkeypatch):
    """Keep the figure a drawing function saves (``save`` closes it) so a test can look inside."""
    import aelab.figures.base as base
    import aelab.figures.latent as latent

    kept = []
    real = base.save

    def keep(fig, path, dpi=120):
        fig.canvas.draw()
        fig.renderer = fig.canvas.get_renderer()  # kept: closing the figure swaps its canvas
        kept.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(base, "save", keep)
    monkeypatch.setattr(latent, "save", keep)  # imported by name there
    return kept


def _edit_result(h, w, changes):
    from aelab.latent import EditedCode, EditResult

    img = np.full((h, w, 3), 128, np.uint8)
    edits = tuple(EditedCode(f"{i}+=1.5", [i], np.zeros(4, np.float32), img, c, 20.0, np.full((h, w), c, np.float32))
                  for i, c in enumerate(changes))
    return EditResult(img, np.zeros(4, np.float32), img, edits)


def test_edit_maps_share_one_colour_scale():
    from aelab.figures.latent import _colour_map, diff_scale, edit_cells

    result = _edit_result(6, 6, [0.05, 0.2, 0.1])
    cells, vmax = edit_cells(result)
    assert vmax == diff_scale(result) == np.float32(0.2)
    # a map's colour says how large its change is, whatever row it is in: 0.05 is a quarter of the scale
    np.testing.assert_array_equal(cells[0, 3], _colour_map(np.full((6, 6), 0.05), 0.2))
    np.testing.assert_array_equal(cells[1, 3], _colour_map(np.full((6, 6), 1.0), 1.0))
    assert len({cells[i, 3, 0, 0].tobytes() for i in range(3)}) == 3


def test_edit_figure_labels_do_not_overlap_on_small_images(tmp_path, monkeypatch):
    from aelab.figures.latent import edit_figure

    kept = _capture(monkeypatch)
    result = _edit_result(16, 16, [0.05, 0.2])
    edit_figure(result, tmp_path / "e.png", "title")
    (ax,) = kept[0].axes
    renderer = kept[0].renderer
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 2 * 4 + 3
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert overlapping == []


def test_traversal_values_share_their_decimals_and_rows_name_two_factors():
    from aelab.figures.latent import factor_label, value_texts

    texts = value_texts(np.array([[-1.959964, -0.98, 0.0, 0.98, 1.959964], [-12.0, -6.0, 0.0, 6.0, 12.0]]))
    assert list(texts[0]) == ["-1.96", "-0.98", "0.00", "0.98", "1.96"]
    assert {len(t.split(".")[1]) for t in texts.ravel()} == {2}  # the whole figure: one step size decides
    assert list(value_texts(np.array([[0.0, 50.0, 100.0]]))[0]) == ["0", "50", "100"]
    row = {"element": 3, "factor": "background_tone", "r": -0.75,
           "strongest": [{"factor": "background_tone", "r": -0.75}, {"factor": "hair_colour", "r": 0.61}]}
    assert factor_label(row) == "background_tone (r=-0.75)\nhair_colour (r=+0.61)"
    assert factor_label({"factor": "hair_colour", "r": 0.5}) == "hair_colour (r=+0.50)"  # older records: one


def test_latent_sweep_figure_has_the_compression_axis_and_shading(tmp_path, monkeypatch):
    from matplotlib.axes._secondary_axes import SecondaryAxis

    from aelab.figures.sweep import latent_figure

    # HW2: 3×50×50 images (7,500 elements), a 256-element code and a 64×48×48 spatial one
    rows = [{"latent_size": z, "compression": round(7500 / z, 3), "val_psnr": p, "val_ssim": s}
            for z, p, s in ((256, 22.0, 0.7), (4096, 27.0, 0.85), (147456, 35.0, 0.97))]
    kept = _capture(monkeypatch)
    latent_figure({"conv": rows}, tmp_path / "z.png", input_size=7500)
    axes = kept[0].axes
    tops = [c for ax in axes for c in ax.get_children() if isinstance(c, SecondaryAxis)]
    assert len(tops) == 2 and "compression ratio" in tops[0].get_xlabel()
    assert [t.get_text() for t in tops[0].get_xticklabels()] == ["29.3×", "1.83×", "0.0509×"]
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert texts.count("code larger than the image") == 2
    kept.clear()
    latent_figure({"conv": rows}, tmp_path / "n.png")  # runs on inputs of different sizes: no ratio to draw
    assert not [c for ax in kept[0].axes for c in ax.get_children() if isinstance(c, SecondaryAxis)]


def test_moving_average_and_log_scale_shared_by_the_curves():
    from aelab.figures.base import log_scale_if_wide, moving_average, plt

    y = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    np.testing.assert_allclose(moving_average(y, 2), [2.5, 3.0, 5.0, 6.5])
    np.testing.assert_allclose(moving_average(y, 3), [7 / 3, 14 / 3, 5.0])
    np.testing.assert_array_equal(moving_average(y, 1), y)
    np.testing.assert_array_equal(moving_average(y[:2], 3), y[:2])  # fewer values than the window: as they are
    for curves, scale in (([np.array([1.0, 2.0]), np.array([30.0])], "log"),  # 30× across two curves
                          ([np.array([1.0, 19.0])], "linear"), ([np.array([0.0, 50.0])], "linear"), ([], "linear")):
        fig, ax = plt.subplots()
        log_scale_if_wide(ax, curves)
        assert ax.get_yscale() == scale
        plt.close(fig)
