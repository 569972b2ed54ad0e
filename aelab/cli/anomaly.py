"""Anomaly commands: ``score`` (rank images by reconstruction) and ``oneclass`` (the one-class protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aelab.cli.common import DATA, ID_BASE, JSON, SET, WEIGHTS, app, console, fmt, print_json, table

KIND = typer.Option("mse", "--score", help="Score kind: mse, l2, l1, ssim, elbo (VAE), latent, knn, combined "
                    "or normalised.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


@app.command("score")
def score_cmd(
    run: Path = typer.Argument(..., help="Run folder."),
    data: str = DATA,
    labels: str = typer.Option(None, "--labels", help="A .npy of labels for --data (1 = anomalous, 0 = normal)."),
    kind: str = KIND,
    out: Path = typer.Option(..., "--out", help="Scores CSV to write (header ID,score; higher = more anomalous)."),
    maps: Path = typer.Option(None, "--maps", help="Folder for error heat maps, the score histogram and the ROC."),
    top_k: int = typer.Option(8, "--top-k", min=0, help="Images in the --maps heat maps of the highest scores."),
    masks: str = typer.Option(None, "--masks", help="Defect masks (an image source, one per image; non-zero = "
                              "defect), or 'auto' for the data's own (builtin:faces): adds pixel AUROC and PRO, "
                              "and outlines on the heat maps."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per batch (default: the run's "
                                   "train.eval_batch_size)."),
    int8: bool = typer.Option(False, "--int8", help="Linear layers in int8 (CPU): 1.4-2× faster for fcn models, "
                              "scores within ~0.1%."),
    id_base: int = ID_BASE,
    quiet: bool = QUIET,
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Score every image by how badly the run reconstructs it; with labels, ROC AUC and friends."""
    import torch

    from aelab import distributed
    from aelab.anomaly import analyse, record
    from aelab.errormaps import heatmaps
    from aelab.figures.anomaly import draw_maps
    from aelab.run import load_run

    # Launched by torchrun, every process scores a shard; rank 0 alone writes the CSV, maps and report.
    d = distributed.setup(torch.device("cpu"))
    try:
        r = load_run(run, weights=weights)
        res = analyse(r, data, kind, labels=labels, csv=out if d.main else None, batch_size=batch_size,
                      progress=not (quiet or as_json), int8=int8, id_base=id_base)
        grid = None
        if d.main and masks is not None:
            from aelab.pixel import analyse_pixels, masks_for

            pixel = analyse_pixels(r, res.images, masks_for(masks, res.images))
            res.pixel, grid = pixel.numbers(), pixel.masks
        if d.main and maps is not None:
            res.figures = draw_maps(res, heatmaps(r, res, top_k=top_k, masks=grid), maps)
        if d.main and res.metrics is not None:
            record(r, res)
    finally:
        distributed.teardown(d)
    if not d.main:
        return
    result = res.numbers()
    if as_json:
        print_json(result)
        return
    console.print(f"wrote {result['csv']}  ({result['n']:,} images, ids from {id_base}, {kind} score, "
                  f"{result['images_per_s']:,.0f} images/s)")
    if "metrics" in result:
        _print_metrics(result["metrics"])
    if "pixel" in result:
        p = result["pixel"]
        console.print(f"pixel AUROC {fmt(p['pixel_auroc'])}, PRO {fmt(p['pro'])} (FPR up to {p['max_fpr']}; "
                      f"{p['n_with_defects']} of {p['n_images']} images with defects)")
    for name, path in result.get("figures", {}).items():
        console.print(f"{name}: {path}")


def _print_metrics(m: dict[str, Any]) -> None:
    keys = ["n", "n_anomalous", "roc_auc", "pr_auc", "best_f1", "threshold", "precision", "recall",
            "tpr_at_5pct_fpr"]
    table([{"metric": k, "value": m.get(k)} for k in keys], columns=["metric", "value"])
    for key, why in m.get("undefined", {}).items():
        console.print(f"{key}: undefined, {why}")


@app.command("oneclass")
def oneclass_cmd(
    config: Path = typer.Argument(..., help="Config YAML (e.g. configs/oneclass.yaml)."),
    data: str = typer.Option(None, "--data", help="Labelled data source (default: the config's data.source)."),
    normal: str = typer.Option("all", "--normal", help="Normal class(es), e.g. 3 or 0,1,2 or 0-9 (default: all); "
                               "one run per class."),
    kind: str = KIND,
    out: Path = typer.Option(None, "--out", help="Folder for the runs (default: runs/oneclass-<name>). "
                         "Created if absent (its parent must exist); a folder holding anything else is refused."),
    overrides: list[str] = SET,
    test_fraction: float = typer.Option(0.5, "--test-fraction", help="Share of each class held out for testing "
                                        "when the source has no test split."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of that per-class split."),
    force: bool = typer.Option(False, "--force", help="Retrain class runs even when a finished one matches."),
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Train on the normal class only, score the test images (other labels = anomalies); AUROC per class."""
    from aelab.oneclass import oneclass

    result = oneclass(config, data, normal, out=out, kind=kind, overrides=overrides, test_fraction=test_fraction,
                      split_seed=split_seed, force=force, progress=not (quiet or as_json))
    from aelab.analyse import analyse_run
    from aelab.run import load_run

    for done in sorted(Path(result["out"]).glob("*/summary.json")):  # each class run's loss curve, as `train` draws
        analyse_run(load_run(done.parent), ["loss"])
    if as_json:
        print_json(result)
        return
    rows = [{k: r[k] for k in ("normal", "class", "n_train", "n_test", "n_anomalous", "roc_auc", "pr_auc",
                               "train_s")} for r in result["rows"]]
    table(rows, title=f"one-class {kind} scores: {result['data']} ({result['split']})")
    console.print(f"mean ROC AUC [bold]{result['mean_roc_auc']:.4f}[/bold] over {len(rows)} class(es); "
                  f"runs in {result['out']}")
