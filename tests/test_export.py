"""aelab export: each part against PyTorch (onnxruntime, TorchScript), self-describing weights, bad input."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import aelab_each, one_line_exit_2

import aelab
from aelab.data.sources import load_images
from aelab.errors import AelabError, RunError
from aelab.export import export, model_from_weights
from aelab.io import load_tensors, save_tensors
from aelab.run import load_run, roundtrip

ort = pytest.importorskip("onnxruntime")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"
TOL = 1e-4


def images(run, n):
    """n images of the run's stored shape: 37 and 5 differ from the two rows the graphs were traced with."""
    return load_images("builtin:faces?n=160&size=16").batch()[:n] if run.image_shape == (16, 16, 3) else \
        np.random.default_rng(0).integers(0, 256, (n, *run.image_shape), dtype=np.uint8)


def reference(run, part, x):
    """What PyTorch gives for ``part`` on uint8 images ``x``: (the part's input, its output)."""
    t = run.to_model(x)
    with torch.no_grad():
        if part == "encoder":
            return t.numpy(), run.encode(x)
        if part == "decoder":
            codes = run.encode(x)
            return codes, run.decode_tensor(codes).numpy()
        if part == "autoencoder":
            return t.numpy(), roundtrip(run.model, t).numpy()
    return x, aelab.score(run, x, "mse")


def run_onnx(path, inp):
    session = ort.InferenceSession(path)
    return session.run(None, {session.get_inputs()[0].name: inp})[0]


def run_torchscript(path, inp):
    with torch.no_grad():
        return torch.jit.load(path)(torch.from_numpy(np.ascontiguousarray(inp))).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("which", ["fcn", "conv_vae"])
def test_every_part_matches_pytorch(fmt, which, tiny_run, tiny_vae_run, tmp_path):
    run = tiny_run if which == "fcn" else tiny_vae_run
    res = export(run, tmp_path / "out", fmt)
    assert sorted(res.files) == ["autoencoder", "decoder", "encoder", "scorer"]
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert info["parts"]["scorer"]["input"]["shape"] == ["N", *run.image_shape]
    execute = run_onnx if fmt == "onnx" else run_torchscript
    for n in (37, 5):  # the batch axis is dynamic
        x = images(run, n)
        for part, path in res.files.items():
            inp, want = reference(run, part, x)
            got = execute(path, inp)
            assert got.shape == want.shape, part
            assert np.abs(got - want).max() <= TOL, (part, np.abs(got - want).max())


@pytest.mark.slow
def test_scorer_kinds(tiny_vae_run, tmp_path):
    x = images(tiny_vae_run, 11)
    for kind in ("latent", "elbo", "l1"):
        res = export(tiny_vae_run, tmp_path / kind, "onnx", "scorer", kind)
        want = aelab.score(tiny_vae_run, x, kind)
        got = run_onnx(res.files["scorer"], x)
        assert np.abs(got - want).max() <= TOL * max(1.0, np.abs(want).max()), kind


@pytest.mark.slow
def test_antialiased_resize_scorer_is_refused_as_onnx_but_traced_as_torchscript(trained, tmp_path):
    from conftest import tiny_config

    run = trained(tiny_config(data={"source": "builtin:faces?n=160&size=16", "val_fraction": 0.25,
                                    "preprocess": [{"resize": 12}]}))
    with pytest.raises(AelabError, match="antialiased resize.*--format torchscript"):
        export(run, tmp_path / "onnx", "onnx", "scorer")
    assert not (tmp_path / "onnx").exists()
    res = export(run, tmp_path / "ts", "torchscript", "scorer")
    x = images(run, 9)
    assert np.abs(run_torchscript(res.files["scorer"], x) - aelab.score(run, x, "mse")).max() <= TOL
    assert set(export(run, tmp_path / "parts", "onnx", ["encoder", "decoder"]).files) == {"encoder", "decoder"}


def test_public_names():
    assert callable(aelab.export) and aelab.export is export
    assert aelab.AutoencoderDetector.__module__ == "aelab.detector"


def test_bad_parts_formats_and_kinds(tiny_run, tmp_path):
    with pytest.raises(AelabError, match="unknown part 'scorr'.*did you mean 'scorer'"):
        export(tiny_run, tmp_path / "a", "onnx", "scorr")
    with pytest.raises(AelabError, match="unknown export format 'onx'"):
        export(tiny_run, tmp_path / "a", "onx")
    with pytest.raises(AelabError, match="combined"):
        export(tiny_run, tmp_path / "a", "onnx", "scorer", "combined")
    with pytest.raises(AelabError, match="needs a VAE"):
        export(tiny_run, tmp_path / "a", "onnx", "scorer", "elbo")
    assert not (tmp_path / "a").exists()  # refused before anything was written


def test_weights_rebuild_the_model_as_the_docs_show(tiny_vae_run):
    weights = str(tiny_vae_run.path / "model.safetensors")
    code = re.search(r"<!-- rebuild -->\n```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    scope = {"weights": weights}
    exec(code, scope)  # the documented snippet, as written
    x = tiny_vae_run.to_model(images(tiny_vae_run, 6))
    with torch.no_grad():
        want = roundtrip(tiny_vae_run.model, x)
        for model in (scope["model"], model_from_weights(weights)):
            torch.testing.assert_close(roundtrip(model, x), want)


def test_old_weights_without_metadata_still_load(tiny_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run.path, old)
    save_tensors(old / "model.safetensors", load_tensors(old / "model.safetensors"), metadata={"format": "pt"})
    run = load_run(old)  # the folder's config.yaml and summary.json are enough
    np.testing.assert_array_equal(run.encode(images(run, 3)), tiny_run.encode(images(run, 3)))
    with pytest.raises(RunError, match="holds no config"):
        model_from_weights(old / "model.safetensors")


def aelab_cli(*args, pre="pass"):
    code = f"import sys; {pre}; from aelab.cli import main; sys.argv = ['aelab', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


@pytest.mark.slow
def test_export_cli(tiny_run, tmp_path):
    part, fmt, res = aelab_each(("export", tiny_run.path, "--out", tmp_path / "x", "--part", "decodr"),
                                ("export", tiny_run.path, "--out", tmp_path / "y", "--format", "tflite"),
                                ("export", tiny_run.path, "--out", tmp_path / "s", "--part", "scorer", "--json"))
    one_line_exit_2(part, "decodr", "decoder")
    one_line_exit_2(fmt, "tflite", "onnx, torchscript")
    one_line_exit_2(aelab_cli("export", tiny_run.path, "--out", tmp_path / "z", pre="sys.modules['onnx'] = None"),
                    "pip install 'aelab[export]'")
    assert not any((tmp_path / name).exists() for name in "xyz")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out["files"]) == ["scorer"] and out["score"] == "mse"
    x = images(tiny_run, 4)
    assert np.abs(run_onnx(out["files"]["scorer"], x) - aelab.score(tiny_run, x, "mse")).max() <= TOL
