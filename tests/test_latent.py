"""Latent edits, traversal, factor correlations and interpolation: the edit language, the numbers
against independent computations, a ranking whose answer is known by construction, and the
commands end to end on tiny runs."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import aelab_each, one_line_exit_2
from PIL import Image
from typer.testing import CliRunner

from aelab.cli.common import app
from aelab.data.files import read_image_file
from aelab.edits import apply_edits, edit_command, parse_edit
from aelab.errors import AelabError
from aelab.figures.latent import edit_figure, interpolation_figure, traversal_figure
from aelab.latent import (
    EditedCode,
    EditResult,
    InterpolationResult,
    TraversalResult,
    data_ranges,
    edit,
    element_effects,
    factor_table,
    interpolate,
    top_elements,
    traverse,
)
from aelab.run import load_run
from aelab.train import train

SOURCE = "builtin:faces?n=160&size=16"


def _cfg(name: str, model: dict, epochs: int = 1) -> dict:
    return {"name": name, "seed": 0, "data": {"source": SOURCE, "val_fraction": 0.25, "range": [-1, 1]},
            "model": model, "train": {"epochs": epochs, "batch_size": 32, "lr": 0.003}}


@pytest.fixture(scope="session")
def fcn(trained):
    return trained(_cfg("lat-fcn", {"type": "fcn", "hidden": [64, 16], "latent_dim": 6}, epochs=2))


@pytest.fixture(scope="session")
def vae(trained):
    return trained(_cfg("lat-vae", {"type": "vae", "backbone": "fcn", "hidden": [32], "latent_dim": 5}))


@pytest.fixture(scope="session")
def spatial(trained):
    """A conv AE whose code is a feature map (C×H×W), addressed by flat index."""
    return trained(_cfg("lat-spatial", {"type": "conv", "channels": [4, 6], "latent_dim": None}))


@pytest.fixture(scope="session")
def linear(tmp_path_factory):
    """fcn with no hidden layer: decoder = tanh(W z + b). Its weights are set below so that
    element k moves the output by exactly tanh(|c_k|)/2 per pixel: the ranking is known."""
    cfg = _cfg("lat-linear", {"type": "fcn", "hidden": [], "latent_dim": 6})
    path = tmp_path_factory.mktemp("lat") / "linear"
    train(cfg, out=path, progress=False)
    run = load_run(path)
    lin = run.model.decoder[0]
    assert isinstance(lin, torch.nn.Linear) and isinstance(run.model.decoder[1], torch.nn.Tanh)
    signs = torch.from_numpy(np.random.default_rng(1).choice([-1.0, 1.0], lin.out_features).astype(np.float32))
    with torch.no_grad():
        lin.weight.copy_(signs[:, None] * torch.tensor(LINEAR_SCALES)[None, :])
        lin.bias.zero_()
    return run


LINEAR_SCALES = [0.1, 0.5, 0.02, 0.3, 0.0, 0.2]


def _img(run, i: int = 0) -> np.ndarray:
    return run.splits.full.by_ids([i]).batch()


# -- the edit language --------------------------------------------------------------

@pytest.mark.parametrize(("text", "size", "expect"), [
    ("0*=2", 10, [("*=", 2.0, [0])]),
    ("2+=5", 10, [("+=", 5.0, [2])]),
    ("3=2,1000=8", 2000, [("=", 2.0, [3]), ("=", 8.0, [1000])]),
    ("all+=0.5", 4, [("+=", 0.5, [0, 1, 2, 3])]),
    ("-1+=20", 10, [("+=", 20.0, [9])]),
    ("5-=1.5", 10, [("-=", 1.5, [5])]),
    ("10:20*=0", 30, [("*=", 0.0, list(range(10, 20)))]),
    ("4/=2", 10, [("/=", 2.0, [4])]),
    (" 1 += -3e-1 ", 10, [("+=", -0.3, [1])]),
    ("-3:*=2", 10, [("*=", 2.0, [7, 8, 9])]),
    (":2=1", 10, [("=", 1.0, [0, 1])]),
    ("0+=.5,0*=2", 10, [("+=", 0.5, [0]), ("*=", 2.0, [0])]),
])
def test_parse_every_form(text, size, expect):
    e = parse_edit(text, size)
    assert e.text == text.strip() and e.size == size
    assert [(o.op, o.value, o.indices.tolist()) for o in e.ops] == expect


@pytest.mark.parametrize("text", ["", "0*2", "x+=1", "0**=2", "0+=", "1+=a", "3=2,,4=1", "0/=0", "4:2*=0",
                                  "5+=1", "-6+=1", "0:9*=0", "1+=nan", "all", "0=1e999"])
def test_parse_errors_name_the_edit_and_the_code_size(text):
    with pytest.raises(AelabError) as err:
        parse_edit(text, 5)
    msg = str(err.value)
    assert "\n" not in msg
    assert "5 elements" in msg or "division by zero" in msg
    if text:
        assert repr(text).strip("'") in msg or text in msg


def test_apply_edits_to_vector_codes():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(3, 10)).astype(np.float32)
    before = codes.copy()
    got = apply_edits(codes, "0*=2,0+=1,-1=8,2:4-=1.5,all/=2")
    want = before.astype(np.float64)
    want[:, 0] = want[:, 0] * 2 + 1
    want[:, 9] = 8
    want[:, 2:4] -= 1.5
    want /= 2
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(codes, before)  # the input is not modified
    assert got.dtype == np.float32
    np.testing.assert_array_equal(apply_edits(codes[0], "1=7")[1], 7)  # one code without a batch axis


def test_apply_edits_to_spatial_codes_uses_flat_indices():
    codes = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    got = apply_edits(codes, "-1+=20,10:20*=0,7=-1")
    want = codes.reshape(2, -1).copy()
    want[:, -1] += 20
    want[:, 10:20] = 0
    want[:, 7] = -1
    assert got.shape == codes.shape
    np.testing.assert_array_equal(got.reshape(2, -1), want)
    assert got[1, 2, 3, 4] == codes[1, 2, 3, 4] + 20  # the last element of every code
    with pytest.raises(AelabError, match="60 elements"):
        apply_edits(codes, "60=1")


# -- edits on a run -----------------------------------------------------------------------

def test_zero_edit_returns_the_plain_reconstruction_exactly(fcn):
    img = _img(fcn)
    res = edit(fcn, img, ["0+=0", "all*=1", "3-=0"])
    recon = fcn.reconstruct(img)[0]
    np.testing.assert_array_equal(res.recon, recon)
    for e in res.edited:
        np.testing.assert_array_equal(e.image, recon)
        assert e.mean_abs_change == 0 and e.psnr == float("inf")
    assert all(e["psnr"] is None for e in res.to_dict()["edits"])  # strict JSON: no Infinity


def test_edit_numbers_match_an_independent_computation(fcn):
    img = _img(fcn, 3)
    res = edit(fcn, img[0], ["0*=2", "2+=5", "3=2,-1=8"])  # an H×W×C image is accepted too
    code = fcn.encode(img)[0]
    assert isinstance(res, EditResult) and not res.sample
    np.testing.assert_array_equal(res.code, code)
    for e, text in zip(res.edited, ["0*=2", "2+=5", "3=2,-1=8"], strict=True):
        assert e.edit == text
        np.testing.assert_array_equal(e.code, apply_edits(code[None], text)[0])
        decoded = fcn.decode(e.code[None])[0]
        assert np.abs(decoded.astype(int) - e.image.astype(int)).max() <= 1
        d = e.image.astype(np.float64) / 255 - res.recon.astype(np.float64) / 255
        assert e.mean_abs_change == pytest.approx(np.abs(d).mean(), rel=1e-5)
        assert e.psnr == pytest.approx(-10 * np.log10(np.square(d).mean()), rel=1e-5)
        np.testing.assert_allclose(e.diff, np.abs(d).mean(-1), atol=1e-6)
    assert res.edited[0].mean_abs_change > 0
    assert res.edited[2].elements == [3, 5]
    numbers = res.to_dict()
    assert numbers["code"] == code.reshape(-1).tolist() and numbers["sample"] is False
    assert [x["edit"] for x in numbers["edits"]] == ["0*=2", "2+=5", "3=2,-1=8"]
    assert numbers["edits"][1] == {"edit": "2+=5", "elements": [2], "code": res.edited[1].code.tolist(),
                                   "mean_abs_change": res.edited[1].mean_abs_change, "psnr": res.edited[1].psnr}
    json.dumps(numbers, allow_nan=False)


def test_vae_edit_starts_from_the_mean_and_sample_is_seeded(vae, fcn):
    img = _img(vae, 1)
    mean, _ = vae.encode_stats(img)
    a, b = edit(vae, img, ["0*=2"]), edit(vae, img, ["0*=2"])
    np.testing.assert_array_equal(a.code, mean[0])
    np.testing.assert_array_equal(a.edited[0].image, b.edited[0].image)
    s1, s2, s3 = (edit(vae, img, ["0*=2"], sample=True, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(s1.code, s2.code)
    assert s1.sample and s1.to_dict()["sample"] is True
    assert not np.array_equal(s1.code, mean[0]) and not np.array_equal(s1.code, s3.code)
    with pytest.raises(AelabError, match="variational"):
        edit(fcn, _img(fcn), ["0*=2"], sample=True)


def test_edit_on_a_spatial_code(spatial):
    assert len(spatial.latent_shape) == 3
    img = _img(spatial)
    res = edit(spatial, img, ["-1+=20", "0:10*=0"])
    code = res.code
    assert code.shape == spatial.latent_shape
    changed = res.edited[0].code != code
    assert changed.sum() == 1 and changed[-1, -1, -1]
    assert res.edited[0].code[-1, -1, -1] == pytest.approx(code[-1, -1, -1] + 20)
    assert res.edited[0].mean_abs_change > 0
    assert len(res.to_dict()["code"]) == spatial.latent_size


def test_bad_images_are_named(fcn):
    img = _img(fcn)
    with pytest.raises(AelabError, match="one image"):
        edit(fcn, np.concatenate([img, img]), ["0*=2"])
    with pytest.raises(AelabError, match="expects"):
        edit(fcn, np.zeros((1, 20, 20, 3), np.uint8), ["0*=2"])
    with pytest.raises(AelabError, match="no edit"):
        edit(fcn, img, [])


def test_image_file_is_centre_cropped_then_resized_to_the_run(fcn, tmp_path, monkeypatch):
    """The one reader's policy: a wide photo loses its sides (not stretched), then is resized."""
    h, w, c = fcn.image_shape
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40] = (255, 0, 0)
    wide[:, 40:80] = (0, 0, 255)  # the centre square
    wide[:, 80:] = (0, 255, 0)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    arr = read_image_file(path, fcn.image_shape)
    assert arr.shape == (h, w, c) and arr.dtype == np.uint8
    assert (arr[..., 2] >= 250).all() and (arr[..., :2] <= 5).all()  # only the blue centre is left
    assert read_image_file(path.read_bytes(), fcn.image_shape).tobytes() == arr.tobytes()  # bytes or path alike
    assert len(edit(fcn, arr, ["0*=2"]).edited) == 1
    with pytest.raises(AelabError, match="not found") as err:
        read_image_file(tmp_path / "none.png", fcn.image_shape)
    assert err.value.status == 404
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(AelabError, match="not a readable image") as err:
        read_image_file(tmp_path / "bad.png", fcn.image_shape)
    assert err.value.status == 415
    monkeypatch.setattr("aelab.data.files.MAX_PIXELS", 1000)  # the bomb check guards the CLI's path too
    with pytest.raises(AelabError, match="120×40 pixels; at most 1,000") as err:
        read_image_file(path, fcn.image_shape)
    assert err.value.status == 413


