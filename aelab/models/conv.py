"""Convolutional autoencoder: strided (or max-pooled) convolutions down, mirrored up.

With ``latent_dim: null`` the code is the last feature map (a spatial code,
e.g. 48×8×8 for the course model); with a number, a Linear bottleneck maps
the flattened feature map to a vector code. Decoder layer sizes are solved
from the encoder's shapes, so odd image sizes come back exactly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from aelab.errors import ConfigError
from aelab.models.base import Autoencoder
from aelab.models.layers import FamilyParams, activation, output_activation
from aelab.models.registry import register

Shape = tuple[int, int, int]


class ConvParams(FamilyParams):
    type: Literal["conv"] = "conv"
    channels: list[PositiveInt] = Field(default_factory=lambda: [12, 24, 48], min_length=1)
    kernel: PositiveInt = 4
    downsample: Literal["stride", "maxpool"] = "stride"
    padding: int | None = Field(None, ge=0, description="stride mode; default keeps sizes halving exactly")
    latent_dim: PositiveInt | None = Field(None, description="null: spatial code (the last feature map)")
    batchnorm: bool = False


def _padding(p: ConvParams) -> int:
    return p.padding if p.padding is not None else max((p.kernel - 1) // 2, 0)


def _act(p: ConvParams) -> nn.Module:
    return activation(p.activation, p.negative_slope)


def conv_min_side(p: ConvParams) -> int:
    """The smallest image side every down-sampling step leaves at least one pixel of."""
    side, pad = 1, _padding(p)
    for _ in p.channels:  # walk back from a 1-pixel output of the last step
        # stride: (s + 2·pad - kernel) // 2 + 1 >= side;  maxpool: s // 2 >= side
        side = max(1, 2 * (side - 1) + p.kernel - 2 * pad) if p.downsample == "stride" else 2 * side
    return side


def conv_encoder(p: ConvParams, input_shape: Shape) -> tuple[nn.Sequential, list[Shape]]:
    """The down-sampling stack and the (C, H, W) before each step and after the last."""
    shapes = [tuple(input_shape)]
    layers: list[nn.Module] = []
    pad = _padding(p)
    for ch in p.channels:
        c, h, w = shapes[-1]
        if p.downsample == "stride":
            layers.append(nn.Conv2d(c, ch, p.kernel, stride=2, padding=pad))
            h, w = ((s + 2 * pad - p.kernel) // 2 + 1 for s in (h, w))
        else:
            layers.append(nn.Conv2d(c, ch, p.kernel, padding="same"))
        if p.batchnorm:
            layers.append(nn.BatchNorm2d(ch))
        layers.append(_act(p))
        if p.downsample == "maxpool":
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(f"model.channels: {len(p.channels)} down-sampling steps shrink a "
                              f"{input_shape[1]}×{input_shape[2]} image to nothing (it needs at least "
                              f"{conv_min_side(p)}×{conv_min_side(p)}); use fewer channels entries")
        shapes.append((ch, h, w))
    return nn.Sequential(*layers), shapes


def conv_decoder(p: ConvParams, shapes: list[Shape]) -> nn.Sequential:
    """Mirror of ``conv_encoder``: each step restores the exact size it came from."""
    layers: list[nn.Module] = []
    pad = _padding(p)
    steps = list(zip(shapes[1:], shapes[:-1], strict=True))[::-1]
    for i, ((c_in, h_in, w_in), (c_out, h_out, w_out)) in enumerate(steps):
        if p.downsample == "stride":
            base = [(s - 1) * 2 - 2 * pad + p.kernel for s in (h_in, w_in)]
            extra = [h_out - base[0], w_out - base[1]]
            if not all(0 <= e < 2 for e in extra):
                raise ConfigError(f"model: kernel {p.kernel} with padding {pad} cannot be mirrored back to "
                                  f"{h_out}×{w_out}; try padding {(p.kernel - 1) // 2}")
            layers.append(nn.ConvTranspose2d(c_in, c_out, p.kernel, stride=2, padding=pad,
                                             output_padding=tuple(extra)))
        else:
            layers += [nn.Upsample(size=(h_out, w_out), mode="nearest"),
                       nn.Conv2d(c_in, c_out, p.kernel, padding="same")]
        if i < len(steps) - 1:
            if p.batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_act(p))
    layers.append(output_activation(p.output_activation))
    return nn.Sequential(*layers)


@register("conv", ConvParams)
class ConvAutoencoder(Autoencoder):
    min_side = staticmethod(conv_min_side)

    def __init__(self, params: ConvParams, input_shape: Shape):
        super().__init__(params, input_shape)
        features, shapes = conv_encoder(params, self.input_shape)
        deconv = conv_decoder(params, shapes)
        if params.latent_dim is None:
            self.encoder, self.decoder = features, deconv
            self.latent_shape = shapes[-1]
        else:
            flat = math.prod(shapes[-1])
            self.encoder = nn.Sequential(*features, nn.Flatten(), nn.Linear(flat, params.latent_dim))
            self.decoder = nn.Sequential(nn.Linear(params.latent_dim, flat), _act(params),
                                         nn.Unflatten(1, shapes[-1]), *deconv)
            self.latent_shape = (params.latent_dim,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
