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


@dataclass(frozen=True)
class Part:
    """One step of what a model computes, as its architecture graph shows it (``aelab.graph``).

    ``kind`` is ``input``, ``layers`` (a module whose leaf layers run in order; the graph splits it into
    blocks), ``head`` (one module drawn as one node), ``concat``, ``code``, ``sample``, ``loss`` or
    ``output``; ``inputs`` names the parts it reads. ``code`` marks the part whose output is the code the
    decoder reads. Shapes are not declared: the graph measures them on a dummy batch (``shape`` only for a
    part no module computes, such as a loss term)."""

    id: str
    kind: str
    inputs: tuple[str, ...] = ()
    module: nn.Module | None = None
    label: str = ""
    code: bool = False
    shape: tuple[int, ...] | None = None


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

    def parts(self) -> list[Part]:
        """The computation's structure for the architecture graph: a chain input → ``encoder`` → code →
        ``decoder`` → output. A family that branches, merges or samples overrides it."""
        if not isinstance(getattr(self, "encoder", None), nn.Module) or not isinstance(
                getattr(self, "decoder", None), nn.Module):
            raise NotImplementedError(f"{type(self).__name__}: no encoder/decoder modules; override parts()")
        return [Part("input", "input"), Part("encoder", "layers", ("input",), self.encoder, "encoder"),
                Part("code", "code", ("encoder",), label="code", code=True),
                Part("decoder", "layers", ("code",), self.decoder, "decoder"),
                Part("output", "output", ("decoder",), label="output")]
