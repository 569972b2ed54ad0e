"""The study as one self-contained HTML file: every figure embedded, nothing fetched to view it.

The report only reads. Per run it shows the summary, config and loss numbers the
run folder holds, and the figures and numbers ``aelab analyse`` recorded in the
run's manifest (``RUN/analyses.json``): the architecture picture and layer table,
the loss curve, reconstructions, latent edits, traversal and interpolation,
samples and the same-noise comparison for a VAE, sample quality and anomaly
results when they were measured, and the model cards. A sweep folder comes first
with its comparison table and figures, then its runs. Nothing is computed and
nothing but the report itself is written; a run lacking analyses says which
command adds them (``result["hints"]``).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from aelab.errors import AelabError, RunError
from aelab.io import atomic_write
from aelab.report.html import esc, slug, template, toc
from aelab.report.sections import analyse_command, discussion, overview, read_run, run_section, sweep_section
from aelab.runfolder import CONFIG, SUMMARY


@dataclass
class Report:
    """What is being put together: sections in order, and what happened on the way."""

    sections: list[tuple[str, str, str, int]] = field(default_factory=list)  # (id, title, html, level)
    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # per run or sweep: what it lacks and what to run
    to_analyse: dict[str, bool] = field(default_factory=dict)  # folder -> whether it needs --redo
    contents: dict[str, list[str]] = field(default_factory=dict)  # run path -> parts shown

    def add(self, sid: str, title: str, body: str, level: int = 2) -> None:
        self.sections.append((sid, title, body, level))


def _meta(n_runs: int, n_sweeps: int) -> str:
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sweeps = f" in {n_sweeps} sweep{'s' if n_sweeps != 1 else ''}" if n_sweeps else ""
    return f"{n_runs} run{'s' if n_runs != 1 else ''}{sweeps} · generated {when}"


def build_report(targets: list[str | Path] | str | Path, out: str | Path, *, title: str | None = None,
                 pdf: bool | str | Path = False) -> dict[str, Any]:
    """Write one self-contained HTML report over Run folders and sweep folders (it reads them only).

    ``pdf`` also renders the page to PDF (True: next to ``out``) with headless Chromium. The result's
    ``hints`` say what each run or sweep lacks, and ``analyse`` the one command that completes them all."""
    from aelab.sweepfile import is_sweep

    started = time.perf_counter()
    targets = [targets] if isinstance(targets, str | Path) else list(targets)
    if not targets:
        raise AelabError("no run or sweep folder given")
    report = Report()
    sweeps: list[tuple[Path, str, list[Path]]] = []
    order: list[Path] = []
    for t in map(Path, targets):
        if is_sweep(t):
            body, finished = sweep_section(t, report)
            sweeps.append((t, body, finished))
            order += finished
        elif (t / SUMMARY).is_file():
            order.append(t)
        elif t.is_dir() and (t / CONFIG).is_file():
            raise RunError(f"{t}: not a finished run (no summary.json); finish it with `aelab train {t / CONFIG}"
                           f" --out {t} --resume`")
        else:
            raise AelabError(f"{t}: not a run folder (no summary.json) or a sweep folder (no sweep.yaml)")
    by_path: dict[Path, Any] = {}
    for p in order:
        if p.resolve() not in by_path:
            by_path[p.resolve()] = read_run(p)
    runs = list(by_path.values())

    if len(runs) > 1 and not (len(sweeps) == 1 and len(targets) == 1):
        report.add("overview", "Runs compared", overview(runs))
    disc = discussion(runs)
    if disc:
        report.add("discussion", "Variants against the vanilla autoencoder", disc)
    done: set[Path] = set()
    for path, body, finished in sweeps:
        report.add(f"sweep-{slug(str(path))}", f"Sweep: {path.name}", body)
        for p in finished:
            run = by_path[p.resolve()]
            if p.resolve() not in done:
                done.add(p.resolve())
                report.add(slug(str(run.path)), f"{path.name} / {run.name}", run_section(run, report), 3)
    for key, run in by_path.items():
        if key not in done:
            done.add(key)
            report.add(slug(str(run.path)), f"Run: {run.name}", run_section(run, report), 2)

    import aelab

    title = title or ("aelab report: " + ", ".join(Path(t).name for t in targets))
    body = "".join(f'<section class="{"run" if level >= 2 and not sid.startswith(("overview", "discussion")) else ""}'
                   f' level{level}" id="{esc(sid)}"><h{level}>{esc(t)}</h{level}>{b}</section>'
                   for sid, t, b, level in report.sections)
    page = Template(template("report.html")).safe_substitute(
        title=esc(title), css=template("report.css"), toc=toc(report.sections), body=body,
        meta=esc(_meta(len(runs), len(sweeps))),
        footer=esc(f"aelab {aelab.__version__} · every image is embedded; this file needs no network to view"))
    out = Path(out)
    atomic_write(out, page)
    result: dict[str, Any] = {
        "report": str(out), "bytes": out.stat().st_size, "images": page.count("<img "),
        "runs": [str(r.path) for r in runs], "sweeps": [str(p) for p, _, _ in sweeps],
        "sections": report.contents, "warnings": report.warnings, "hints": report.hints,
        "analyse": analyse_command(report.to_analyse),
        "wall_time_s": round(time.perf_counter() - started, 2)}
    if pdf:
        from aelab.report.browser import render_pdf

        target = out.with_suffix(".pdf") if pdf is True else Path(pdf)
        result["pdf"] = str(render_pdf(out, target))
    return result
