"""``aelab analyse``: run the analyses the report shows and record each in the run's manifest.

The report only reads (``aelab.report``); this is the explicit step that computes.
For every run it produces what is missing -- an analysis counts as done when
``RUN/analyses.json`` records it for the run's current weights with every figure
on disk (``manifest.current``, the rule the report shares) -- by calling the
analysis functions, drawing their figures under ``RUN/figures/`` and recording
figures, numbers and parameters with ``aelab.manifest.record``.

Each analysis is one function below (``ANALYSES`` lists them in report order), so
the names it calls in ``aelab.latent`` / ``aelab.generate`` / ``aelab.codenoise`` /
``aelab.anomaly`` live in one small place. A sweep folder is analysed as its finished runs
plus the sweep's own figures (``losses.png``, ``latent.png``). One module (~360 lines) on
purpose: the analyses and the driver that decides which are missing are one table, read together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aelab import manifest
from aelab.errors import AelabError, closest
from aelab.runfolder import SUMMARY

LARGE_CODE = 256  # above this many elements, pick edited/traversed elements by spread instead of measured effect
CORE = ("architecture", "loss", "reconstructions", "edits", "traversal", "interpolation")
"""What every run gets; a VAE also gets ``samples``."""


def expected(variational: bool) -> list[str]:
    """The analyses a complete report of such a run shows (the optional ones -- the same-noise
    comparison, which needs a partner run, sample quality and anomaly scores -- are not required)."""
    return [*CORE, *(("samples",) if variational else ())]


@dataclass
class Result:
    """What an analysis wrote: figures (key -> path inside the run), numbers and the parameters used."""

    figures: dict[str, Path] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """The runs analysed together: a VAE's same-noise comparison puts the noise through one of the others."""

    runs: list[Any]


# -- one function per analysis: returns None where it does not apply to the run -------------------------------------
def architecture(run: Any, ctx: Context) -> Result:
    from aelab.figures.info import diagram
    from aelab.info import summary

    described = summary(run.model, run.config)
    path = diagram(described, run.figures / "architecture.png",
                   title=f"{run.name} ({run.model.family}): {described['parameters']:,} parameters")
    return Result({"architecture": path}, described)


def loss(run: Any, ctx: Context) -> Result:
    from aelab.figures.run import loss_figure
    from aelab.logunits import objective_label

    records = run.metrics_log()
    epochs = [r for r in records if "train_loss" in r]
    cfg = run.config
    path = loss_figure(records, run.figures / "loss.png", title=run.name,
                       objective=objective_label(cfg.train.loss, cfg.data.range, run.variational))
    last = epochs[-1] if epochs else {}
    return Result({"loss": path}, {"epochs": len(epochs), "steps": sum(1 for r in records if "loss" in r),
                                   "final_train_loss": last.get("train_loss"),
                                   "final_train_mse_01": last.get("train_mse_01"),
                                   "final_val_mse": last.get("val_mse")})


def reconstructions(run: Any, ctx: Context) -> Result:
    from aelab.figures.run import reconstruction_figure
    from aelab.run import reconstructions as reconstruct

    data = run.val_data()
    rec = reconstruct(run, data.subset(list(range(min(8, len(data))))))
    path = reconstruction_figure(rec.originals, rec.reconstructions, run.figures / "reconstructions.png",
                                 ids=rec.ids.tolist(), psnr=rec.psnr, ssim=rec.ssim,
                                 title=f"{run.name}: reconstructions")
    return Result({"reconstructions": path}, rec.numbers(), {"data": "validation split", "n": len(rec.ids)})


def _one_image(run: Any) -> Any:
    return run.val_data().batch([0])[0]


def _spread_elements(run: Any, n: int) -> list[int]:
    import numpy as np

    from aelab.latent import code_stats

    std = np.asarray(code_stats(run)["std"])
    return [int(i) for i in np.argsort(-std, kind="stable")[:n]]


def edits(run: Any, ctx: Context) -> Result:
    """Two elements pushed to the ends of their data range, then both together: what changes?"""
    import numpy as np

    from aelab import latent
    from aelab.figures.latent import edit_figure

    img = _one_image(run)
    stats = latent.code_stats(run)
    code = run.encode(img[None]).reshape(-1)
    dims = latent.top_elements(run, code, 2, "data") if run.latent_size <= LARGE_CODE else _spread_elements(run, 2)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    ops = [f"{d}={mean[d] + sign * 2 * std[d]:.3g}" for d, sign in zip(dims, (1, -1), strict=False)]
    ops = [*ops, ",".join(ops)] if len(ops) > 1 else ops
    edited = latent.edit(run, img, ops)
    path = edit_figure(edited, run.figures / "edits.png", f"{run.name}: latent edits ({run.latent_size}-element code)")
    numbers = {"edits": [{k: e[k] for k in ("edit", "mean_abs_change", "psnr")} for e in edited.to_dict()["edits"]]}
    return Result({"edits": path}, numbers, {"image": "validation image 0", "edits": ops})


