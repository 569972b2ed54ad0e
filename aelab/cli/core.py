"""Core commands: train, info, evaluate, reconstruct, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from aelab.cli.common import DATA, ID_BASE, JSON, SET, WEIGHTS, app, console, print_json, table
from aelab.errors import AelabError


@app.command()
def train(
    config: Path = typer.Argument(..., help="Config YAML."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/<name>). Created if absent; its parent "
                             "must exist."),
    overrides: list[str] = SET,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace the run folder's run (finished or not); a folder "
                               "holding anything aelab did not write is refused."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no per-epoch lines."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for torch (train.threads; default: "
                                "all cores). Give each of several jobs sharing a machine its part of the cores."),
    as_json: bool = JSON,
) -> None:
    """Train a model from CONFIG into a Run folder; a line per epoch on stderr (a progress bar in a terminal)."""
    from aelab import train as train_run

    if threads:
        overrides = [*(overrides or []), f"train.threads={threads}"]
    try:
        run = train_run(config, out, overrides=overrides, resume=resume, force=force,
                        progress=not (quiet or as_json))  # the facade: trains, then draws figures/loss.png
    except KeyboardInterrupt as exc:  # Typer would exit 130 silently: say where it stopped and how to resume
        print(f"aelab: {exc or 'interrupted'}", file=sys.stderr)
        raise typer.Exit(130) from None
    if run is None:  # a rank above 0 of a torchrun job: rank 0 reports
        return
    if as_json:
        print_json({"run": str(run.path), **run.summary})
        return
    from aelab.logunits import labelled, legend, objective_label

    s = run.summary
    rows = {"run": str(run.path), "model": s["family"], "parameters": s["parameters"], **labelled(s),
            "time (s)": s["wall_time_s"], "img/s": s["images_per_s"]}
    table([{"quantity": k, "value": v} for k, v in rows.items()], columns=["quantity", "value"])
    objective = objective_label(run.config.train.loss, run.config.data.range, run.variational)
    console.print(legend(objective, s.get("evaluated_on", "val")), markup=False, highlight=False)


@app.command()
def info(
    target: Path = typer.Argument(..., help="A config YAML or a Run folder."),
    overrides: list[str] = SET,
    input_shape: str = typer.Option(None, "--input-shape", help="H×W×C to describe the model for, e.g. 64x64x3 "
                                    "(default: the data's)."),
    diagram: Path = typer.Option(None, "--diagram", help="Draw the architecture to this .png, .svg or .pdf."),
    as_json: bool = JSON,
) -> None:
    """Layer table, parameter count, code shape, the architecture graph (--json) and its picture."""
    from aelab.figures.info import diagram as draw
    from aelab.info import model_for, summary

    model, cfg = model_for(target, overrides, input_shape)
    s = {"name": cfg.name, **summary(model, cfg)}
    if diagram:
        draw(s, diagram, title=f"{cfg.name} ({s['family']}): {s['parameters']:,} parameters")
        s["diagram"] = str(diagram)
    if as_json:
        print_json(s)
        return
    table([{"layer": r["name"], "type": r["type"], "output": "×".join(map(str, r["output_shape"])),
            "parameters": r["parameters"]} for r in s["layers"]], title=f"{cfg.name} ({s['family']})")
    console.print(f"input {s['input_shape']}  code {s['latent_shape']} ({s['latent_size']} elements, "
                  f"compression {s['compression_ratio']:g}×)  parameters [bold]{s['parameters']:,}[/bold]")
    if diagram:
        console.print(f"diagram: {diagram}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder."),
    data: str = DATA,
    labels: str = typer.Option(None, "--labels", help="A .npy of labels for --data."),
    quality: bool = typer.Option(None, "--quality/--no-quality", help="Also score generated samples: Fréchet "
                                 "distance and sharpness vs held-out images (default: on for VAE runs)."),
    quality_n: int = typer.Option(1000, "--quality-n", help="Samples and held-out images for --quality."),
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """MSE, PSNR and SSIM of reconstructions (images in [0, 1]); for generative runs, sample quality."""
    from aelab.run import load_run

    if labels and not data:
        raise AelabError(f"--labels {labels} labels the images of --data; give --data too")
    r = load_run(run, weights=weights)
    images = r.data(data, labels) if data else r.val_data()
    result = {"run": str(run), "data": images.name if data else f"{r.summary.get('evaluated_on', 'val')} split",
              **r.evaluate(images)}
    if quality if quality is not None else r.variational:
        from aelab.quality import generation_quality

        result["quality"] = generation_quality(r, n=quality_n, progress=not as_json)
    if as_json:
        print_json(result)
    else:
        q = result.pop("quality", None)
        labels = {"mse": "MSE [0,1]", "psnr": "PSNR (dB)", "ssim": "SSIM", "n": "images"}
        table([{labels.get(k, k): v for k, v in result.items()}])
        if q:
            from aelab.quality import quality_rows

            table(quality_rows(q), title=f"sample quality: {q['n']} images each, Fréchet distance in aelab's "
                                         f"feature net (see {run}/quality.json)")


@app.command()
def reconstruct(
    run: Path = typer.Argument(..., help="Run folder."),
    ids: str = typer.Option(None, "--ids", help="Image ids, e.g. 0,5,9 or 0-7 (default: the first 8)."),
    id_base: int = ID_BASE,
    data: str = DATA,
    out: Path = typer.Option(..., "--out", help="Figure to write (.png)."),
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Originals above their reconstructions, each titled with its PSNR."""
    from aelab.data.ids import check_base, format_ids, from_rows, parse_ids
    from aelab.figures.run import reconstruction_figure
    from aelab.run import load_run, reconstructions

    wanted = parse_ids(ids if ids is not None else f"{check_base(id_base)}-{id_base + 7}")
    r = load_run(run, weights=weights)
    pool = r.data(data)
    rec = reconstructions(r, pool.by_ids(wanted if ids is not None else wanted[:len(pool)], id_base))
    shown = from_rows(rec.ids, id_base).tolist()
    reconstruction_figure(rec.originals, rec.reconstructions, out, ids=shown, psnr=rec.psnr,
                          ssim=rec.ssim, title=f"{r.name}: reconstructions")
    result = {"figure": str(out), **rec.numbers(), "ids": shown, "id_base": id_base}
    if as_json:
        print_json(result)
    else:
        console.print(f"wrote {out}: ids {format_ids(shown)} (counted from {id_base}), mean PSNR "
                      f"{sum(result['psnr']) / len(result['psnr']):.2f} dB")


@app.command()
def demo(
    out: Path = typer.Option(None, "--out", help="Folder for the demo's runs and figures (default: runs/demo). "
                             "Created if absent (its parent must exist); an earlier demo's folder is reused."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster demo (about 45 s)."),
    as_json: bool = JSON,
) -> None:
    """The main job: train a deep fcn AE and a conv VAE on builtin faces, compare them, draw everything."""
    from aelab.demo import run_demo
    from aelab.logunits import legend

    result = run_demo(out, quick=quick, progress=not as_json)
    if as_json:
        print_json(result)
        return
    table(result["table"], title="aelab demo: deep fcn autoencoder vs conv VAE on builtin:faces")
    console.print(legend("train.loss on data.range, + β·KL/D for the VAE"), markup=False, highlight=False)
    for line in result["outputs"]:
        console.print(line)
