"""Deploying a detector: ``predict`` (a saved threshold applied to new images) and ``export`` (ONNX / TorchScript)."""

from __future__ import annotations

from pathlib import Path

import typer

from aelab.cli.common import ID_BASE, JSON, app, console, print_json


@app.command("predict")
def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder holding a detector (detector.json: threshold and score kind)."),
    data: str = typer.Option(..., "--data", help="Images to label (a data source, e.g. npy:new.npy)."),
    out: Path = typer.Option(None, "--out", help="CSV to write: ID,score,label (1 = anomalous)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per batch."),
    id_base: int = ID_BASE,
    as_json: bool = JSON,
) -> None:
    """Label images normal (0) or anomalous (1) with the run's saved threshold; prints the counts."""
    from aelab.detector import predict_source

    result = predict_source(run, data, out, batch_size=batch_size, id_base=id_base).numbers()
    if as_json:
        print_json(result)
        return
    if result["csv"]:
        console.print(f"wrote {result['csv']} (ids from {id_base})")
    console.print(f"{result['n']:,} images: {result['n_anomalous']:,} anomalous, {result['n_normal']:,} normal "
                  f"({result['score']} score > {result['threshold']:.6g})")


@app.command("threshold")
def threshold_cmd(
    run: Path = typer.Argument(..., help="A trained Run folder."),
    kind: str = typer.Option("mse", "--score", help="Score kind: mse, l2, l1, ssim, elbo (VAE), latent, knn or "
                        "normalised (not combined)."),
    contamination: float = typer.Option(0.1, "--contamination", help="Share of outliers assumed in the run's "
                                        "data, in (0, 0.5]: the threshold is that top quantile of its scores."),
    fpr: float = typer.Option(None, "--fpr", help="Instead: the false-positive rate wanted on the run's held-out "
                              "validation split."),
    as_json: bool = JSON,
) -> None:
    """Give a trained run a detector threshold (RUN/detector.json), for `aelab predict`."""
    from aelab.detector import AutoencoderDetector, check_contamination, check_fpr, check_score_kind

    check_contamination(contamination)  # before loading the run
    check_fpr(fpr)
    check_score_kind(kind)
    det = AutoencoderDetector.from_run(run, score=kind, contamination=contamination, fpr=fpr)
    det.save(run)
    result = {"run": str(run), "score": kind, "threshold": det.threshold_, "rule": det.threshold_rule_,
              "n_flagged": int(det.labels_.sum()), "n": len(det.labels_)}
    if as_json:
        print_json(result)
        return
    console.print(f"{run}: threshold {det.threshold_:.6g} on the {kind} score ({result['n_flagged']:,} of "
                  f"{result['n']:,} of its images above it); `aelab predict {run} --data SOURCE` applies it")


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run folder."),
    fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    out: Path = typer.Option(..., "--out", help="Folder for the files (created, its last level only)."),
    part: list[str] = typer.Option(None, "--part", help="encoder, decoder, autoencoder or scorer (repeatable; "
                                   "default: all four)."),
    kind: str = typer.Option("mse", "--score", help="The scorer's score kind: mse, l2, l1, elbo (VAE) or latent."),
    as_json: bool = JSON,
) -> None:
    """Write the run's model as ONNX or TorchScript files with a dynamic batch axis, to use without aelab."""
    from aelab.export import check_format, check_parts

    check_format(fmt)  # before loading the run: a missing package or a typo is said at once
    parts = check_parts(part or None)
    from aelab.export import export
    from aelab.run import load_run

    result = export(load_run(run), out, fmt, list(parts), kind).numbers()
    if as_json:
        print_json(result)
        return
    for name, path in result["files"].items():
        console.print(f"{name}: {path}")
