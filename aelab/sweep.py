"""Sweeps: one base config, many variants, each trained into its own Run folder.

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
``vae_e5``. Finished runs are skipped, interrupted ones resumed from their
checkpoint, so running the same sweep again completes it. The sweep folder
then holds ``sweep.yaml`` (what was run), ``table.csv``/``table.md`` (one row
per run); ``aelab sweep`` (through ``aelab.analyse.sweep_figures``) adds ``losses.png`` and, when the
runs differ in code size, ``latent.png``, drawn by ``aelab.figures.sweep``.

One module (~550 lines) for one job: reading a sweep file, running its variants and
tabulating them share the variant naming and the folder layout; the figures are elsewhere.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aelab.config import Config, apply_overrides, config_from_dict, preset
from aelab.config import set_key as config_set_key
from aelab.errors import AelabError, ConfigError
from aelab.io import atomic_write
from aelab.runfolder import CONFIG, METRICS, RUN, SUMMARY, TEMP_FILES, FolderKind, open_folder
from aelab.runfolder import state as folder_state
from aelab.tables import to_pandas

SWEEP_FILE, TABLE_CSV, TABLE_MD = "sweep.yaml", "table.csv", "table.md"
LOSSES, LATENT = "losses.png", "latent.png"
SWEEP_FOLDER = FolderKind("sweep folder", (SWEEP_FILE, "*/"),
                          (SWEEP_FILE, TABLE_CSV, TABLE_MD, LOSSES, LATENT, TEMP_FILES), (("*", RUN),))
"""A sweep folder: its own files and one Run folder per run (what ``--out`` may already hold to resume;
runs trained into it beforehand are reused)."""

# How a varied key shows in a run's folder name: prefix + value ("" = value alone).
ALIASES = {"model.type": "", "model.backbone": "", "train.epochs": "e", "model.latent_dim": "z", "train.lr": "lr",
           "model.beta": "beta", "train.batch_size": "bs", "model.channels": "ch", "model.hidden": "h",
           "train.input_noise": "noise", "train.optimizer": "", "model.activation": "", "seed": "seed"}
# Keys that set the code size: the latent study draws one line per setting of everything else.
LATENT_KEYS = {"model.latent_dim", "model.channels", "model.hidden", "model.encoders"}


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


# -- the sweep file --------------------------------------------------------------------------------------------------
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


# -- running ---------------------------------------------------------------------------------------------------------
def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            diff = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
            if diff:
                return diff
        return ""
    return "" if a == b else f"{prefix}: {a!r} in the folder, {b!r} in the sweep"


def run_state(folder: Path, cfg: Config) -> str:
    """new | done | resume | restart | different (a finished run of another config).

    Built on ``runfolder.state``; a folder that is not aelab's reads ``restart``, and the
    ``--force`` that restarting uses refuses it."""
    from aelab.config import load_config

    held = folder_state(folder)
    if held in ("absent", "empty"):
        return "new"
    if held == "finished":
        try:
            same = load_config(folder / CONFIG).to_dict() == cfg.to_dict()
        except AelabError:
            same = False
        return "done" if same else "different"
    from aelab.checkpoint import read_checkpoint
    from aelab.runfolder import CHECKPOINT, CHECKPOINT_META

    if (folder / CHECKPOINT).exists() and not (folder / CHECKPOINT_META).exists():
        try:
            if read_checkpoint(folder / CHECKPOINT, tensors=False)[0]["config"] == cfg.to_dict():
                return "resume"
        except AelabError:  # unreadable, or a format this aelab does not resume: train it again
            pass
    return "restart"


def train_variant(config: dict[str, Any], folder: str, threads: int | None = None, force: bool = False,
                  progress: bool = False) -> dict[str, Any]:
    """Bring one run folder to finished: skip, resume or (re)train. Top-level so worker processes can run it."""
    from aelab.train import train

    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = config_from_dict(config)
    out = Path(folder)
    state = run_state(out, cfg)
    if state == "different" and not force:
        from aelab.config import load_config

        diff = _first_difference(load_config(out / CONFIG).to_dict(), cfg.to_dict())
        raise AelabError(f"{out} holds a finished run of another config ({diff}); use --force to retrain it, "
                         f"or another --out")
    started = time.perf_counter()
    if state != "done":
        train(cfg, out, resume=state == "resume", force=state in ("restart", "different"), progress=progress)
    return {"state": state, "seconds": round(time.perf_counter() - started, 2),
            "summary": json.loads((out / SUMMARY).read_text())}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class SweepResult:
    out: Path
    sweep: Sweep
    rows: list[dict[str, Any]]
    files: dict[str, str]
    states: dict[str, str]

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per finished run (what ``table.csv`` holds)."""
        return self.rows

    def to_pandas(self) -> Any:
        return to_pandas(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "name": self.sweep.name, "runs": len(self.rows), "states": self.states,
                "files": self.files, "table": self.rows}