def traversal(run: Any, ctx: Context) -> Result:
    from aelab import latent
    from aelab.figures.latent import traversal_figure

    img = _one_image(run)
    if run.latent_size > LARGE_CODE:
        swept = latent.traverse(run, img, dims=_spread_elements(run, 8), range="data", steps=9)
    else:
        swept = latent.traverse(run, img, top=8, range="data", steps=9)
    path = traversal_figure(swept, run.figures / "traversal.png", f"{run.name}: latent traversal ({swept.range} range)")
    return Result({"traversal": path}, swept.to_dict(), {"image": "validation image 0", "range": "data"})


def interpolation(run: Any, ctx: Context) -> Result | None:
    from aelab import latent
    from aelab.figures.latent import interpolation_figure

    data = run.val_data()
    if len(data) < 2:
        return None
    between = latent.interpolate(run, data.subset([0]), data.subset([1]), steps=8)
    path = interpolation_figure(between, run.figures / "interpolation.png",
                                f"{run.name}: {between.mode} interpolation in the code")
    return Result({"interpolation": path}, between.to_dict(), {"images": "validation images 0 and 1"})


def samples(run: Any, ctx: Context) -> Result | None:
    from aelab import generate
    from aelab.figures.generate import samples_figure
    from aelab.quality import sharpness

    if not run.variational:
        return None
    drawn = generate.sample(run, 32, seed=0)
    path = samples_figure(drawn, run.figures / "samples.png", run.name)
    numbers = {**drawn.numbers(), "sharpness": float(sharpness(drawn.images).mean())}
    return Result({"samples": path}, numbers, {"n": 32, "seed": 0})


def _partner(run: Any, runs: list[Any]) -> Any:
    """A plain autoencoder on the same data to put the same noise through: one trained as long
    as the VAE if there is one, the best reconstructing among those."""
    fits = [r for r in runs if not r.variational and r.config.data == run.config.data]
    return min(fits, key=lambda r: (r.summary["epochs"] != run.summary["epochs"], -r.summary["psnr"]), default=None)


def noise(run: Any, ctx: Context) -> Result | None:
    from aelab import codenoise
    from aelab.figures.generate import same_noise_figure

    partner = _partner(run, ctx.runs) if run.variational else None
    if partner is None:
        return None
    ids = run.val_data().ids[:4].tolist()
    aug_a, aug_b, numbers = codenoise.compare_noise(partner, run, codenoise.select(partner, ids), 5, 0.5, 0)
    path = same_noise_figure(aug_a, aug_b, numbers, run.figures / "noise_compare.png")
    return Result({"noise": path}, {k: numbers[k] for k in ("a", "b") if k in numbers},
                  {"partner": str(partner.path), "ids": ids, "sigma": 0.5, "seed": 0})


def _adopt(run: Any, file: str) -> Result | None:
    """A record an analysis command wrote itself (``RUN/quality.json`` by ``aelab evaluate``,
    ``RUN/anomaly.json`` by ``aelab anomaly``): its figures and numbers, stamped with the file's mtime."""
    import json

    path = run.path / file
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    figures = {}
    for key, rel in (data.pop("figures", None) or {}).items():
        p = Path(rel) if Path(rel).is_absolute() else run.path / rel
        if p.is_file() and p.resolve().is_relative_to(run.path.resolve()):
            figures[key] = p
    return Result(figures, data, {"from": file, "mtime_ns": path.stat().st_mtime_ns})


def quality(run: Any, ctx: Context) -> Result | None:
    return _adopt(run, "quality.json")


def anomaly(run: Any, ctx: Context) -> Result | None:
    """``aelab anomaly``'s record when there is one; else, when the validation split is labelled
    normal (0) / anomalous (1) with both present, its scores, metrics and maps."""
    import numpy as np

    from aelab import anomaly as an

    found = _adopt(run, an.ANOMALY_JSON)
    if found is not None:
        return found
    data = run.val_data()
    labels = data.get_labels()
    if labels is None or set(np.unique(labels).tolist()) != {0, 1}:
        return None
    from aelab.errormaps import heatmaps
    from aelab.figures.anomaly import draw_maps

    scored = an.analyse(run, data, "mse")
    figures = draw_maps(scored, heatmaps(run, scored, top_k=5, sample=0), run.figures / "anomaly")
    numbers = {k: v for k, v in scored.numbers().items() if k in ("data", "kind", "n", "metrics")}
    return Result({k: Path(v) for k, v in figures.items()}, numbers, {"data": "validation split", "kind": "mse"})


ANALYSES: dict[str, Callable[[Any, Context], Result | None]] = {
    "architecture": architecture, "loss": loss, "reconstructions": reconstructions, "edits": edits,
    "traversal": traversal, "interpolation": interpolation, "samples": samples, "noise": noise,
    "quality": quality, "anomaly": anomaly}
"""Every analysis by its manifest name, in the order the report shows them."""


