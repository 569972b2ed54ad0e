"""What a sweep is: a sweep file expanded into its runs, each with a readable name and a config.

A sweep file names a base config and what to vary::

    name: sweep-epochs
    base: deep-fcn                     # a config file, a shipped preset, or an inline mapping
    set: {data.source: "builtin:faces?n=5000"}   # optional: changes to the base
    variants:                          # optional: explicit runs (dotted keys, optional name)
      - {name: ae}
      - {name: vae, model.type: vae}
    grid:                              # optional: every combination (a list of grids = their union)
      train.epochs: [5, 10, 15]

The runs are every variant × every grid point. A run's folder name is built
from its settings (``run_name``): ``model.type=vae, train.epochs=5`` becomes
``vae_e5``. ``load_sweep_dir`` reads the sweep back from a sweep folder's ``sweep.yaml``.
Running it is ``aelab.sweep``; its table, ``aelab.sweeptable``.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aelab.config import Config, apply_overrides, config_from_dict, preset
from aelab.config import set_key as config_set_key
from aelab.errors import AelabError, ConfigError
from aelab.runfolder import CONFIG

SWEEP_FILE = "sweep.yaml"

# How a varied key shows in a run's folder name: prefix + value ("" = value alone).
ALIASES = {"model.type": "", "model.backbone": "", "train.epochs": "e", "model.latent_dim": "z", "train.lr": "lr",
           "model.beta": "beta", "train.batch_size": "bs", "model.channels": "ch", "model.hidden": "h",
           "train.input_noise": "noise", "train.optimizer": "", "model.activation": "", "seed": "seed"}


@dataclass
class Variant:
    """One run of a sweep: its folder name, the settings that make it differ, its config."""

    name: str
    settings: dict[str, Any]
    config: Config

    @property
    def label(self) -> str:
        """'vae, epochs=5': the legend entry for this run."""
        return label(self.settings) or self.name


@dataclass
class Sweep:
    name: str
    variants: list[Variant]
    varied: list[str]
    spec: dict[str, Any] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "varied": self.varied, "spec": self.spec,
                "runs": [{"name": v.name, "settings": v.settings} for v in self.variants]}


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections on the way."""
    config_set_key(raw, key, value, where=f"sweep key '{key}'")


def get_key(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _slug_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_slug_value(v) for v in value)
    if isinstance(value, dict):
        return "-".join(_slug_value(v) for v in value.values())
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "x"


def run_name(settings: dict[str, Any]) -> str:
    """Folder name from settings: known keys get a short prefix (``train.epochs`` → ``e``), others their
    last part; a spatial code (``model.latent_dim: null``) reads ``spatial``; parts are joined by ``_``."""
    parts = []
    for key, value in settings.items():
        if key == "model.latent_dim" and value is None:
            parts.append("spatial")
            continue
        prefix = ALIASES.get(key, key.split(".")[-1].replace("_", ""))
        parts.append(prefix + _slug_value(value))
    return "_".join(parts) or "base"


def label(settings: dict[str, Any]) -> str:
    """Human-readable settings: 'vae, epochs=5'."""
    out = []
    for key, value in settings.items():
        if ALIASES.get(key) == "":
            out.append(str(value))
        elif key == "model.latent_dim" and value is None:
            out.append("spatial code")
        else:
            shown = json.dumps(value) if isinstance(value, list | dict) else value
            out.append(f"{key.split('.')[-1]}={shown}")
    return ", ".join(out)


def _grid_points(grid: Any, where: str) -> list[dict[str, Any]]:
    grids = grid if isinstance(grid, list) else [grid]
    points: list[dict[str, Any]] = []
    for g in grids:
        if not isinstance(g, dict) or not g:
            raise ConfigError(f"{where}: 'grid' must be a mapping of key: [values] (or a list of them)")
        for key, values in g.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: grid key '{key}' needs a non-empty list of values, got {values!r}")
        keys = list(g)
        points += [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*g.values())]
    return points


