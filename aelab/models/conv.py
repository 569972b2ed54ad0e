"""Convolutional autoencoder: strided (or max-pooled, or plain) convolutions down, mirrored up.

With ``latent_dim: null`` the code is the last feature map (a spatial code,
e.g. 48×8×8 for the course model, or 64×48×48 from 3×50×50 images with
``kernel: 3, padding: 0, downsample: none``); with a number, a Linear
bottleneck maps the flattened feature map to a vector code. ``kernel`` and
``padding`` apply in every ``downsample`` mode. Decoder layer sizes are
solved from the encoder's shapes, so odd image sizes come back exactly.
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
    downsample: Literal["stride", "maxpool", "none"] = "stride"
    padding: int | None = Field(None, ge=0, description="null: stride halves sizes exactly (kernel-1)//2; "
                                "maxpool and none keep them ('same')")
    latent_dim: PositiveInt | None = Field(None, description="null: spatial code (the last feature map)")
    batchnorm: bool = False


def _padding(p: ConvParams) -> int:
    """The stride mode's padding (its default halves even sizes exactly)."""
    return p.padding if p.padding is not None else max((p.kernel - 1) // 2, 0)


def _act(p: ConvParams) -> nn.Module:
    return activation(p.activation, p.negative_slope)


def _conv_size(p: ConvParams, s: int) -> int:
    """One side after a step's convolution (before any pooling)."""
    if p.downsample == "stride":
        return (s + 2 * _padding(p) - p.kernel) // 2 + 1
    return s if p.padding is None else s + 2 * p.padding - p.kernel + 1


def _step_size(p: ConvParams, s: int) -> int:
    """One side after a whole down-sampling step."""
    t = _conv_size(p, s)
    return t // 2 if p.downsample == "maxpool" else t


def conv_min_side(p: ConvParams) -> int:
    """The smallest image side every step leaves at least one pixel of (walked back from one pixel)."""
    side = 1
    shrink = p.kernel - 1 - 2 * (p.padding or 0)  # how much a stride-1 convolution takes off a side
    for _ in p.channels:
        if p.downsample == "stride":  # (s + 2·pad - kernel) // 2 + 1 >= side
            side = 2 * (side - 1) + p.kernel - 2 * _padding(p)
        elif p.downsample == "maxpool":  # conv(s) // 2 >= side
            side = 2 * side + (shrink if p.padding is not None else 0)
        else:  # conv(s) >= side
            side = side + (shrink if p.padding is not None else 0)
        side = max(side, 1)
    return side


def _describe(p: ConvParams) -> str:
    pad = "same" if p.padding is None and p.downsample != "stride" else _padding(p)
    return f"{len(p.channels)} {p.downsample} steps with kernel {p.kernel}, padding {pad}"


def conv_encoder(p: ConvParams, input_shape: Shape) -> tuple[nn.Sequential, list[Shape]]:
    """The down-sampling stack and the (C, H, W) before each step and after the last."""
    shapes = [tuple(input_shape)]
    layers: list[nn.Module] = []
    for ch in p.channels:
        c, h, w = shapes[-1]
        if p.downsample == "stride":
            layers.append(nn.Conv2d(c, ch, p.kernel, stride=2, padding=_padding(p)))
        else:
            layers.append(nn.Conv2d(c, ch, p.kernel, padding="same" if p.padding is None else p.padding))
        if p.batchnorm:
            layers.append(nn.BatchNorm2d(ch))
        layers.append(_act(p))
        if p.downsample == "maxpool":
            layers.append(nn.MaxPool2d(2))
        if min(_conv_size(p, h), _conv_size(p, w)) < 1 or min(_step_size(p, h), _step_size(p, w)) < 1:
            side = conv_min_side(p)
            raise ConfigError(f"model.channels: {_describe(p)} shrink a {input_shape[1]}×{input_shape[2]} image to "
                              f"nothing (it needs at least {side}×{side}); use fewer channels entries, a smaller "
                              f"kernel or more padding")
        shapes.append((ch, _step_size(p, h), _step_size(p, w)))
    return nn.Sequential(*layers), shapes


def _up_step(p: ConvParams, c_in: int, c_out: int, size_in: tuple[int, int],
             size_out: tuple[int, int]) -> list[nn.Module]:
    """The layers that undo one down-sampling step, from its output size back to exactly its input size."""
    if p.downsample == "stride":
        pad = _padding(p)
        extra = [o - ((s - 1) * 2 - 2 * pad + p.kernel) for s, o in zip(size_in, size_out, strict=True)]
        if not all(0 <= e < 2 for e in extra):
            raise ConfigError(f"model: kernel {p.kernel} with padding {pad} cannot be mirrored back to "
                              f"{size_out[0]}×{size_out[1]}; try padding {(p.kernel - 1) // 2}")
        return [nn.ConvTranspose2d(c_in, c_out, p.kernel, stride=2, padding=pad, output_padding=tuple(extra))]
    layers: list[nn.Module] = []
    if p.downsample == "maxpool":  # back to the size the convolution gave, before the pooling
        layers.append(nn.Upsample(size=tuple(_conv_size(p, s) for s in size_out), mode="nearest"))
    if p.padding is None:
        return [*layers, nn.Conv2d(c_in, c_out, p.kernel, padding="same")]
    # stride 1: (t - 1) - 2·padding + kernel is exactly the side the convolution started from
    return [*layers, nn.ConvTranspose2d(c_in, c_out, p.kernel, padding=p.padding)]


def conv_decoder(p: ConvParams, shapes: list[Shape]) -> nn.Sequential:
    """Mirror of ``conv_encoder``: each step restores the exact size it came from."""
    layers: list[nn.Module] = []
    steps = list(zip(shapes[1:], shapes[:-1], strict=True))[::-1]
    for i, ((c_in, h_in, w_in), (c_out, h_out, w_out)) in enumerate(steps):
        layers += _up_step(p, c_in, c_out, (h_in, w_in), (h_out, w_out))
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
