"""The architecture picture, drawn from the graph in ``aelab.info.summary``'s description (no model needed).

Top to bottom, one row per step of the computation: parallel branches (a multi-encoder's encoders,
a VAE's μ and log σ² heads) stand side by side and meet where they merge; a loss term stands beside
what it reads. Width grows only with the number of parallel branches (the graph folds repeated
blocks), and past ``MAX_WIDTH`` the boxes and fonts shrink, so the picture stays readable at report
width for any depth.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

DPI = 150
MAX_WIDTH = 10.4  # inches: 1560 px at DPI
_FILL = {"input": "#cfe8c6", "output": "#cfe8c6", "noise": "#fff2ae", "encoder": "#c6dbef", "decoder": "#fdd9b5",
         "head": "#dadaeb", "code": "#e45756", "loss": "#f2f2f2"}


@dataclass
class _Dims:
    scale: float = 1.0

    @property
    def box(self) -> float:
        return 2.9 * self.scale

    @property
    def pitch(self) -> float:
        return 3.25 * self.scale

    @property
    def gap(self) -> float:
        return 0.42 * self.scale

    def font(self, size: float) -> float:
        return max(5.0, size * self.scale)

    def wrap(self, text: str, size: float, weight: str = "normal") -> list[str]:
        """``text`` in lines that fit a box, measured in the font it is drawn in (breaks at spaces)."""
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextPath

        prop = FontProperties(size=self.font(size), weight=weight)
        room = (self.box - 0.16) * 72  # points

        def fits(line: str) -> bool:
            return TextPath((0, 0), line, prop=prop).get_extents().width <= room

        lines: list[str] = []
        for word in text.split(" "):
            if lines and fits(f"{lines[-1]} {word}"):
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        return lines


def _text_shape(shape: list[int]) -> str:
    return "×".join(map(str, shape)) if shape else "1 number"


def _shape_lines(node: dict[str, Any], dims: _Dims) -> list[str]:
    """The output shape; for a folded run each repeat's, the middle elided past two lines."""
    parts = [_text_shape(s) for s in node.get("shapes") or [node["shape"]]]
    for keep in (len(parts), 3, 2):
        shown = parts if keep >= len(parts) else [parts[0], "…", *parts[len(parts) - keep + 1:]]
        lines = dims.wrap(" → ".join(shown), 8, "bold")
        if len(lines) <= 2:
            break
    return lines


def _lines(node: dict[str, Any], dims: _Dims) -> list[tuple[str, float, str, str]]:
    """(text, font size, weight, colour) per line of a node's box."""
    light = node["code"]
    colour = "white" if light else "black"
    out = [(line, dims.font(8), "normal", colour) for line in dims.wrap(node["label"].replace(" × ", " ×\u00a0"), 8)]
    out += [(line, dims.font(8), "bold", colour) for line in _shape_lines(node, dims)]
    if node.get("parameters"):
        out.append((f"{node['parameters']:,} parameters", dims.font(6.5), "normal", "#eeeeee" if light else "#555555"))
    return out


def _layout(nodes: list[dict[str, Any]], edges: list[list[str]]) -> tuple[dict[str, int], dict[str, float]]:
    """Row (longest path from the input) and column of every node: a node with one reader above keeps its
    column; siblings of a split spread around it; a merge sits under the mean of its inputs; a loss term
    stands to the right of what it reads."""
    ids = [n["id"] for n in nodes]
    kind = {n["id"]: n["kind"] for n in nodes}
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    order = list(TopologicalSorter({i: preds[i] for i in ids}).static_order())
    row: dict[str, int] = {}
    for i in order:
        row[i] = max((row[p] + 1 for p in preds[i]), default=0)
    main = {i for i in ids if kind[i] == "output"}
    for i in reversed(order):  # nodes on a path to the output
        if any(s in main for s in succs[i]):
            main.add(i)
    col: dict[str, float] = {}
    for i in order:
        ps = preds[i]
        if not ps:
            col[i] = 0.0
        elif i not in main:
            col[i] = max(col[p] for p in ps) + 1
        elif len(ps) == 1:
            sibs = [s for s in succs[ps[0]] if s in main]
            col[i] = col[ps[0]] + (sibs.index(i) - (len(sibs) - 1) / 2 if len(sibs) > 1 else 0)
        else:
            col[i] = sum(col[p] for p in ps) / len(ps)
    for r in set(row.values()):  # nodes of one row at least one column apart, the main path keeping its place
        here = sorted((i for i in ids if row[i] == r), key=lambda i: (col[i], i not in main))
        for a, b in zip(here, here[1:], strict=False):
            col[b] = max(col[b], col[a] + 1)
    return row, col


