import math

import pytest
import torch

from aelab.config import load_config
from aelab.errors import ConfigError
from aelab.models import create_model, families

REPORT_COUNTS = {
    "deep-fcn": 25_739_146,
    "fcn-leaky": 26_574_656,
    "fcn-one-layer": 25_179_136,
    "multi-encoder": 131_869_091,
    "course-fcn": 3_176_419,
    "course-conv": 47_355,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "count"), REPORT_COUNTS.items())
def test_report_architectures_have_their_published_parameter_counts(name, count):
    cfg = load_config(f"configs/{name}.yaml")
    with torch.device("meta"):  # no memory for 130M parameters
        model = create_model(cfg.model, (3, 64, 64))
    assert n_params(model) == count


def test_course_conv_layers_match_the_course_code():
    model = create_model({"type": "conv", "channels": [12, 24, 48], "kernel": 4}, (3, 64, 64))
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 12, (4, 4), (2, 2), (1, 1)), (12, 24, (4, 4), (2, 2), (1, 1)), (24, 48, (4, 4), (2, 2), (1, 1))]
    assert model.latent_shape == (48, 8, 8)
    assert isinstance(model.decoder[-1], torch.nn.Tanh)


SPECS = [
    {"type": "fcn", "hidden": [32, 8], "latent_dim": 3, "batchnorm": True, "dropout": 0.1},
    {"type": "conv", "channels": [4, 8], "kernel": 4},
    {"type": "conv", "channels": [4, 8], "kernel": 3, "downsample": "maxpool", "latent_dim": 5},
    {"type": "vae", "hidden": [16], "latent_dim": 3},
    {"type": "vae", "backbone": "conv", "channels": [4, 8], "latent_dim": 5},
    {"type": "vae", "backbone": "conv", "channels": [4], "latent_dim": None},
    {"type": "multi_encoder", "encoders": [{"hidden": [8], "code_dim": 1}, {"hidden": [4, 4], "code_dim": 2}],
     "decoder_hidden": [8]},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['type']}-{s.get('backbone', '')}{s.get('downsample', '')}")
@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 28, 28), (1, 25, 25), (3, 37, 21)])
def test_shapes_come_from_the_data(spec, shape):
    model = create_model(spec, shape)
    x = torch.rand(3, *shape) * 2 - 1
    model.train()
    out = model(x)
    assert out.recon.shape == x.shape
    assert tuple(model.encode(x).shape[1:]) == model.latent_shape
    assert model.latent_size == math.prod(model.latent_shape)
    terms = model.loss(out, x)
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert out.recon.min() >= -1 and out.recon.max() <= 1  # tanh output for the default range


def test_vae_encode_is_deterministic_mean_and_forward_samples_in_training():
    torch.manual_seed(0)
    model = create_model({"type": "vae", "hidden": [16], "latent_dim": 4}, (1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    mean, logvar = model.encode_stats(x)
    assert torch.equal(model.encode(x), mean)
    model.train()
    assert not torch.allclose(model(x).code, mean)
    model.eval()
    assert torch.equal(model(x).code, mean)
    terms = model.loss(model(x), x)
    kl = (-0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)).mean()
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(terms["recon"].item() + kl.item() / 64, rel=1e-5)


def test_sigmoid_output_for_unit_range():
    model = create_model({"type": "fcn", "hidden": [8], "latent_dim": 2, "output_activation": "sigmoid"}, (1, 4, 4))
    assert isinstance(model.decoder[-2], torch.nn.Sigmoid)


def test_family_errors():
    with pytest.raises(ConfigError, match="model.channels"):
        create_model({"type": "conv", "channels": [4, 4, 4, 4]}, (1, 8, 8))
    with pytest.raises(ConfigError, match="unknown config key 'model.latent'"):
        create_model({"type": "fcn", "latent": 3}, (1, 8, 8))
    assert set(families()) >= {"fcn", "conv", "vae", "multi_encoder"}
