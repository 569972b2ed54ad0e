"""Architecture description: a layer table from a real forward pass (its picture: ``aelab.figures.info``).

Shapes are read from the model running on a dummy batch (forward hooks on
every leaf layer), so the table is true for whatever the config built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aelab.models import Autoencoder


@dataclass
class Layer:
    name: str
    type: str
    output_shape: list[int]
    parameters: int
    part: str  # encoder | code | decoder


def _part(name: str) -> str:
    return "decoder" if name.startswith("decoder") else "code" if "head" in name else "encoder"


def describe(model: Autoencoder) -> list[Layer]:
    """One row per leaf layer, in execution order (encode, then decode)."""
    rows: list[Layer] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0 and name:
            def hook(mod: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                if torch.is_tensor(out):
                    rows.append(Layer(name, type(mod).__name__ + _detail(mod), list(out.shape[1:]),
                                      sum(p.numel() for p in mod.parameters(recurse=False)), _part(name)))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.decode(model.encode(torch.zeros(2, *model.input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def _detail(mod: nn.Module) -> str:
    if isinstance(mod, nn.Linear):
        return f"({mod.in_features}→{mod.out_features})"
    if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d):
        return f"({mod.in_channels}→{mod.out_channels}, k{mod.kernel_size[0]}, s{mod.stride[0]})"
    if isinstance(mod, nn.LeakyReLU):
        return f"({mod.negative_slope:g})"
    return ""


def summary(model: Autoencoder, config: Any = None) -> dict[str, Any]:
    """Everything ``aelab info --json`` prints: the layer table and the architecture graph
    (``aelab.graph``; a ``config`` with ``train.input_noise`` adds the denoising step)."""
    from aelab.graph import build_graph, noise_text

    layers = describe(model)
    noise = getattr(getattr(config, "train", None), "input_noise", None)
    return {
        "family": model.family,
        "input_shape": list(model.input_shape),
        "latent_shape": list(model.latent_shape),
        "latent_size": model.latent_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "compression_ratio": round(math.prod(model.input_shape) / model.latent_size, 3),
        "layers": [asdict(layer) for layer in layers],
        "graph": build_graph(model, noise_text(noise)).to_dict(),
    }


def parse_shape(text: str) -> tuple[int, int, int]:
    """'64x64x3' (H×W×C) -> (64, 64, 3)."""
    from aelab.errors import AelabError

    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 2:
        dims = (*dims, 1)
    if len(dims) != 3 or min(dims) < 1:
        raise AelabError(f"--input-shape '{text}': expected H×W×C, e.g. 64x64x3")
    return dims  # type: ignore[return-value]


def model_for(target: str | Path, overrides: list[str] | None = None, input_shape: str | None = None):
    """The model a config or a Run folder describes (untrained for a config), and its config."""
    from aelab.config import load_config
    from aelab.data.sources import load_images
    from aelab.data.transforms import Preprocess
    from aelab.models import create_model
    from aelab.run import SUMMARY, load_run

    target = Path(target)
    if target.is_dir() and (target / SUMMARY).exists() and not overrides and not input_shape:
        run = load_run(target)
        return run.model, run.config
    cfg = load_config(target, overrides)
    image_shape = parse_shape(input_shape) if input_shape else load_images(cfg.data.source).shape
    shape = Preprocess(cfg.data.preprocess, cfg.data.range).output_shape(image_shape)
    return create_model(cfg.model, shape), cfg