def run_sweep(sweep: Sweep | str | Path | dict[str, Any], out: str | Path, *, jobs: int = 1,
              overrides: list[str] | None = None, force: bool = False, progress: bool = False,
              log: Callable[[str], None] | None = None) -> SweepResult:
    """Train every run of ``sweep`` into ``out/<run name>``, then write the table and figures.

    ``jobs`` > 1 trains that many runs at once in worker processes with
    ``max(1, cores // jobs)`` torch threads each (unless the config sets
    ``train.threads``). Runs already finished are skipped; one that fails is
    reported after the others have finished."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, overrides)
    elif overrides:
        raise AelabError("overrides apply when the sweep is loaded: pass them to load_sweep")
    if jobs < 1:
        raise AelabError(f"--jobs {jobs}: must be at least 1")
    out = open_folder(out, SWEEP_FOLDER)  # new, empty, or this sweep's (or another's) folder: never a stranger's
    atomic_write(out / SWEEP_FILE, yaml.safe_dump(sweep.to_dict(), sort_keys=False, allow_unicode=True))
    say = log or (lambda _line: None)
    total = len(sweep.variants)
    threads = max(1, cores() // jobs) if jobs > 1 else None
    states: dict[str, str] = {}
    failures: list[tuple[str, BaseException]] = []

    def done(i: int, v: Variant, result: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is not None:
            failures.append((v.name, error))
            states[v.name] = "failed"
            say(f"[{i}/{total}] {v.name}: failed ({error})")
            return
        assert result is not None
        s = result["summary"]
        states[v.name] = result["state"]
        what = {"done": "already finished, skipped", "resume": "resumed and finished",
                "restart": "restarted and trained", "different": "retrained (config changed)",
                }.get(result["state"], "trained")
        took = "" if result["state"] == "done" else f" in {result['seconds']:.1f} s"
        say(f"[{i}/{total}] {v.name}: {what}{took}  "
            f"(train loss {s['final_train_loss']:.5g}, {s.get('evaluated_on', 'val')} MSE [0,1] {s['mse']:.5g}, "
            f"PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f})")

    if jobs == 1:
        for i, v in enumerate(sweep.variants, 1):
            try:
                result = train_variant(v.config.to_dict(), str(out / v.name), None, force, progress)
            except AelabError as exc:
                done(i, v, None, exc)
                continue
            done(i, v, result, None)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_variant, v.config.to_dict(), str(out / v.name),
                                   None if v.config.train.threads else threads, force, False): v
                       for v in sweep.variants}
            try:
                for i, fut in enumerate(as_completed(futures), 1):
                    try:
                        result = fut.result()
                    except Exception as exc:  # reported after the others finish
                        done(i, futures[fut], None, exc)
                        continue
                    done(i, futures[fut], result, None)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    rows = sweep_table(out, sweep)
    files = write_outputs(out, sweep, rows)
    if failures:
        bugs = [e for _, e in failures if not isinstance(e, AelabError)]
        if bugs:
            raise bugs[0]
        first = failures[0]
        raise AelabError(f"{len(failures)} of {total} runs failed; {first[0]}: {first[1]} "
                         f"(the table holds the {len(rows)} finished ones; run the sweep again to retry)")
    return SweepResult(out, sweep, rows, files, states)


# -- the table -------------------------------------------------------------------------------------------------------
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


def _columns(sweep: Sweep) -> list[str]:
    return [k for k in sweep.varied if not any(isinstance(v.settings.get(k), dict) for v in sweep.variants)]


def sweep_table(out: str | Path, sweep: Sweep | None = None) -> list[dict[str, Any]]:
    """One row per finished run: its settings (read back from the run's config), size and final metrics."""
    out = Path(out)
    sweep = sweep or load_sweep_dir(out)
    rows = []
    for v in sweep.variants:
        folder = out / v.name
        try:
            s = json.loads((folder / SUMMARY).read_text())
            cfg = yaml.safe_load((folder / CONFIG).read_text())
        except (FileNotFoundError, json.JSONDecodeError, yaml.YAMLError):
            continue
        row: dict[str, Any] = {"run": v.name}
        for key in _columns(sweep):
            value = get_key(cfg, key)
            row[key] = json.dumps(value) if isinstance(value, list | dict) else value
        if "model.type" not in row:
            row["family"] = s["family"]
        row.update({"parameters": s["parameters"], "latent_size": s["latent_size"],
                    "compression": s["compression_ratio"]})
        if "train.epochs" not in row:
            row["epochs"] = s["epochs"]
        row.update({
            "final_train_loss": s["final_train_loss"], "final_train_mse_01": s.get("final_train_mse_01"),
            "val_mse": s["mse"], "val_psnr": s["psnr"],
            "val_ssim": s["ssim"], "time_s": s["wall_time_s"],
        })
        if s.get("evaluated_on", "val") != "val":
            row["evaluated_on"] = s["evaluated_on"]
        rows.append(row)
    return rows


_MD_FORMATS = {"parameters": "{:,}", "latent_size": "{:,}", "compression": "{:.4g}×", "final_train_loss": "{:.5f}",
               "final_train_mse_01": "{:.5f}", "val_mse": "{:.5f}", "val_psnr": "{:.2f}", "val_ssim": "{:.4f}",
               "time_s": "{:.1f}"}
# headers carry their units (aelab.logunits): the loss is each run's objective, the MSEs are on [0, 1]
MD_HEADERS = {"final_train_loss": "train loss (objective)", "final_train_mse_01": "train MSE [0,1]",
              "val_mse": "val MSE [0,1]", "val_psnr": "val PSNR (dB)", "val_ssim": "val SSIM", "time_s": "time (s)",
              "latent_size": "code size", "compression": "compression"}


def format_cell(key: str, value: Any) -> str:
    if value is None:
        return "null" if "." in key else "-"  # a setting left null (a spatial code) vs a missing number
    fmt = _MD_FORMATS.get(key)
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def table_csv(rows: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def table_md(rows: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = [MD_HEADERS.get(c, c) for c in cols]
    numeric = {c for c in cols if any(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                                      for r in rows)}
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---:" if c in numeric else "---" for c in cols) + " |"]
    lines += ["| " + " | ".join(format_cell(c, r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, sweep: Sweep, rows: list[dict[str, Any]]) -> dict[str, str]:
    """table.csv and table.md (the figures are drawn above this layer: ``aelab.analyse.sweep_figures``)."""
    files: dict[str, str] = {}
    if not rows:
        return files
    atomic_write(out / TABLE_CSV, table_csv(rows))
    atomic_write(out / TABLE_MD, table_md(rows))
    files.update(table_csv=str(out / TABLE_CSV), table_md=str(out / TABLE_MD))
    return files


# -- what the figures are drawn from ---------------------------------------------------------------------------------
def finished(out: str | Path, sweep: Sweep) -> list[Variant]:
    """The variants whose run folder holds a finished run."""
    return [v for v in sweep.variants if (Path(out) / v.name / SUMMARY).exists()]


def loss_curves(out: str | Path, variants: list[Variant], key: str = "mse_01") -> list[tuple[str, Any, Any]]:
    """Per run, in sweep order: its legend label, and the iteration and ``key`` of every logged step:
    ``mse_01`` (reconstruction MSE per pixel on [0, 1], comparable across runs; empty for an older run
    whose log cannot give it, see ``logunits.upgrade_log``) or ``loss`` (each run's own objective)."""
    import numpy as np

    from aelab.logunits import upgrade_log

    curves = []
    for v in variants:
        folder = Path(out) / v.name
        with open(folder / METRICS) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        records = upgrade_log(records, yaml.safe_load((folder / CONFIG).read_text()) or {})
        steps = [r for r in records if "loss" in r and key in r]
        curves.append((v.label, np.asarray([r["step"] for r in steps]), np.asarray([r[key] for r in steps])))
    return curves


def training_curves(out: str | Path, variants: list[Variant]) -> tuple[list[tuple[str, Any, Any]], str]:
    """What a sweep's ``losses.png`` draws, and its axis label: every run's train MSE on [0, 1] (comparable across
    families and ranges), or, when a run's log predates it, every run's objective (never the two mixed)."""
    from aelab.logunits import MSE_01

    mse, loss = loss_curves(out, variants), loss_curves(out, variants, "loss")
    if all(len(m[1]) == len(v[1]) for m, v in zip(mse, loss, strict=True)):
        return mse, f"train reconstruction {MSE_01}"
    return loss, "training objective (each run's train.loss on data.range)"


def latent_series(rows: list[dict[str, Any]], sweep: Sweep) -> dict[str, list[dict[str, Any]]]:
    """The rows grouped into the code-size study's lines: family, vector or spatial code, other settings."""
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(_series(r, sweep), []).append(r)
    return series


def _series(row: dict[str, Any], sweep: Sweep) -> str:
    v = next((v for v in sweep.variants if v.name == row["run"]), None)
    kind = "spatial" if v is not None and getattr(v.config.model, "latent_dim", 0) is None else "vector"
    family = str(row.get("family", row.get("model.type")))
    if v is not None and family == "vae":
        family = f"vae ({v.config.model.backbone})"
    rest = {k: val for k, val in (v.settings.items() if v else ()) if k not in LATENT_KEYS and k != "model.type"}
    extra = label(rest)
    return f"{family}, {kind} code" + (f", {extra}" if extra else "")