# -- the driver ----------------------------------------------------------------------------------------------------
def check_names(names: list[str] | None) -> list[str]:
    """``--only`` names, checked (``a,b`` and repeated options both work); None: all of them."""
    if not names:
        return list(ANALYSES)
    flat = [n.strip() for item in names for n in item.split(",") if n.strip()]
    for n in flat:
        if n not in ANALYSES:
            raise AelabError(f"no analysis '{n}'{closest(n, ANALYSES)}; analyses: {', '.join(ANALYSES)}")
    return [n for n in ANALYSES if n in flat]


def analyse_run(run: Any, names: list[str] | None = None, *, runs: list[Any] | None = None, redo: bool = False,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run and record the analyses ``names`` (default: all) that ``run`` lacks; ``redo`` runs them anyway.

    ``runs``: the runs analysed together (the same-noise partner is chosen among them). Returns what was
    recorded, what was already there, what does not apply and what failed (with the reason): an analysis
    that fails with a user-fixable error is reported and the others still run."""
    say = log or (lambda _line: None)
    ctx = Context(runs if runs is not None else [run])
    out: dict[str, Any] = {"recorded": [], "kept": [], "not_applicable": [], "failed": {}}
    for name in check_names(names):
        if not redo and manifest.current(run.path, name):
            out["kept"].append(name)
            continue
        try:
            result = ANALYSES[name](run, ctx)
        except (AelabError, ValueError, RuntimeError) as exc:
            out["failed"][name] = f"{type(exc).__name__}: {exc}"
            say(f"{run.path}: {name} failed ({exc})")
            continue
        if result is None:
            out["not_applicable"].append(name)
            continue
        manifest.record(run.path, name, figures=result.figures, numbers=result.numbers, params=result.params)
        out["recorded"].append(name)
        say(f"{run.path}: {name}" + (f" -> {', '.join(str(p) for p in result.figures.values())}"
                                     if result.figures else ""))
    return out


def sweep_figures(path: str | Path, redo: bool = True) -> dict[str, str]:
    """The sweep folder's ``losses.png`` and, when its runs differ in code size, ``latent.png``
    (``redo=False``: only those missing)."""
    from aelab import sweep as sw
    from aelab.figures.sweep import latent_figure, losses_figure
    from aelab.sweepfile import load_sweep_dir
    from aelab.sweeptable import sweep_table

    path = Path(path)
    sweep = load_sweep_dir(path)
    done = sw.finished(path, sweep)
    files: dict[str, str] = {}
    if not done:
        return files
    if redo or not (path / sw.LOSSES).is_file():
        curves, measure = sw.training_curves(path, done)
        losses_figure(curves, path / sw.LOSSES, title=f"{sweep.name}: training", ylabel=measure)
    files["losses"] = str(path / sw.LOSSES)
    rows = sweep_table(path, sweep)
    if len({r["latent_size"] for r in rows}) > 1:
        if redo or not (path / sw.LATENT).is_file():
            latent_figure(sw.latent_series(rows, sweep), path / sw.LATENT, title=f"{sweep.name}: code size",
                          input_size=sw.input_elements(path, done))
        files["latent"] = str(path / sw.LATENT)
    return files


def after_sweep(out: str | Path) -> dict[str, str]:
    """What ``aelab sweep`` draws once its runs are trained: each finished run's loss curve (where not yet
    recorded, as ``aelab train`` draws it) and the sweep's own figures. Nothing when ``out`` is no sweep."""
    from aelab.run import load_run
    from aelab.sweep import finished
    from aelab.sweepfile import is_sweep, load_sweep_dir

    out = Path(out)
    if not is_sweep(out):
        return {}
    for v in finished(out, load_sweep_dir(out)):
        if manifest.entry(out / v.name, "loss") is None:
            analyse_run(load_run(out / v.name), ["loss"])
    return sweep_figures(out)


def analyse(targets: list[str | Path] | str | Path, only: list[str] | None = None, *, redo: bool = False,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``aelab analyse``: every run folder in ``targets`` (a sweep folder: its finished runs and its
    figures), brought up to what the report shows. Returns per run what happened (``analyse_run``)."""
    from aelab.run import load_run
    from aelab.sweepfile import is_sweep, load_sweep_dir

    started = time.perf_counter()
    targets = [targets] if isinstance(targets, str | Path) else list(targets)
    if not targets:
        raise AelabError("no run or sweep folder given")
    names = check_names(only)
    paths: list[Path] = []
    sweeps: dict[str, dict[str, str]] = {}
    for t in map(Path, targets):
        if is_sweep(t):
            sweep = load_sweep_dir(t)
            paths += [t / v.name for v in sweep.variants if (t / v.name / SUMMARY).is_file()]
            sweeps[str(t)] = sweep_figures(t, redo=redo)
        else:
            paths.append(t)  # load_run names what is wrong with anything else
    seen: set[Path] = set()
    runs = []
    for p in paths:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            runs.append(load_run(p))
    result = {str(r.path): analyse_run(r, names, runs=runs, redo=redo, log=log) for r in runs}
    return {"runs": result, "sweeps": sweeps, "wall_time_s": round(time.perf_counter() - started, 2)}