def _base(spec: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
    base = spec.get("base", {})
    if isinstance(base, dict):
        return copy.deepcopy(base)
    if not isinstance(base, str):
        raise ConfigError(f"{where}: 'base' must be a config path, a preset name or a mapping")
    candidates = [folder / base, Path(base), preset(base)]
    for path in candidates:
        if path.is_file():
            try:
                raw = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                raise ConfigError(f"{path}: not valid YAML") from None
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: expected a mapping")
            return raw
    raise ConfigError(f"{where}: base config '{base}' not found (a path, relative to the sweep file or the "
                      f"current folder, or a shipped preset such as deep-fcn)")


def load_sweep(spec: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Sweep:
    """Read a sweep file (or mapping), expand it into variants and validate every variant's config.

    ``overrides`` (``key=value``) change the base, so every run gets them and the grid still varies."""
    folder = Path(".")
    where = "sweep"
    if not isinstance(spec, dict):
        path = Path(spec)
        where = str(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"sweep file not found: {path}") from None
        except yaml.YAMLError:
            raise ConfigError(f"{path}: not valid YAML") from None
        folder = path.parent
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with base, grid and/or variants")
    unknown = sorted(set(spec) - {"name", "base", "set", "grid", "variants", "description"})
    if unknown:
        raise ConfigError(f"{where}: unknown sweep key '{unknown[0]}' (keys: name, base, set, grid, variants)")
    base = _base(spec, folder, where)
    changes = spec.get("set") or {}
    if not isinstance(changes, dict):
        raise ConfigError(f"{where}: 'set' must be a mapping of dotted keys to values")
    for key, value in changes.items():
        set_key(base, key, value)
    base = apply_overrides(base, overrides)
    variants = spec.get("variants") or [{}]
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{where}: 'variants' must be a list of mappings")
    points = _grid_points(spec["grid"], where) if spec.get("grid") else [{}]
    runs: list[Variant] = []
    varied: list[str] = []
    for variant, point in itertools.product(variants, points):
        variant = dict(variant)
        given = variant.pop("name", None)
        settings = {**variant, **point}
        for key in settings:
            if key not in varied:
                varied.append(key)
        raw = copy.deepcopy(base)
        for key, value in settings.items():
            set_key(raw, key, value)
        name = "_".join(p for p in (str(given) if given else "", run_name(point) if point else "") if p) \
            or run_name(settings)
        name = re.sub(r"[^A-Za-z0-9._+-]+", "-", name)
        raw["name"] = name
        try:
            cfg = config_from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{where}: run '{name}': {exc}") from None
        runs.append(Variant(name, settings, cfg))
    seen: dict[str, int] = {}
    for v in runs:  # settings that slug alike (e.g. 0.1 and '0.1') still get their own folders
        seen[v.name] = seen.get(v.name, 0) + 1
        if seen[v.name] > 1:
            v.name = f"{v.name}-{seen[v.name]}"
            v.config.name = v.name
    return Sweep(str(spec.get("name") or (Path(where).stem if where != "sweep" else "sweep")), runs, varied,
                 {k: v for k, v in spec.items() if k != "description"})


def load_sweep_dir(path: str | Path) -> Sweep:
    """The sweep a folder holds, from its ``sweep.yaml`` (configs rebuilt from the finished runs)."""
    from aelab.config import load_config

    path = Path(path)
    try:
        raw = yaml.safe_load((path / SWEEP_FILE).read_text())
    except FileNotFoundError:
        raise AelabError(f"{path}: not a sweep folder (no {SWEEP_FILE})") from None
    except yaml.YAMLError:
        raise AelabError(f"{path / SWEEP_FILE}: not valid YAML") from None
    variants = []
    for r in raw.get("runs", []):
        folder = path / r["name"]
        if (folder / CONFIG).exists():
            variants.append(Variant(r["name"], r.get("settings") or {}, load_config(folder / CONFIG)))
    return Sweep(raw.get("name", path.name), variants, raw.get("varied", []), raw.get("spec", {}))


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()
