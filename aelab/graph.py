"""The architecture graph: what a model computes, as nodes with real output shapes and edges (drawn by
``aelab.figures.info.diagram``, printed by ``aelab info --json``).

Structure is declared, shapes are measured. Each family says what its computation is made of
(``Autoencoder.parts()``: its modules, where branches split and join, the heads, the sampling step,
the loss terms): structure a trace cannot recover (a VAE's sampling and KL live in ``forward`` and
``loss``, not in ``encode``/``decode``; registration order puts parallel encoders in series; torch.fx
gives one node per tensor op and fails on families with data-dependent Python). The shapes come from
forward hooks on every leaf layer while ``encode`` and ``decode`` run on a dummy batch, so they are true
for any config. Leaf layers of a part are grouped into blocks (a weight layer with its normalisation,
activation, pooling, dropout and reshapes) and runs of identical blocks fold into one node with a count,
so a 12-layer fcn is as few nodes as a 3-layer one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from aelab.models import Autoencoder, Part

_RESHAPES = (nn.Flatten, nn.Unflatten)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass
class Node:
    """One box of the picture. ``shape`` is the output per image; ``shapes`` each step's output inside it
    (a folded run: each repeat's; a reshape adds its own); ``repeat`` how many identical blocks it folds."""

    id: str
    label: str
    kind: str  # input | noise | block | head | concat | code | sample | loss | output
    shape: list[int]
    part: str
    parameters: int = 0
    repeat: int = 1
    shapes: list[list[int]] = field(default_factory=list)
    code: bool = False


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[tuple[str, str]]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [asdict(n) for n in self.nodes], "edges": [list(e) for e in self.edges]}


def _is_weight_layer(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _NORMS)


def _layer_text(m: nn.Module, sizes: bool) -> str:
    """'Linear 64→10' (``sizes``) or 'Linear' (the part identical blocks share)."""
    name = type(m).__name__
    if isinstance(m, nn.Linear):
        return f"{name} {m.in_features}→{m.out_features}" if sizes else name
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        pad = m.padding if isinstance(m.padding, str) else f"p{m.padding[0]}"
        rest = f"k{m.kernel_size[0]}" + (f" s{m.stride[0]}" if m.stride[0] != 1 else "") + f" {pad}"
        return f"{name} {m.in_channels}→{m.out_channels} {rest}" if sizes else f"{name} {rest}"
    if isinstance(m, nn.LeakyReLU):
        return f"{name}({m.negative_slope:g})"
    if isinstance(m, nn.Dropout):
        return f"{name}({m.p:g})"
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        return f"{name}({k})"
    return name


@dataclass
class _Block:
    layers: list[tuple[nn.Module, list[int]]] = field(default_factory=list)

    @property
    def main(self) -> list[tuple[nn.Module, list[int]]]:
        return [(m, s) for m, s in self.layers if not isinstance(m, _RESHAPES)]

    @property
    def has_weights(self) -> bool:
        return any(_is_weight_layer(m) for m, _ in self.layers)

    @property
    def opened(self) -> bool:  # a weight layer or the upsampling that leads one
        return self.has_weights or any(isinstance(m, nn.Upsample) for m, _ in self.layers)

    def signature(self) -> tuple[str, ...]:
        return tuple(_layer_text(m, False) for m, _ in self.main)

    def leading_reshape(self) -> bool:
        return bool(self.layers) and isinstance(self.layers[0][0], _RESHAPES) and bool(self.main)

    def trailing_reshape(self) -> bool:
        return bool(self.layers) and isinstance(self.layers[-1][0], _RESHAPES)

    def shapes(self) -> list[list[int]]:
        """The block's output, and the output before a trailing reshape (128×8×8, then 8192)."""
        main = self.main
        out = [main[-1][1]] if main else []
        if self.trailing_reshape() or not out:
            out.append(self.layers[-1][1])
        return out


def _blocks(leaves: list[tuple[nn.Module, list[int]]]) -> list[_Block]:
    """A weight layer (or an upsampling that leads one) starts a block; the rest join the current one."""
    blocks: list[_Block] = []
    for m, shape in leaves:
        if isinstance(m, nn.Identity):
            continue
        if not blocks or (_is_weight_layer(m) and blocks[-1].has_weights) or (
                isinstance(m, nn.Upsample) and blocks[-1].opened):
            blocks.append(_Block())
        blocks[-1].layers.append((m, shape))
    return blocks


def _runs(blocks: list[_Block]) -> list[list[_Block]]:
    """Consecutive identical blocks fold together; a reshape may only open or close a run."""
    runs: list[list[_Block]] = []
    for b in blocks:
        last = runs[-1][-1] if runs else None
        if (last is not None and last.has_weights and b.signature() == last.signature()
                and not last.trailing_reshape() and not b.leading_reshape()):
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def _run_label(run: list[_Block]) -> str:
    first, last = run[0], run[-1]
    main = first.main
    if not main:  # reshapes only
        return ", ".join(type(m).__name__.lower() for m, _ in first.layers)
    body = " + ".join(_layer_text(m, len(run) == 1) for m, _ in main)
    text = f"({body}) × {len(run)}" if len(run) > 1 else body
    if first.leading_reshape():
        text = f"{type(first.layers[0][0]).__name__.lower()}, {text}"
    if last.trailing_reshape():
        text = f"{text}, {type(last.layers[-1][0]).__name__.lower()}"
    return text


