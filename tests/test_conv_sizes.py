"""Spatial codes of any size: kernel, padding and downsample (stride | maxpool | none) in every mode,
decoders that come back to the data's exact size, and keys a family ignores refused by name."""

import json

import pytest
import torch
from _cli import aelab_each
from _cli import one_line_exit_2 as bad
from hypothesis import given, settings
from hypothesis import strategies as st

from aelab.config import config_from_dict
from aelab.errors import ConfigError, RunError
from aelab.models import create_model
from aelab.models.conv import conv_min_side


def expected_side(s, steps, kernel, padding, downsample):
    """The code's side from PyTorch's documented Conv2d / MaxPool2d size formulas, written out here
    independently of aelab.models.conv (None if a step leaves nothing)."""
    for _ in range(steps):
        if downsample == "stride":
            pad = (kernel - 1) // 2 if padding is None else padding
            s = (s + 2 * pad - kernel) // 2 + 1 if s + 2 * pad >= kernel else 0
        else:
            s = s if padding is None else s + 2 * padding - kernel + 1
            if downsample == "maxpool":
                s = s // 2
        if s < 1:
            return None
    return s


def spec(channels, kernel, padding, downsample, latent_dim=None):
    return {"type": "conv", "channels": channels, "kernel": kernel, "padding": padding, "downsample": downsample,
            "latent_dim": latent_dim}


def test_the_homework_spatial_code_64x48x48_from_3x50x50():
    model = create_model(spec([64], 3, 0, "none"), (3, 50, 50))
    assert model.latent_shape == (64, 48, 48) and model.latent_size == 147_456
    conv, = (m for m in model.encoder if isinstance(m, torch.nn.Conv2d))
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (0, 0))
    up, = (m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d))
    assert (up.in_channels, up.out_channels, up.kernel_size, up.stride, up.padding) == (64, 3, (3, 3), (1, 1), (0, 0))
    x = torch.rand(2, 3, 50, 50) * 2 - 1
    assert model.encode(x).shape == (2, 64, 48, 48) and model(x).recon.shape == x.shape


@pytest.mark.parametrize(("size", "channels", "kernel", "padding", "downsample", "code"), [
    (50, [64], 3, 0, "none", (64, 48, 48)),
    (50, [8, 16], 3, None, "none", (16, 50, 50)),
    (50, [4, 4, 4], 3, None, "maxpool", (4, 6, 6)),      # 50 -> 25 -> 12 -> 6: odd sizes on the way back
    (50, [4, 8], 3, 0, "maxpool", (8, 11, 11)),          # padding honoured with max-pooling: 48/2=24, 22/2=11
    (50, [4, 8], 5, 1, "maxpool", (8, 11, 11)),          # 50+2-5+1 = 48 -> 24; 24+2-5+1 = 22 -> 11
    (50, [4, 8], 4, None, "stride", (8, 12, 12)),       # the course layers: 50 -> 25 -> 12
    (50, [4], 5, 0, "stride", (4, 23, 23)),
    (37, [4, 4], 2, 0, "stride", (4, 9, 9)),
    (28, [4, 8], 4, 2, "none", (8, 30, 30)),             # padding larger than the kernel needs: the code grows
])
def test_code_and_reconstruction_shapes(size, channels, kernel, padding, downsample, code):
    assert code[1:] == (expected_side(size, len(channels), kernel, padding, downsample),) * 2  # the table itself
    model = create_model(spec(channels, kernel, padding, downsample), (3, size, size))
    x = torch.rand(2, 3, size, size)
    assert model.latent_shape == code
    assert tuple(model.encode(x).shape[1:]) == code and model(x).recon.shape == x.shape
    vae = create_model({**spec(channels, kernel, padding, downsample, latent_dim=4), "type": "vae",
                        "backbone": "conv"}, (1, size, size + 3))
    assert vae(torch.rand(2, 1, size, size + 3)).recon.shape == (2, 1, size, size + 3)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), steps=st.integers(1, 3), kernel=st.integers(1, 5),
       padding=st.none() | st.integers(0, 3), downsample=st.sampled_from(["stride", "maxpool", "none"]),
       latent_dim=st.none() | st.just(3))
