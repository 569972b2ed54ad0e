"""Building blocks shared by the model families: activations and MLP stacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field
from torch import nn

from aelab.config import NumbersNotBools

Activation = Literal["relu", "leaky_relu", "gelu", "elu", "silu", "tanh", "sigmoid"]
OutputActivation = Literal["auto", "tanh", "sigmoid", "none"]


class FamilyParams(NumbersNotBools):
    """Keys every model family has. ``output_activation: auto`` follows data.range."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True, allow_inf_nan=False)

    activation: Activation = "relu"
    negative_slope: float = Field(0.01, ge=0, description="slope of leaky_relu")
    output_activation: OutputActivation = "auto"

    def ignored_keys(self) -> dict[str, str]:
        """Keys set away from their default that this family's other choices leave unused: key -> why.
        (A resolved config holds every key, so a default value is never an error.)"""
        out = {}
        if self.activation != "leaky_relu" and self.negative_slope != type(self).model_fields["negative_slope"].default:
            out["negative_slope"] = f"it is the slope of activation leaky_relu, and activation is '{self.activation}'"
        return out


def activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    return {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "none": nn.Identity}[name]()


def output_activation(name: str) -> nn.Module:
    if name == "auto":  # resolved by the config; a bare model defaults to the [-1, 1] range
        name = "tanh"
    return activation(name)


def mlp(sizes: Sequence[int], params: FamilyParams, *, batchnorm: bool = False, dropout: float = 0.0,
        last_activation: bool = False) -> nn.Sequential:
    """Linear layers through ``sizes``; activation (and batchnorm, dropout) after
    each hidden layer, and after the last one only when ``last_activation``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        hidden = i < len(sizes) - 2
        if hidden or last_activation:
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation(params.activation, params.negative_slope))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