def _params(run: list[_Block]) -> int:
    return sum(p.numel() for b in run for m, _ in b.layers for p in m.parameters(recurse=False))


def _shape(out: Any) -> list[int]:
    return list(out.shape[1:]) if torch.is_tensor(out) else []


def _measure(model: Autoencoder, parts: list[Part]) -> tuple[list[tuple[nn.Module, list[int]]], dict[int, list[int]],
                                                             list[int], list[int], list[int]]:
    """Run encode → decode on two zero images with hooks: every leaf layer's output in execution order,
    each part module's output, and the input, code and output shapes."""
    order: list[tuple[nn.Module, list[int]]] = []
    outputs: dict[int, list[int]] = {}
    hooks = []
    modules = {id(p.module): p.module for p in parts if p.module is not None}
    leaves = {id(m): m for top in modules.values() for m in top.modules() if not any(True for _ in m.children())}
    for m in modules.values():  # each module hooked once, even when two parts share it
        hooks.append(m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(id(mod), _shape(out))))
    for m in leaves.values():
        hooks.append(m.register_forward_hook(lambda mod, _i, out: order.append((mod, _shape(out)))))
    param = next(model.parameters(), None)
    x = torch.zeros(2, *model.input_shape, device=param.device if param is not None else None,
                    dtype=param.dtype if param is not None else None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            code = model.encode(x)
            recon = model.decode(code)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order, outputs, _shape(x), _shape(code), _shape(recon)


def _layer_nodes(part: Part, leaves: list[tuple[nn.Module, list[int]]]) -> list[Node]:
    """A ``layers`` part as a chain of block nodes (none for an empty stack)."""
    runs = _runs(_blocks(leaves))
    nodes = []
    for i, run in enumerate(runs):
        shapes = [s for b in run for s in b.shapes()]
        node_id = f"{part.id}.{i + 1}" if len(runs) > 1 else part.id
        nodes.append(Node(node_id, _run_label(run), "block", shapes[-1], part.id, _params(run), len(run), shapes))
    return nodes


def build_graph(model: Autoencoder, input_noise: str | None = None) -> Graph:
    """The model's architecture graph. ``input_noise`` (e.g. 'Gaussian noise, std 0.2') adds the
    denoising corruption between the input and what reads it (training only)."""
    parts = model.parts()
    order, outputs, in_shape, code_shape, out_shape = _measure(model, parts)
    nodes: list[Node] = []
    edges: list[tuple[str, str]] = []
    last: dict[str, str] = {}  # part id -> the node holding the part's output
    for p in parts:
        unknown = [i for i in p.inputs if i not in last]
        if unknown:
            raise ValueError(f"{type(model).__name__}.parts(): '{p.id}' reads {unknown}, not declared before it")
        sources = [last[i] for i in p.inputs]
        members = {id(q) for q in p.module.modules()} if p.module is not None else set()
        leaves = [(m, s) for m, s in order if id(m) in members]
        if p.kind == "layers":
            chain = _layer_nodes(p, leaves)
            if chain and p.label and sum(q.inputs == p.inputs and q.kind == p.kind for q in parts) > 1:
                chain[0].label = f"{p.label}: {chain[0].label}"  # name parallel branches
        elif p.module is not None:
            inner = " + ".join(_layer_text(m, True) for m, _ in leaves if not isinstance(m, nn.Identity))
            shape = outputs.get(id(p.module), leaves[-1][1] if leaves else [])
            chain = [Node(p.id, ": ".join(t for t in (p.label, inner) if t), p.kind, shape, p.id,
                          sum(q.numel() for q in p.module.parameters()), 1, [shape], p.code)]
        else:
            shape = (in_shape if p.kind == "input" else code_shape if p.code else out_shape if p.kind == "output"
                     else list(p.shape or ()))
            chain = [Node(p.id, p.label or p.kind, p.kind, shape, p.id, 0, 1, [shape], p.code)]
        if not chain:  # an empty stack passes its input through
            last[p.id] = sources[0]
            continue
        nodes += chain
        edges += [(s, chain[0].id) for s in sources] + [(a.id, b.id) for a, b in zip(chain, chain[1:], strict=False)]
        last[p.id] = chain[-1].id
    if input_noise:
        start = next(n.id for n in nodes if n.kind == "input")
        edges = [(start, "noise"), *(("noise", b) if a == start else (a, b) for a, b in edges)]
        nodes.insert(1, Node("noise", f"+ {input_noise} (training only)", "noise", in_shape, "noise", 0, 1,
                             [in_shape]))
    return Graph(nodes, edges)


def noise_text(noise: Any) -> str | None:
    """How a config's ``train.input_noise`` reads on the graph."""
    if noise is None:
        return None
    if noise.type == "gaussian":
        return f"Gaussian noise, std {noise.std:g}"
    return f"masking {noise.fraction:.0%} of pixels"