def test_any_small_size_builds_exactly_or_fails_with_one_line(h, w, steps, kernel, padding, downsample, latent_dim):
    params = spec([2] * steps, kernel, padding, downsample, latent_dim)
    sides = [expected_side(s, steps, kernel, padding, downsample) for s in (h, w)]
    if None in sides:
        with pytest.raises(ConfigError, match=r"shrink a \d+×\d+ image to nothing \(it needs at least") as err:
            create_model(params, (1, h, w))
        assert "\n" not in str(err.value)
        assert min(h, w) < conv_min_side(config_from_dict({"model": params}).model)
        return
    min_side = conv_min_side(config_from_dict({"model": params}).model)
    assert min(h, w) >= min_side
    assert None not in [expected_side(min_side, steps, kernel, padding, downsample)]
    assert min_side == 1 or expected_side(min_side - 1, steps, kernel, padding, downsample) is None
    try:
        model = create_model(params, (1, h, w))
    except ConfigError as err:  # only a strided step whose kernel/padding cannot be mirrored exactly
        assert downsample == "stride" and "cannot be mirrored back" in str(err)
        return
    x = torch.rand(2, 1, h, w)
    code = model.encode(x)
    assert tuple(code.shape[1:]) == ((latent_dim,) if latent_dim else (2, *sides))
    assert model(x).recon.shape == x.shape


def test_padding_and_kernel_change_the_maxpool_model():
    same = create_model(spec([4], 3, None, "maxpool"), (1, 50, 50))
    valid = create_model(spec([4], 3, 0, "maxpool"), (1, 50, 50))
    assert same.latent_shape == (4, 25, 25) and valid.latent_shape == (4, 24, 24)


@pytest.mark.parametrize(("model", "needles"), [
    ({"type": "fcn", "negative_slope": 0.2}, ["'model.negative_slope' = 0.2", "ignored by model family 'fcn'",
                                              "leaky_relu"]),
    ({"type": "conv", "hidden": [8]}, ["'model.hidden' is not used by model family 'conv'", "channels"]),
    ({"type": "vae", "kernel": 3}, ["'model.kernel' is not used by model family 'vae (backbone fcn)'",
                                    "vae (backbone conv)"]),
    ({"type": "conv", "downsample": "avgpool"}, ["model.downsample", "'none'"]),
])
def test_keys_a_family_ignores_are_errors_naming_it(model, needles):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": model})
    for needle in needles:
        assert needle in str(err.value)
    # the default value of a mode-dependent key is fine: a resolved config.yaml lists every key
    assert config_from_dict({"model": {"type": "fcn", "negative_slope": 0.01}}).model.negative_slope == 0.01


@pytest.mark.slow
def test_cli_spatial_code_and_ignored_key(tmp_path):
    res, slope, hidden = aelab_each(
        ("info", "configs/course-conv.yaml", "--input-shape", "50x50x3", "--json", "--set", "model.channels=[64]",
         "--set", "model.kernel=3", "--set", "model.padding=0", "--set", "model.downsample=none"),
        ("info", "configs/course-conv.yaml", "--set", "model.negative_slope=0.3"),
        ("info", "configs/course-conv.yaml", "--set", "model.hidden=[8]"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["latent_shape"] == [64, 48, 48] and out["layers"][-1]["output_shape"][-3:] == [3, 50, 50]
    bad(slope, "model.negative_slope", "model family 'conv'")
    bad(hidden, "'model.hidden' is not used by model family 'conv'")


@pytest.mark.parametrize("latent_dim", [8, None])
def test_a_maxpool_run_from_before_padding_counted_loads_as_it_was_trained(trained, tmp_path, latent_dim):
    """Before 2026-12-01 max-pool steps padded 'same' whatever model.padding said, and the weights held no
    config. Such a run (made here from a new one: padding written into config.yaml, the weights' metadata
    dropped) loads with its weights and gives the reconstructions it gave; a new run keeps its padding."""
    import shutil

    import yaml
    from safetensors.torch import load_file, save_file

    from aelab.run import load_run

    model = {"type": "conv", "channels": [4, 8], "kernel": 3, "downsample": "maxpool", "latent_dim": latent_dim}
    new = trained({"name": "pool", "seed": 0, "data": {"source": "builtin:faces?n=64&size=16", "val_fraction": 0.25},
                   "model": model, "train": {"epochs": 1, "batch_size": 16}})
    images = new.val_data().batch()
    old = shutil.copytree(new.path, tmp_path / "old")
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    cfg["model"]["padding"] = 0  # ignored by max-pool steps then; a 3×3 kernel without padding shrinks now
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    save_file(load_file(old / "model.safetensors"), old / "model.safetensors")  # no metadata, as then
    run = load_run(old)
    assert run.config.model.padding is None
    assert (run.reconstruct(images) == new.reconstruct(images)).all()
    shutil.copy(new.path / "model.safetensors", old / "model.safetensors")  # weights of today: padding counts
    with pytest.raises(RunError, match="weights do not match the run's config"):
        load_run(old)
