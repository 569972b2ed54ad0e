"""Running a sweep: every run of a sweep file (``aelab.sweepfile``) trained into its own Run folder.

Finished runs are skipped, interrupted ones resumed from their checkpoint, so running the same
sweep again completes it. The sweep folder then holds ``sweep.yaml`` (what was run),
``table.csv``/``table.md`` (one row per run, ``aelab.sweeptable``); ``aelab sweep`` (through
``aelab.analyse.sweep_figures``) adds ``losses.png`` and, when the runs differ in code size,
``latent.png``, drawn by ``aelab.figures.sweep`` from what this module reads out of the runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aelab.config import Config, config_from_dict
from aelab.errors import AelabError
from aelab.io import atomic_write
from aelab.runfolder import CONFIG, METRICS, RUN, SUMMARY, TEMP_FILES, FolderKind, open_folder
from aelab.runfolder import state as folder_state
from aelab.sweepfile import SWEEP_FILE, Sweep, Variant, label, load_sweep
from aelab.sweeptable import TABLE_CSV, TABLE_MD, sweep_table, write_outputs
from aelab.tables import to_pandas

LOSSES, LATENT = "losses.png", "latent.png"
SWEEP_FOLDER = FolderKind("sweep folder", (SWEEP_FILE, "*/"),
                          (SWEEP_FILE, TABLE_CSV, TABLE_MD, LOSSES, LATENT, TEMP_FILES), (("*", RUN),))
"""A sweep folder: its own files and one Run folder per run (what ``--out`` may already hold to resume;
runs trained into it beforehand are reused)."""

# Keys that set the code size: the latent study draws one line per setting of everything else.
LATENT_KEYS = {"model.latent_dim", "model.channels", "model.hidden", "model.encoders"}


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


# headers carry their units (aelab.logunits): the loss is each run's objective, the MSEs are on [0, 1]


# -- what the figures are drawn from ---------------------------------------------------------------------------------
def finished(out: str | Path, sweep: Sweep) -> list[Variant]:
    """The variants whose run folder holds a finished run."""
    return [v for v in sweep.variants if (Path(out) / v.name / SUMMARY).exists()]


def loss_curves(out: str | Path, variants: list[Variant], key: str = "mse_01") -> list[tuple[str, Any, Any]]:
    """Per run, in sweep order: its legend label, and the iteration and ``key`` of every logged step:
    ``mse_01`` (reconstruction MSE per pixel on [0, 1], comparable across runs; empty for an older run
    whose log cannot give it, see ``logunits.upgrade_log``) or ``loss`` (each run's own objective)."""
    import numpy as np

    from aelab.checkpoint import metrics_log

    curves = []
    for v in variants:
        folder = Path(out) / v.name
        records = metrics_log(folder / METRICS, yaml.safe_load((folder / CONFIG).read_text()) or {})
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


def input_elements(out: str | Path, variants: list[Variant]) -> int | None:
    """Values per model input shared by the finished ``variants`` (each summary's ``input_shape``), or None
    when they differ (runs on different inputs): what the code-size figure's compression axis divides."""
    import math

    sizes = {math.prod(json.loads((Path(out) / v.name / SUMMARY).read_text())["input_shape"]) for v in variants}
    return sizes.pop() if len(sizes) == 1 else None


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
