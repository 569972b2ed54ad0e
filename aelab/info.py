"""Architecture description: a layer table from a real forward pass, and its picture.

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


def summary(model: Autoencoder) -> dict[str, Any]:
    """Everything ``aelab info --json`` prints."""
    layers = describe(model)
    return {
        "family": model.family,
        "input_shape": list(model.input_shape),
        "latent_shape": list(model.latent_shape),
        "latent_size": model.latent_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "compression_ratio": round(math.prod(model.input_shape) / model.latent_size, 3),
        "layers": [asdict(layer) for layer in layers],
    }


_COLOURS = {"Linear": "#4c78a8", "Conv2d": "#4c78a8", "ConvTranspose2d": "#f58518", "BatchNorm1d": "#bab0ac",
            "BatchNorm2d": "#bab0ac", "Upsample": "#f58518", "MaxPool2d": "#72b7b2", "Flatten": "#d3d3d3",
            "Unflatten": "#d3d3d3", "Dropout": "#d3d3d3"}


def diagram(model: Autoencoder, path: str | Path, title: str = "") -> Path:
    """Boxes for the weight layers, left to right, with the code in the middle.

    Box height grows with the log of the layer's output size, so a 12288→10
    bottleneck reads as a bottleneck; activations are folded into the label
    of the layer before them."""
    import matplotlib.patches as patches

    from aelab.figures.base import plt, save

    rows = describe(model)
    boxes: list[dict[str, Any]] = [{"label": "input", "shape": list(model.input_shape), "kind": "io", "params": 0}]
    for r in rows:
        base = r.type.split("(")[0]
        if base in {"ReLU", "LeakyReLU", "GELU", "ELU", "SiLU", "Tanh", "Sigmoid", "Identity"}:
            boxes[-1]["act"] = base
            continue
        if base in {"Dropout", "Flatten", "Unflatten"}:
            continue
        boxes.append({"label": r.type, "shape": r.output_shape, "kind": base, "params": r.parameters,
                      "part": r.part})
    # Mark the code: the last encoder-side box (or the mean head of a VAE).
    enc = [i for i, b in enumerate(boxes) if b.get("part") in ("encoder", "code")]
    code_at = next((i for i, b in enumerate(boxes) if "head" in b["label"].lower()), enc[-1] if enc else 0)
    width = max(8.0, 1.15 * len(boxes))
    fig, ax = plt.subplots(figsize=(width, 4.2))
    sizes = [math.prod(b["shape"]) for b in boxes]
    top = math.log10(max(sizes) + 1)
    for i, b in enumerate(boxes):
        h = 0.6 + 2.6 * math.log10(sizes[i] + 1) / top
        colour = "#e45756" if i == code_at else _COLOURS.get(b["kind"], "#9d755d" if b["kind"] != "io" else "#54a24b")
        ax.add_patch(patches.FancyBboxPatch((i * 1.1, -h / 2), 0.8, h, boxstyle="round,pad=0.02", fc=colour,
                                            ec="black", lw=0.6, alpha=0.9))
        shape = "×".join(map(str, b["shape"]))
        label = b["label"].replace("(", "\n(") + (f"\n+{b['act']}" if b.get("act") else "")
        ax.text(i * 1.1 + 0.4, h / 2 + 0.12, label, ha="center", va="bottom", fontsize=6.5)
        ax.text(i * 1.1 + 0.4, -h / 2 - 0.12, shape, ha="center", va="top", fontsize=7, weight="bold")
        if i:
            ax.annotate("", xy=(i * 1.1, 0), xytext=(i * 1.1 - 0.3, 0),
                        arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.text(code_at * 1.1 + 0.4, 0, "code", ha="center", va="center", fontsize=7, color="white", weight="bold")
    params = sum(p.numel() for p in model.parameters())
    ax.set_title(title or f"{model.family}: {params:,} parameters, code {'×'.join(map(str, model.latent_shape))}",
                 fontsize=10)
    ax.set_xlim(-0.4, len(boxes) * 1.1)
    ax.set_ylim(-2.6, 2.9)
    ax.axis("off")
    return save(fig, path, dpi=140)


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
