"""Experiment commands: models (the cards), sweep (grids of runs), analyse (what the report shows), report
(the HTML study, which only reads)."""

from __future__ import annotations

from pathlib import Path

import typer

from aelab.cli.common import JSON, SET, app, console, err_console, print_json, table


@app.command()
def models(
    name: str = typer.Argument(None, help="A card to show in full, e.g. vae, conv, denoising, beta-vae."),
    as_json: bool = JSON,
) -> None:
    """The model cards: what each family is, its loss, its trade-off against the vanilla autoencoder, its paper."""
    from aelab.cards import card, load_cards

    if name is None:
        cards = list(load_cards().values())
        if as_json:
            print_json([c.to_dict() for c in cards])
            return
        table([{"card": c.id, "kind": c.kind, "what": c.title, "reference": c.short_ref} for c in cards],
              title="model cards (aelab models NAME for one)")
        return
    c = card(name)
    if as_json:
        print_json(c.to_dict())
        return
    from rich.markup import escape

    console.print(f"[bold]{escape(c.title)}[/bold]  ({c.kind}: {escape(c.applies)})\n")
    for label, text in (("What it is", c.what), ("Loss", c.loss), ("Advantage over the vanilla AE", c.advantage),
                        ("Disadvantage", c.disadvantage)):
        console.print(f"[bold]{label}[/bold]\n{escape(text)}\n")
    console.print(f"[bold]Reference[/bold]\n{escape(c.citation)}\n{c.paper['url']}")
    if c.configs:
        console.print(f"\n[bold]Shipped configs[/bold]: {', '.join(f'configs/{n}.yaml' for n in c.configs)}")


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="Sweep YAML: a base config plus a grid and/or a list of variants."),
    out: Path = typer.Option(..., "--out", help="Sweep folder: one Run folder per run, table.csv/.md, "
                          "losses.png. Created if absent (its parent must exist); a folder holding anything "
                          "else is refused."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs trained at once (threads split: cores // jobs each)."),
    overrides: list[str] = SET,
    force: bool = typer.Option(False, "--force", help="Retrain runs whose folder holds another config (never "
                               "replaces a folder holding files aelab did not write)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = JSON,
) -> None:
    """Train every run of a sweep (finished runs are skipped, so a stopped sweep resumes) and tabulate them."""
    from aelab import run_sweep  # the facade: trains, then draws the runs' loss curves and the sweep's figures
    from aelab.sweepfile import load_sweep
    from aelab.sweeptable import MD_HEADERS, format_cell

    s = load_sweep(spec, overrides)
    log = None if as_json else console.print
    if log:
        log(f"sweep {s.name}: {len(s.variants)} runs into {out}" + (f", {jobs} at a time" if jobs > 1 else ""))
    result = run_sweep(s, out, jobs=jobs, force=force, progress=not (quiet or as_json) and jobs == 1, log=log)
    if as_json:
        print_json(result.to_dict())
        return
    if result.rows:
        skip = {"latent_size", "compression", "family", "epochs", "evaluated_on"}
        cols = [c for c in result.rows[0] if c not in skip or (c == "latent_size" and "latent" in result.files)]
        table([{MD_HEADERS.get(c, c): format_cell(c, r.get(c)) for c in cols}
               for r in result.rows], title=f"sweep {s.name}")
    for key, path in result.files.items():
        console.print(f"{key}: {path}")


@app.command()
def analyse(
    targets: list[Path] = typer.Argument(..., help="Run folders and/or sweep folders."),
    only: list[str] = typer.Option(None, "--only", help="Only these analyses (comma-separated or repeated): "
                                   "architecture, loss, reconstructions, edits, traversal, interpolation, "
                                   "samples, noise, quality, anomaly."),
    redo: bool = typer.Option(False, "--redo", help="Run them again even where they are recorded."),
    as_json: bool = JSON,
) -> None:
    """Run what the report shows and the runs lack, recording each in RUN/analyses.json (then `aelab report`)."""
    from aelab.analyse import analyse as run_analyses

    result = run_analyses(targets, only, redo=redo, log=None if as_json else console.print)
    if as_json:
        print_json(result)
        return
    for path, done in result["runs"].items():
        line = f"{path}: recorded {', '.join(done['recorded']) or 'nothing new'}"
        if done["kept"]:
            line += f"; already there: {', '.join(done['kept'])}"
        console.print(line)
        for name, why in done["failed"].items():
            console.print(f"[yellow]note:[/yellow] {path}: {name} failed ({why})")
    for path, files in result["sweeps"].items():
        console.print(f"{path}: {', '.join(files.values()) or 'no finished runs'}")


@app.command()
def report(
    targets: list[Path] = typer.Argument(..., help="Run folders and/or sweep folders."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    title: str = typer.Option(None, "--title", help="Page title (default: from the folder names)."),
    pdf: bool = typer.Option(False, "--pdf", help="Also render it to PDF (next to --out) with headless Chromium."),
    no_generate: bool = typer.Option(False, "--no-generate", hidden=True, help="No effect: the report never draws."),
    as_json: bool = JSON,
) -> None:
    """One self-contained HTML study of runs and sweeps: figures embedded, no network needed to view it.

    It only reads what the folders hold; run `aelab analyse` first for the figures."""
    from aelab.report import build_report

    if pdf:
        from aelab.report.browser import require_playwright

        require_playwright()
    result = build_report(targets, out, title=title, pdf=pdf)
    if result["analyse"]:
        err_console.print(f"aelab: note: {len(result['hints'])} of the folders lack analyses the report shows; "
                          f"run `{result['analyse']}`, then the report again", soft_wrap=True, markup=False,
                          highlight=False)
    if as_json:
        print_json(result)
        return
    for line in result["warnings"]:
        console.print(f"[yellow]note:[/yellow] {line}")
    console.print(f"report: {result['report']}  ({len(result['runs'])} runs, {result['images']} figures, "
                  f"{result['bytes'] / 1e6:.1f} MB, {result['wall_time_s']:.1f} s)")
    if "pdf" in result:
        console.print(f"pdf: {result['pdf']}")
