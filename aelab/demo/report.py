"""``aelab demo``'s last step: record what its sections drew, analyse what is still missing, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aelab import manifest
from aelab.analyse import analyse_run
from aelab.report.build import build_report

CORE = ["architecture", "loss", "reconstructions"]
"""What the demo's own ``analyses`` section produces for each run before the latent and generation sections."""


def analyses(demo: Any) -> list[str]:
    """The architecture picture, loss curve and reconstructions of every demo run, recorded in its manifest."""
    runs = list(demo.runs.values())
    lines = []
    for run in runs:
        analyse_run(run, CORE, runs=runs)
        for name, path in ((n, p) for n in CORE for p in manifest.figure_paths(run.path, n).values()):
            lines.append(f"{name}: {path}")
    return lines


def _adopt(demo: Any) -> None:
    """Record the figures the demo's latent and generation sections drew (with their own choices: face id 0,
    the assignment's edits, the traversal's factors) so the report shows those rather than defaults.
    Whatever is not found in ``demo.result`` is left to ``aelab.analyse``."""
    latent = demo.result.get("latent") or {}
    generation = demo.result.get("generation") or {}
    for key, run in demo.runs.items():
        found = latent.get(key) or {}
        figs = [Path(f) for f in found.get("figures") or []]
        for name, path, numbers in zip(("edits", "traversal", "interpolation"), figs,
                                       ({"edits": found.get("edits")},
                                        {"elements": found.get("traversal"), "factors": found.get("factors")}, {}),
                                       strict=False):
            if path.is_file():
                manifest.record(run.path, name, figures={name: path}, numbers=numbers, params={"by": "aelab demo"})
        s = (generation.get("samples") or {}).get(key) or {}
        if s.get("figure") and Path(s["figure"]).is_file():
            manifest.record(run.path, "samples", figures={"samples": s["figure"]},
                            numbers={k: s[k] for k in ("n", "seed", "fit", "drawn_from", "sharpness",
                                                       "sharpness_real") if k in s},
                            params={"by": "aelab demo"})
    noise = generation.get("same_noise") or {}
    vae = demo.runs.get("vae")
    if vae is not None and noise.get("figure") and Path(noise["figure"]).is_file():
        manifest.record(vae.path, "noise", figures={"noise": noise["figure"]},
                        numbers={k: noise[k] for k in ("a", "b") if k in noise}, params={"by": "aelab demo"})


def report_section(demo: Any) -> list[str]:
    """The report over every demo run (the two main ones, then any other its sections trained, such as the
    anomaly model): the demo's main output. Runs ``aelab analyse`` first, so the report is complete."""
    from aelab.run import load_run

    _adopt(demo)
    runs = list(demo.runs.values())
    known = {r.path.resolve() for r in runs}
    extra = sorted(p.parent for p in demo.out.glob("*/summary.json") if p.parent.resolve() not in known)
    everyone = [*runs, *(load_run(p) for p in extra)]
    for run in everyone:
        analyse_run(run, runs=everyone)
    title = "aelab demo: " + " vs ".join(f"{r.name} ({r.model.family})" for r in runs) + " on builtin:faces"
    result = build_report([r.path for r in everyone], demo.out / "report.html", title=title)
    demo.result["report"] = {k: result[k] for k in ("report", "bytes", "images", "sections", "warnings", "hints")}
    return [f"report: {result['report']}"]
