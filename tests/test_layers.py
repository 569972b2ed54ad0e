"""The package's imports point one way (docs/ARCHITECTURE.md, "Layers").

Every import of an aelab module is read with ``ast`` — at module level and
inside functions, where lazy imports hide — and checked against the layer
table below: a module may import its own layer or a lower one. A cycle
between two modules is an error too, whatever their layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "aelab"

# Lowest first. A module belongs to the first entry that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("aelab.errors", "aelab.io", "aelab.limits", "aelab.config", "aelab.allocator", "aelab.distributed",
              "aelab.metrics", "aelab.cards", "aelab.data", "aelab.models", "aelab._testhooks", "aelab.tables",
              "aelab.logunits")),
    ("run", ("aelab.runfolder", "aelab.run", "aelab.schedule", "aelab.checkpoint", "aelab.feedback", "aelab.train",
             "aelab.manifest")),
    ("analyses", ("aelab.codestats", "aelab.scorenorm", "aelab.edits", "aelab.latent", "aelab.generate",
                  "aelab.anomaly", "aelab.graph", "aelab.quality", "aelab.oneclass", "aelab.sweep", "aelab.info",
                  "aelab.detector", "aelab.export", "aelab.pixel", "aelab.rankmetrics",
                  "aelab.scorekernels", "aelab.errormaps", "aelab.sweepfile", "aelab.sweeptable",
                  "aelab.codenoise")),
    ("figures", ("aelab.figures",)),
    ("apps", ("aelab.report", "aelab.serve", "aelab.demo", "aelab.analyse", "aelab.notebook")),
    ("entry", ("aelab.cli", "aelab.__main__", "aelab")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> str:
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/ARCHITECTURE.md")


def resolve(target: str) -> str | None:
    """The aelab module an import names (``from aelab.x import y`` may name the module aelab.x.y)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] if base else []
        for name in names:
            if name == "aelab" or name.startswith("aelab."):
                target = resolve(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    mine = RANK[layer_of(module)]
    upward = sorted(t for t in GRAPH[module] if RANK[layer_of(t)] > mine and not _package_of(module, t))
    assert not upward, f"{module} ({layer_of(module)}) imports a higher layer: " + ", ".join(
        f"{t} ({layer_of(t)})" for t in upward)


def _package_of(module: str, target: str) -> bool:
    """A package's ``__init__`` may name its own submodules (``aelab`` re-exports its API)."""
    return MODULES[target].name == "__init__.py" and module.startswith(target + ".")


def test_no_cycles():
    # Tarjan-free: a depth-first search that reports the first cycle it closes.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if _package_of(m, t) or _package_of(t, m):
                continue  # a package and its own modules: the package re-exports, the modules define
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


@pytest.mark.slow(reason="imports every module below figures in a fresh process (~0.5 s)")
def test_below_figures_nothing_draws():
    """matplotlib is imported by figures/ and above only (the figures layer check covers aelab.figures)."""
    for module, path in MODULES.items():
        if RANK[layer_of(module)] < RANK["figures"]:
            names = {a.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
                     for a in node.names}
            names |= {node.module or "" for node in ast.walk(ast.parse(path.read_text()))
                      if isinstance(node, ast.ImportFrom)}
            assert not any(n == "matplotlib" or n.startswith("matplotlib.") for n in names), \
                f"{module} imports matplotlib; drawing belongs in aelab/figures/"


def test_the_checker_sees_function_level_imports(tmp_path):
    # The test above would pass vacuously if lazy imports were missed: run.py's own imports must be found.
    assert "aelab.models" in GRAPH["aelab.run"] or "aelab.models.registry" in GRAPH["aelab.run"]
    assert any(t.startswith("aelab.") for t in GRAPH["aelab.cli.core"])
