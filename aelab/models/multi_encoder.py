"""Multi-encoder autoencoder: several fully connected encoders side by side.

Each encoder has its own hidden sizes and code size; their codes are
concatenated and one decoder reconstructs from the joint code. With one-
element codes per encoder, each code element comes from its own network,
which makes the elements easy to edit one at a time.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import ConfigDict, Field, PositiveInt
from torch import nn

from aelab.config import NumbersNotBools
from aelab.models.base import Autoencoder, Part
from aelab.models.layers import FamilyParams, mlp, output_activation
from aelab.models.registry import register


class EncoderSpec(NumbersNotBools):
    model_config = ConfigDict(extra="forbid")
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256])
    code_dim: PositiveInt = 1


class MultiEncoderParams(FamilyParams):
    type: Literal["multi_encoder"] = "multi_encoder"
    encoders: list[EncoderSpec] = Field(
        default_factory=lambda: [EncoderSpec(hidden=[512, 64], code_dim=4) for _ in range(3)], min_length=1)
    decoder_hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 512])
    batchnorm: bool = Field(False, description="BatchNorm1d after each encoder hidden layer")
    decoder_batchnorm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


@register("multi_encoder", MultiEncoderParams)
class MultiEncoderAutoencoder(Autoencoder):
    def __init__(self, params: MultiEncoderParams, input_shape: tuple[int, int, int]):
        super().__init__(params, input_shape)
        d = math.prod(self.input_shape)
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Flatten(), *mlp([d, *e.hidden, e.code_dim], params, batchnorm=params.batchnorm,
                                             dropout=params.dropout))
            for e in params.encoders
        )
        code = sum(e.code_dim for e in params.encoders)
        self.decoder = nn.Sequential(
            *mlp([code, *params.decoder_hidden, d], params, batchnorm=params.decoder_batchnorm,
                 dropout=params.dropout),
            output_activation(params.output_activation),
            nn.Unflatten(1, self.input_shape),
        )
        self.latent_shape = (code,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([enc(x) for enc in self.encoders], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def parts(self) -> list[Part]:
        """The encoders side by side, each reading the image, joined by one concatenation: the code."""
        branches = [Part(f"encoder{i + 1}", "layers", ("input",), enc, f"encoder {i + 1}")
                    for i, enc in enumerate(self.encoders)]
        return [Part("input", "input", label="input"), *branches,
                Part("code", "concat", tuple(b.id for b in branches), label="concatenate: the code", code=True),
                Part("decoder", "layers", ("code",), self.decoder, "decoder"),
                Part("output", "output", ("decoder",), label="output")]