def _sides(nodes: list[dict[str, Any]], edges: list[list[str]]) -> dict[str, str]:
    """Encoder (above the code) or decoder (below it), for the box colours."""
    code = next((n["id"] for n in nodes if n["code"]), None)
    below: set[str] = set()
    frontier = [code]
    while frontier:
        cur = frontier.pop()
        for a, b in edges:
            if a == cur and b not in below:
                below.add(b)
                frontier.append(b)
    return {n["id"]: "decoder" if n["id"] in below else "encoder" for n in nodes}


def diagram(description: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Draw ``description['graph']`` (``aelab.info.summary(model)``; a recorded description draws the
    same picture later): a box per node with its label, output shape per image and parameters."""
    import matplotlib.patches as patches

    from aelab.errors import AelabError
    from aelab.figures.base import plt, save

    if "graph" not in description:
        raise AelabError("the architecture description has no 'graph'; describe the model with aelab.info.summary")
    graph = description["graph"]
    nodes, edges = graph["nodes"], graph["edges"]
    row, col = _layout(nodes, edges)
    side = _sides(nodes, edges)
    span = max(col.values()) - min(col.values())
    dims = _Dims()
    dims.scale = min(1.0, (MAX_WIDTH - 0.3) / (span * 3.25 + 2.9))
    width = max(6.0, span * dims.pitch + dims.box + 0.3)
    lines = {n["id"]: _lines(n, dims) for n in nodes}
    heights = {n["id"]: 0.16 + sum(size * 1.3 / 72 for _, size, _, _ in lines[n["id"]]) for n in nodes}
    n_rows = max(row.values()) + 1
    row_h = [max(heights[i] for i in row if row[i] == r) for r in range(n_rows)]
    code = "×".join(map(str, description["latent_shape"]))
    head = title or f"{description['family']}: {description['parameters']:,} parameters, code {code}"
    head_lines = textwrap.wrap(head, int(width * 72 / (10 * 0.55)))
    top = 0.25 + 0.2 * len(head_lines)
    tops = [top + sum(row_h[:r]) + dims.gap * r for r in range(n_rows)]
    height = tops[-1] + row_h[-1] + 0.55
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    left = (width - span * dims.pitch) / 2 - min(col.values()) * dims.pitch
    centre = {i: left + col[i] * dims.pitch for i in col}
    box_top = {i: tops[row[i]] + (row_h[row[i]] - heights[i]) / 2 for i in row}
    for n in nodes:
        i = n["id"]
        fill = _FILL["code"] if n["code"] else _FILL.get(n["kind"], _FILL[side[i]])
        ax.add_patch(patches.FancyBboxPatch((centre[i] - dims.box / 2, box_top[i]), dims.box, heights[i],
                                            boxstyle="round,pad=0,rounding_size=0.06", fc=fill, ec="#333333",
                                            lw=0.7, ls="--" if n["kind"] in ("loss", "noise") else "-"))
        y = box_top[i] + 0.08
        for text, size, weight, colour in lines[i]:
            ax.text(centre[i], y, text, ha="center", va="top", fontsize=size, weight=weight, color=colour)
            y += size * 1.3 / 72
    kinds = {n["id"]: n["kind"] for n in nodes}
    for a, b in edges:
        dashed = kinds[b] == "loss"
        ax.annotate("", xy=(centre[b], box_top[b]), xytext=(centre[a], box_top[a] + heights[a]),
                    arrowprops={"arrowstyle": "-|>", "lw": 0.8, "color": "#777777" if dashed else "#333333",
                                "ls": "--" if dashed else "-", "shrinkA": 0, "shrinkB": 0, "mutation_scale": 9})
    for k, line in enumerate(head_lines):
        ax.text(width / 2, 0.15 + 0.2 * k, line, ha="center", va="top", fontsize=10)
    ax.text(width / 2, height - 0.2, "shapes per image (C×H×W or elements); blue: encoder, orange: decoder, "
            "red: the code", ha="center", va="center", fontsize=dims.font(7), color="#555555")
    return save(fig, path, dpi=DPI)
