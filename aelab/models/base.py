"""The contract every model family keeps.

``encode`` gives the deterministic code (the mean for a VAE), so latent
edits, traversals and anomaly scores never depend on a random draw;
``forward`` gives everything the loss needs; ``loss`` returns named terms
with ``loss`` the one to minimise. The training loop sees only this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Output:
    recon: torch.Tensor
    code: torch.Tensor
    mean: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over all elements, like ``nn.MSELoss()``: comparable across image sizes."""
    if kind == "mse":
        return F.mse_loss(recon, target)
    if kind == "l1":
        return F.l1_loss(recon, target)
    if kind == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target)
    raise ValueError(f"unknown loss '{kind}'")


def memory_format_for(model: nn.Module) -> torch.memory_format:
    """The layout a model's weights and inputs take: channels_last for models with convolutions
    (oneDNN on CPU and cuDNN on GPU run them faster so), the plain layout for the others."""
    convolutional = any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())
    return torch.channels_last if convolutional else torch.contiguous_format


class Autoencoder(nn.Module):
    """Base class: ``input_shape`` is (C, H, W), ``latent_shape`` the code's shape per image."""

    family = ""
    variational = False

    def __init__(self, params, input_shape: tuple[int, int, int]):
        super().__init__()
        self.params = params
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_shape: tuple[int, ...] = ()

    @property
    def latent_size(self) -> int:
        """Number of elements in one code (edits address them by flat index)."""
        return math.prod(self.latent_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Output:
        code = self.encode(x)
        return Output(self.decode(code), code)

    def loss(self, out: Output, target: torch.Tensor, kind: str = "mse") -> dict[str, torch.Tensor]:
        recon = reconstruction_loss(out.recon, target, kind)
        return {"loss": recon, "recon": recon}
