"""Model families, created by name from a registry (``create_model``)."""

from aelab.models.base import Autoencoder, Output, Part
from aelab.models.registry import create_model, families, parse_params, register

# The built-in families register themselves on import (timm-style): every import of aelab.models.* runs this first.
from aelab.models import conv, fcn, multi_encoder, vae  # noqa: E402, F401  isort: skip

__all__ = ["Autoencoder", "Output", "Part", "create_model", "families", "parse_params", "register"]
