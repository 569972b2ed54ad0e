"""Model families, created by name from a registry (``create_model``)."""

from aelab.models.base import Autoencoder, Output
from aelab.models.registry import create_model, families, parse_params, register

__all__ = ["Autoencoder", "Output", "create_model", "families", "parse_params", "register"]
