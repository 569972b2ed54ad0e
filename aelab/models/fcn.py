"""Fully connected autoencoder: flatten, Linear layers down to the code, mirror back up.

The course's deep model is ``hidden: [1024, 256, 64], latent_dim: 10``
(12288-1024-256-64-10 for 64×64×3 input, 25,739,146 parameters).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from aelab.models.base import Autoencoder
from aelab.models.layers import FamilyParams, mlp, output_activation
from aelab.models.registry import register


class FcnParams(FamilyParams):
    type: Literal["fcn"] = "fcn"
    latent_dim: PositiveInt = 10
    hidden: list[PositiveInt] = Field(default_factory=lambda: [1024, 256, 64])
    decoder_hidden: list[PositiveInt] | None = Field(None, description="default: hidden reversed")
    batchnorm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


def fcn_decoder(params: FcnParams, input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """Code -> image: Linear layers up to C·H·W, the output activation, unflatten."""
    hidden = list(reversed(params.hidden)) if params.decoder_hidden is None else params.decoder_hidden
    return nn.Sequential(
        *mlp([latent_dim, *hidden, math.prod(input_shape)], params, batchnorm=params.batchnorm,
             dropout=params.dropout),
        output_activation(params.output_activation),
        nn.Unflatten(1, input_shape),
    )


@register("fcn", FcnParams)
class FcnAutoencoder(Autoencoder):
    def __init__(self, params: FcnParams, input_shape: tuple[int, int, int]):
        super().__init__(params, input_shape)
        sizes = [math.prod(self.input_shape), *params.hidden, params.latent_dim]
        self.encoder = nn.Sequential(nn.Flatten(), *mlp(sizes, params, batchnorm=params.batchnorm,
                                                        dropout=params.dropout))
        self.decoder = fcn_decoder(params, self.input_shape, params.latent_dim)
        self.latent_shape = (params.latent_dim,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