def test_cli_image_and_explorer_upload_give_the_same_code(fcn, tmp_path):
    """One reader for both doors: the same non-square PNG encodes to the same code."""
    from fastapi.testclient import TestClient

    from aelab.serve.app import create_app

    rng = np.random.default_rng(3)
    photo = np.asarray(Image.fromarray(_img(fcn, 4)[0]).resize((37, 23), Image.Resampling.BILINEAR))
    photo = np.clip(photo.astype(int) + rng.integers(-20, 20, photo.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    by_cli = json.loads(_cli("edit", str(fcn.path), "--image", str(path), "--edit", "all+=0",
                             "--out", str(tmp_path / "p.png"), "--json"))["code"]
    with TestClient(create_app([fcn.path])) as client:
        r = client.post("/api/encode", files={"image": ("photo.png", path.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["code"] == by_cli
    stretched = np.asarray(Image.fromarray(photo).resize(fcn.image_shape[1::-1], Image.Resampling.BILINEAR))
    assert fcn.encode(stretched[None]).reshape(-1).tolist() != by_cli  # the policy is not a stretch


# -- ranges, effects, ranking ----------------------------------------------------------------

def test_data_ranges_against_the_codes(fcn, vae, monkeypatch):
    codes = fcn.encode(fcn.splits.val).astype(np.float64)
    lo, hi = data_ranges(fcn, kind="data")
    np.testing.assert_allclose(lo, codes.mean(0) - 2 * codes.std(0, ddof=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hi, codes.mean(0) + 2 * codes.std(0, ddof=1), rtol=1e-4, atol=1e-5)
    lo, hi = data_ranges(fcn, kind="minmax")
    np.testing.assert_allclose(lo, codes.min(0), rtol=1e-6)
    np.testing.assert_allclose(hi, codes.max(0), rtol=1e-6)
    lo, hi = data_ranges(fcn, kind="-3:2.5")
    assert lo.tolist() == [-3] * 6 and hi.tolist() == [2.5] * 6
    lo, hi = data_ranges(vae, kind="prior")
    np.testing.assert_allclose(hi, 1.959964, atol=1e-5)
    np.testing.assert_allclose(lo, -1.959964, atol=1e-5)
    # cached on the Run: a second call encodes nothing
    monkeypatch.setattr(fcn, "encode", lambda *a, **k: pytest.fail("encoded again"))
    data_ranges(fcn, kind="data")
    for bad, match in (("prior", "needs a VAE"), ("3:-3", "empty"), ("wide", "data, minmax")):
        with pytest.raises(AelabError, match=match):
            data_ranges(fcn, kind=bad)


def test_top_ranking_known_by_construction(linear):
    zero = np.zeros(linear.latent_size, np.float32)
    effects = element_effects(linear, zero, (-1.0, 1.0))
    # tanh output in [-1, 1] is shown in [0, 1]: a pixel moves by tanh(|c|)/2 at either end
    np.testing.assert_allclose(effects, np.tanh(np.abs(LINEAR_SCALES)) / 2, atol=2e-3)
    assert top_elements(linear, zero, 6, ranges=(-1.0, 1.0)) == [1, 3, 5, 0, 2, 4]
    assert top_elements(linear, zero, 2, ranges=(-1.0, 1.0)) == [1, 3]
    res = traverse(linear, _img(linear), top=3, range=(-1.0, 1.0), steps=5)
    assert res.dims == [1, 3, 5] and res.ranked


def test_traverse_grid_is_the_decoded_sweep(fcn):
    img = _img(fcn, 2)
    res = traverse(fcn, img, dims=[4, 0], range="-2:2", steps=5)
    h, w, c = fcn.image_shape
    assert isinstance(res, TraversalResult) and res.factors is None
    assert res.images.shape == (2, 5, h, w, c) and res.dims == [4, 0] and not res.ranked
    np.testing.assert_allclose(res.values, [np.linspace(-2, 2, 5)] * 2, atol=1e-6)
    code = fcn.encode(img)[0]
    codes = np.repeat(code[None], 10, 0)
    codes[:5, 4] = np.linspace(-2, 2, 5)
    codes[5:, 0] = np.linspace(-2, 2, 5)
    want = fcn.decode(np.concatenate([code[None], codes]))[1:]
    assert np.abs(want.astype(int) - res.images.reshape(want.shape).astype(int)).max() <= 1
    assert res.position.tolist() == np.abs(res.values - code[[4, 0], None]).argmin(1).tolist()
    numbers = res.to_dict()
    assert numbers["dims"] == [4, 0] and numbers["range"] == "-2:2" and numbers["steps"] == 5
    assert [e["element"] for e in numbers["elements"]] == [4, 0] and "factors" not in numbers
    assert numbers["elements"][0]["code_value"] == float(code[4]) and numbers["elements"][1]["low"] == -2
    with pytest.raises(AelabError, match="outside the code of 6"):
        traverse(fcn, img, dims=[6])
    with pytest.raises(AelabError, match="steps"):
        traverse(fcn, img, steps=1)


def test_factor_table_against_numpy(fcn):
    data = fcn.splits.val
    table = factor_table(fcn, data)
    codes = fcn.encode(data)
    factors = {k: v for k, v in data.get_factors().items() if k != "anomaly_kind"}
    assert len(table) == fcn.latent_size
    for row in table:
        rs = {k: np.corrcoef(codes[:, row["element"]], v)[0, 1] for k, v in factors.items()}
        best = max(rs, key=lambda k: abs(rs[k]))
        assert row["factor"] == best
        assert row["r"] == pytest.approx(rs[best], abs=1e-6)
    with pytest.raises(AelabError, match="no generating factors"):
        factor_table(fcn, replace(data, factors=None))


# -- interpolation --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_ends_are_the_reconstructions(fcn, mode):
    a, b = _img(fcn, 3), _img(fcn, 17)
    res = interpolate(fcn, a, b, steps=7, mode=mode)
    path = res.images
    assert isinstance(res, InterpolationResult) and res.mode == mode and res.steps == 7
    assert path.shape == (7, *fcn.image_shape) and path.dtype == np.uint8
    np.testing.assert_array_equal(path[0], fcn.reconstruct(a)[0])
    np.testing.assert_array_equal(path[-1], fcn.reconstruct(b)[0])
    za, zb = fcn.encode(np.concatenate([a, b])).reshape(2, -1)
    np.testing.assert_array_equal(res.codes[0], za)
    np.testing.assert_array_equal(res.codes[-1], zb)
    unit = path.astype(np.float64) / 255
    np.testing.assert_allclose(res.step_change, np.abs(unit[1:] - unit[:-1]).mean(axis=(1, 2, 3)), rtol=1e-5)
    assert res.to_dict() == {"mode": mode, "steps": 7, "t": res.t.tolist(), "step_change": res.step_change.tolist()}


def test_linear_midpoint_and_errors(fcn):
    a, b = _img(fcn, 3), _img(fcn, 17)
    za, zb = fcn.encode(np.concatenate([a, b]))
    mid = interpolate(fcn, a, b, steps=3).images[1]
    assert np.abs(mid.astype(int) - fcn.decode(((za + zb) / 2)[None])[0].astype(int)).max() <= 1
    with pytest.raises(AelabError, match="linear or slerp"):
        interpolate(fcn, a, b, mode="cubic")
    with pytest.raises(AelabError, match="steps"):
        interpolate(fcn, a, b, steps=1)


# -- figures and the commands -----------------------------------------------------------------

def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_figures_are_written(fcn, vae, tmp_path):
    img = _img(fcn)
    path = edit_figure(edit(fcn, img, ["0*=2", "2+=5"]), tmp_path / "e.png", "edits")
    assert path == tmp_path / "e.png" and _png(path)[1] > 200
    swept = traverse(vae, _img(vae), top=3, range="prior", steps=5, factors=True)
    assert [f["element"] for f in swept.factors] == swept.dims
    assert [f["element"] for f in swept.to_dict()["factors"]] == swept.dims
    traversal_figure(swept, tmp_path / "t.png")
    assert _png(tmp_path / "t.png")[0] > 300
    res = interpolate(fcn, _img(fcn, 1), _img(fcn, 2), steps=4, mode="slerp")
    assert res.steps == 4 and len(res.step_change) == 3
    interpolation_figure(res, tmp_path / "i.png")
    assert _png(tmp_path / "i.png")[0] > 300


def test_figures_draw_results_built_without_a_model(tmp_path):
    """The figures take results, never a Run: here results are made by hand."""
    rng = np.random.default_rng(0)

    def images(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, (*shape, 12, 10, 1), dtype=np.uint8)

    original, recon = images(2)
    edited = tuple(EditedCode(text, [0], np.zeros(4, np.float32), images(1)[0], 0.1, psnr,
                              rng.random((12, 10)).astype(np.float32))
                   for text, psnr in (("0*=2", 20.0), ("all+=0", float("inf"))))
    result = EditResult(original=original, code=np.zeros(4, np.float32), recon=recon, edited=edited)
    assert edit_figure(result, tmp_path / "e.svg").stat().st_size > 0
    assert "4-element code" in (tmp_path / "e.svg").read_text()  # the default title, from the result
    values = np.tile(np.linspace(-1, 1, 3, dtype=np.float32), (2, 1))
    swept = TraversalResult(original=original, recon=recon, code=np.zeros(4, np.float32), dims=[2, 0],
                            images=images(2, 3), values=values, low=values[:, 0], high=values[:, -1],
                            effect=np.array([0.2, 0.1]), position=np.array([1, 1]), range="-1:1", steps=3,
                            ranked=False, factors=[{"element": 2, "factor": "tone", "r": 0.9},
                                                   {"element": 0, "factor": "size", "r": -0.5}])
    assert _png(traversal_figure(swept, tmp_path / "t.png", "by hand"))[0] > 100
    path = InterpolationResult(images=images(4), codes=np.zeros((4, 4), np.float32),
                               t=np.linspace(0, 1, 4, dtype=np.float32), originals=(original, recon), mode="linear",
                               step_change=np.full(3, 0.1))
    assert _png(interpolation_figure(path, tmp_path / "i.png"))[0] > 100
    import aelab.figures.latent as module

    assert "aelab.run" not in Path(module.__file__).read_text()


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_edit_command_end_to_end(fcn, tmp_path):
    out = tmp_path / "edit.png"
    got = json.loads(_cli("edit", str(fcn.path), "--id", "5", "--edit", "0*=2", "--edit", "2+=5,-1=3",
                          "--out", str(out), "--json"))
    code = fcn.encode(_img(fcn, 5))[0]
    assert got["image"] == "id 5" and got["figure"] == str(out) and out.exists()
    np.testing.assert_allclose(got["code"], code, rtol=1e-6)
    assert [e["edit"] for e in got["edits"]] == ["0*=2", "2+=5,-1=3"]
    np.testing.assert_allclose(got["edits"][1]["code"], apply_edits(code, "2+=5,-1=3"), rtol=1e-6)
    assert all(e["mean_abs_change"] > 0 and e["psnr"] > 0 for e in got["edits"])
    # the web page's "copy as command" runs as it stands
    line = edit_command(fcn.path, 5, ["0*=2", "3=2,5=8"], out=tmp_path / "copy.png")
    assert line.startswith("aelab edit ")
    _cli(*shlex.split(line)[1:])
    assert (tmp_path / "copy.png").exists()
    unchanged = json.loads(_cli(*shlex.split(edit_command(fcn.path, 5, [], out=tmp_path / "none.png"))[1:], "--json"))
    assert unchanged["edits"][0]["edit"] == "all+=0" and unchanged["edits"][0]["mean_abs_change"] == 0


def test_edit_command_with_an_image_file(fcn, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(_img(fcn, 9)[0]).resize((48, 48)).save(path)
    got = json.loads(_cli("edit", str(fcn.path), "--image", str(path), "--edit", "all+=0.5",
                          "--out", str(tmp_path / "f.png"), "--json"))
    assert got["image"] == str(path) and len(got["edits"]) == 1
    want = fcn.encode(read_image_file(path, fcn.image_shape)[None]).reshape(-1)
    np.testing.assert_array_equal(np.float32(got["code"]), want)


def test_traverse_command_end_to_end(fcn, tmp_path):
    got = json.loads(_cli("traverse", str(fcn.path), "--id", "1", "--top", "3", "--factors", "--range=-2:2",
                          "--steps", "5", "--out", str(tmp_path / "t.png"), "--json"))
    assert len(got["dims"]) == 3 and got["ranked_by_effect"] and got["range"] == "-2:2"
    changes = [e["output_change"] for e in got["elements"]]
    assert changes == sorted(changes, reverse=True)
    assert [f["element"] for f in got["factors"]] == got["dims"]
    assert all(f["factor"] and -1 <= f["r"] <= 1 for f in got["factors"])
    out = _cli("traverse", str(fcn.path), "--dims", "0,2", "--range", "-3:3", "--out", str(tmp_path / "d.png"))
    assert "wrote" in out and (tmp_path / "d.png").exists()


def test_interpolate_command_end_to_end(fcn, tmp_path):
    got = json.loads(_cli("interpolate", str(fcn.path), "--ids", "3,17", "--steps", "6", "--mode", "slerp",
                          "--out", str(tmp_path / "i.png"), "--json"))
    assert got["ids"] == [3, 17] and got["steps"] == 6 and got["t"][0] == 0 and got["t"][-1] == 1


BAD_INPUTS = [
    (["edit", "{run}", "--edit", "9*=2"], "index 9 is outside the code of 6 elements"),
    (["edit", "{run}", "--edit", "0*2"], "cannot read '0*2'"),
    (["edit", "{run}", "--id", "999", "--edit", "0*=2"], "no image with id 999"),
    (["traverse", "{run}", "--range", "prior"], "needs a VAE"),
    (["traverse", "{run}", "--dims", "0", "--top", "2"], "not both"),
    (["interpolate", "{run}", "--ids", "3"], "exactly two"),
    (["edit", "{missing}", "--edit", "0*=2"], "run folder not found"),
    (["edit", "{run}", "--image", "{missing}", "--edit", "0*=2"], "image file not found"),
]


@pytest.mark.slow(reason="8 aelab processes, two at a time")
def test_bad_input_is_one_line_and_status_2(fcn, tmp_path):
    outs = [tmp_path / f"never-{i}.png" for i in range(len(BAD_INPUTS))]
    commands = [[a.format(run=fcn.path, missing=tmp_path / "nope") for a in args] + ["--out", out]
                for (args, _), out in zip(BAD_INPUTS, outs, strict=True)]
    for res, (_, match), out in zip(aelab_each(*commands), BAD_INPUTS, outs, strict=True):
        one_line_exit_2(res, match)
        assert not out.exists()


@pytest.mark.slow(reason="draws the demo's latent figures (~0.8 s)")
def test_demo_section_writes_figures_and_strict_json(fcn, vae, tmp_path):
    from aelab.demo import Demo
    from aelab.demo.latent import SPREAD, demo_section
    from aelab.latent import code_stats

    demo = Demo(tmp_path, quick=True, progress=False, runs={"ae": fcn, "vae": vae})
    lines = demo_section(demo)
    assert len(lines) == 6 and set(demo.result["latent"]) == {"ae", "vae"}
    for run in (fcn, vae):
        for name in ("latent_edits", "latent_traversal", "latent_interpolation"):
            assert (run.figures / f"{name}.png").exists()

        def no_constants(name):
            raise AssertionError(f"{name} in latent.json")

        saved = json.loads((run.path / "latent.json").read_text(), parse_constant=no_constants)
        assert 2 <= len(saved["edit"]["edits"]) <= 4 and saved["traversal"]["factors"]
        std = code_stats(run)["std"]
        for e in saved["edit"]["edits"]:  # no edit of an element that hardly varies (a blank row)
            assert all(std[i] >= SPREAD * std.max() for i in e["elements"]), (e, std)
            assert e["mean_abs_change"] > 0
        assert all(len(f["strongest"]) == 2 for f in saved["traversal"]["factors"])
    assert demo.result["latent"]["vae"]["traversal"][0]["low"] == pytest.approx(-1.959964, abs=1e-5)


def test_demo_edits_choose_elements_that_vary():
    from aelab.demo.latent import choose_edits

    std = np.array([0.01, 3.0, 2.0, 0.5, 1.0, 0.02])
    code = np.array([0.0, 1.0, 6.0, 4.0, -0.5, 0.001])
    edits = choose_edits(code, std, top=[0, 5, 3, 4, 1])
    # element 2 is 3 of its stds from 0 (doubled), 1 has the widest spread, then the live ones of top by effect
    assert edits == ["2*=2", "1+=6", "4+=2"]
    # 0 and 5 hardly vary; 3 varies, but under SPREAD of the widest: none of them is edited
    assert not {int(e.split("=")[0].rstrip("+-*")) for e in edits} & {0, 3, 5}
    # a code near every element's mean: no doubling (it would move nothing), shifts only
    assert choose_edits(np.zeros(6), std, [4, 2]) == ["1+=6", "4+=2", "2-=4"]


def test_slerp_follows_the_great_circle_and_linear_the_chord():
    from aelab.latent import _path

    a, b = np.array([3.0, 0.0, 0.0], np.float32), np.array([0.0, 3.0, 0.0], np.float32)
    t = np.array([0.0, 0.25, 0.5, 1.0])
    slerp, linear = _path(a, b, t, "slerp"), _path(a, b, t, "linear")
    # orthogonal codes of equal norm: the slerp midpoint is (a + b)/√2 and every point keeps the norm
    np.testing.assert_allclose(slerp[2], (a + b) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(slerp[1], 3 * np.array([np.cos(np.pi / 8), np.sin(np.pi / 8), 0]), rtol=1e-6)
    np.testing.assert_allclose(linear[2], (a + b) / 2, rtol=1e-6)
    assert np.array_equal(slerp[0], a) and np.array_equal(slerp[-1], b)
