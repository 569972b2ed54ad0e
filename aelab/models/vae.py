"""Variational autoencoder (Kingma & Welling, 2013) on an fcn or conv backbone.

The encoder body ends in two heads, the mean and the log-variance of a
diagonal Gaussian posterior. Training decodes a reparameterised draw; in
eval mode and in ``encode`` the mean is used, so edits are deterministic.

Loss per batch: ``recon + beta * KL / D`` with ``recon`` the mean squared
error per element and ``KL`` per image summed over code elements, ``D`` the
number of elements in one image. This is the usual sum-over-pixels ELBO
divided by D, so the reported loss stays on the same scale as a plain
autoencoder's MSE.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from aelab.models.base import Autoencoder, Output, Part, reconstruction_loss
from aelab.models.conv import ConvParams, _act, conv_decoder, conv_encoder, conv_min_side
from aelab.models.fcn import FcnParams, fcn_decoder
from aelab.models.layers import mlp
from aelab.models.registry import register, validate


class VaeFcnParams(FcnParams):
    type: Literal["vae"] = "vae"  # type: ignore[assignment]
    backbone: Literal["fcn"] = "fcn"
    beta: float = Field(1.0, ge=0, description="weight of the KL term (beta-VAE when > 1)")


class VaeConvParams(ConvParams):
    type: Literal["vae"] = "vae"  # type: ignore[assignment]
    backbone: Literal["conv"] = "conv"
    latent_dim: PositiveInt | None = 64
    beta: float = Field(1.0, ge=0, description="weight of the KL term (beta-VAE when > 1)")


def parse_vae(raw: dict[str, Any]) -> VaeFcnParams | VaeConvParams:
    backbone = raw.get("backbone", "fcn")
    if backbone not in ("fcn", "conv"):
        from aelab.errors import ConfigError

        raise ConfigError(f"config key 'model.backbone' = {backbone!r}: must be 'fcn' or 'conv'")
    return validate(VaeFcnParams if backbone == "fcn" else VaeConvParams, raw)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, summed over code elements."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).flatten(1).sum(1)


@register("vae", VaeFcnParams, parse=parse_vae)
class VariationalAutoencoder(Autoencoder):
    variational = True
    param_classes = (VaeFcnParams, VaeConvParams)

    @staticmethod
    def min_side(params: VaeFcnParams | VaeConvParams) -> int:
        return conv_min_side(params) if params.backbone == "conv" else 1

    def __init__(self, params: VaeFcnParams | VaeConvParams, input_shape: tuple[int, int, int]):
        super().__init__(params, input_shape)
        if params.backbone == "fcn":
            self.body = nn.Sequential(nn.Flatten(), *mlp([math.prod(self.input_shape), *params.hidden], params,
                                                         batchnorm=params.batchnorm, dropout=params.dropout,
                                                         last_activation=True))
            width = params.hidden[-1] if params.hidden else math.prod(self.input_shape)
            self.mean_head, self.logvar_head = nn.Linear(width, params.latent_dim), nn.Linear(width, params.latent_dim)
            self.decoder = fcn_decoder(params, self.input_shape, params.latent_dim)
            self.latent_shape = (params.latent_dim,)
        else:
            features, shapes = conv_encoder(params, self.input_shape)
            deconv = conv_decoder(params, shapes)
            c = shapes[-1][0]
            if params.latent_dim is None:  # spatial code: 1×1 convolution heads
                self.body = features
                self.mean_head, self.logvar_head = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
                self.decoder = deconv
                self.latent_shape = shapes[-1]
            else:
                flat = math.prod(shapes[-1])
                self.body = nn.Sequential(*features, nn.Flatten())
                self.mean_head = nn.Linear(flat, params.latent_dim)
                self.logvar_head = nn.Linear(flat, params.latent_dim)
                self.decoder = nn.Sequential(nn.Linear(params.latent_dim, flat), _act(params),
                                             nn.Unflatten(1, shapes[-1]), *deconv)
                self.latent_shape = (params.latent_dim,)

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the posterior q(z|x)."""
        h = self.body(x)
        return self.mean_head(h), self.logvar_head(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_stats(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> Output:
        mean, logvar = self.encode_stats(x)
        code = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        return Output(self.decode(code), code, mean, logvar)

    def parts(self) -> list[Part]:
        """Body → μ and log σ² heads → z = μ + σ·ε (training; ``encode`` gives μ) → decoder; the KL term
        reads both heads."""
        beta = f", β = {self.params.beta:g}" if self.params.beta != 1 else ""
        return [Part("input", "input", label="input"),
                Part("encoder", "layers", ("input",), self.body, "encoder"),
                Part("mean", "head", ("encoder",), self.mean_head, "μ head"),
                Part("logvar", "head", ("encoder",), self.logvar_head, "log σ² head"),
                Part("z", "sample", ("mean", "logvar"), label="z = μ + σ·ε, ε ~ N(0, I); z = μ in eval",
                     code=True),
                Part("kl", "loss", ("mean", "logvar"), label=f"KL term of the loss: KL(q(z|x) ‖ N(0, I)){beta}",
                     shape=()),
                Part("decoder", "layers", ("z",), self.decoder, "decoder"),
                Part("output", "output", ("decoder",), label="output")]

    def loss(self, out: Output, target: torch.Tensor, kind: str = "mse") -> dict[str, torch.Tensor]:
        recon = reconstruction_loss(out.recon, target, kind)
        kl = kl_divergence(out.mean, out.logvar).mean()
        per_element = math.prod(self.input_shape)
        return {"loss": recon + self.params.beta * kl / per_element, "recon": recon, "kl": kl}
