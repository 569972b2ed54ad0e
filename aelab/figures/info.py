"""The architecture picture, drawn from ``aelab.info.summary``'s description (no model needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

_COLOURS = {"Linear": "#4c78a8", "Conv2d": "#4c78a8", "ConvTranspose2d": "#f58518", "BatchNorm1d": "#bab0ac",
            "BatchNorm2d": "#bab0ac", "Upsample": "#f58518", "MaxPool2d": "#72b7b2", "Flatten": "#d3d3d3",
            "Unflatten": "#d3d3d3", "Dropout": "#d3d3d3"}
_ACTIVATIONS = {"ReLU", "LeakyReLU", "GELU", "ELU", "SiLU", "Tanh", "Sigmoid", "Identity"}


def diagram(description: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Boxes for the weight layers, left to right, with the code in the middle.

    ``description`` is ``aelab.info.summary(model)`` (``family``, ``input_shape``, ``latent_shape``,
    ``parameters``, ``layers``), so a recorded description draws the same picture later.
    Box height grows with the log of the layer's output size, so a 12288→10 bottleneck
    reads as a bottleneck; activations are folded into the label of the layer before them."""
    import matplotlib.patches as patches

    from aelab.figures.base import plt, save

    boxes: list[dict[str, Any]] = [{"label": "input", "shape": list(description["input_shape"]), "kind": "io",
                                    "params": 0}]
    for r in description["layers"]:
        base = r["type"].split("(")[0]
        if base in _ACTIVATIONS:
            boxes[-1]["act"] = base
            continue
        if base in {"Dropout", "Flatten", "Unflatten"}:
            continue
        boxes.append({"label": r["type"], "shape": list(r["output_shape"]), "kind": base,
                      "params": r["parameters"], "part": r["part"]})
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
    code = "×".join(map(str, description["latent_shape"]))
    ax.set_title(title or f"{description['family']}: {description['parameters']:,} parameters, code {code}",
                 fontsize=10)
    ax.set_xlim(-0.4, len(boxes) * 1.1)
    ax.set_ylim(-2.6, 2.9)
    ax.axis("off")
    return save(fig, path, dpi=140)
