"""Generation commands: sample, augment, compare-noise."""

from __future__ import annotations

from pathlib import Path

import typer

from aelab.cli.common import ID_BASE, JSON, WEIGHTS, app, console, print_json, table

SEED = typer.Option(0, "--seed", help="Seed of the noise stream (same seed, same output).")
IDS = typer.Option(..., "--ids", help="Image ids (rows of the data source, from 0 unless --id-base 1), "
                                    "e.g. 1-5,226-230.")
VARIANTS = typer.Option(5, "--variants", help="Noisy variants per image.")
SIGMA = typer.Option(0.5, "--sigma", help="Standard deviation of the noise added to each code element.")
MODE = typer.Option("fixed", "--mode", help="fixed: code + sigma·noise; posterior (VAE): a draw from its posterior.")


@app.command()
def sample(
    run: Path = typer.Argument(..., help="Run folder."),
    n: int = typer.Option(64, "-n", help="Number of samples."),
    temperature: float = typer.Option(1.0, "--temperature", help="Scale of the spread around the mean."),
    seed: int = SEED,
    fit: str = typer.Option("auto", "--fit", help="auto (VAE: prior, else gaussian), prior, gaussian or gmm."),
    components: int = typer.Option(5, "--components", help="Mixture components for --fit gmm."),
    out: Path = typer.Option(..., "--out", help="Figure to write (.png)."),
    save: Path = typer.Option(None, "--save", help="Also write the samples to this .npz (images, codes)."),
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Decode codes drawn from a VAE's prior, or from a Gaussian fitted to an autoencoder's codes."""
    from aelab.figures.generate import samples_figure
    from aelab.generate import sample as draw
    from aelab.quality import sharpness
    from aelab.run import load_run

    r = load_run(run, weights=weights)
    s = draw(r, n, seed, temperature, fit, components)  # type: ignore[arg-type]
    result = {"figure": str(samples_figure(s, out, r.name)), "run": str(r.path), **s.numbers(),
              "sharpness": float(sharpness(s.images).mean())}
    if save:
        result["saved"] = str(s.save(save))
    if as_json:
        print_json(result)
    else:
        console.print(f"wrote {out}: {n} samples from {result['drawn_from']}" + (f"; and {save}" if save else ""),
                      markup=False)


@app.command()
def augment(
    run: Path = typer.Argument(..., help="Run folder."),
    ids: str = IDS,
    variants: int = VARIANTS,
    sigma: float = SIGMA,
    seed: int = SEED,
    mode: str = MODE,
    id_base: int = ID_BASE,
    data: str = typer.Option(None, "--data", help="Data source the ids refer to (default: the run's own source)."),
    out: Path = typer.Option(..., "--out", help="aug.npz to write (with --format npy: <stem>_data.npy, ...)."),
    fmt: str = typer.Option("npz", "--format", help="npz (one file, loads as npz:FILE) or npy (data/label files)."),
    layout: str = typer.Option(None, "--layout", help="nhwc (channels last) or nchw (channels first); default: "
                               "the source's own (an N×3×50×50 .npy gives nchw)."),
    dtype: str = typer.Option(None, "--dtype", help="uint8 (0-255), float32 or float64 (0-1); default: the "
                              "source's own."),
    order: str = typer.Option("image", "--order", help="image: each image's variants together; round: the first "
                              "variant of every image, then the second, ..."),
    figure: Path = typer.Option(None, "--figure", help="Also draw each original beside its variants (.png)."),
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Noisy-code variants of chosen images, saved as data (and labels) for augmentation."""
    from aelab.codenoise import augment as run_augment
    from aelab.codenoise import select
    from aelab.data.ids import format_ids
    from aelab.errors import AelabError
    from aelab.figures.generate import augment_figure
    from aelab.run import load_run

    if fmt not in ("npz", "npy"):
        raise AelabError(f"--format '{fmt}' is not npz or npy")
    r = load_run(run, weights=weights)
    aug = run_augment(r, select(r, ids, data, id_base), variants, sigma, seed, mode,  # type: ignore[arg-type]
                      id_base=id_base)
    converted = aug.output(layout, dtype, order)  # type: ignore[arg-type]
    written = aug.save(out, fmt, order=order, output=converted)  # type: ignore[arg-type]
    images, _, written_as = converted
    if figure:
        augment_figure(aug, figure, title=r.name)
    result = {"run": str(run), "files": [str(p) for p in written], "images": list(images.shape),
              **written_as.to_dict(), "order": order, "source_format": aug.source_format.to_dict(),
              "labels": aug.labels is not None, "source_ids": list(dict.fromkeys(aug.source_ids.tolist())),
              "id_base": id_base,
              "variants": variants, "sigma": aug.sigma, "mode": aug.mode, "seed": seed,
              "figure": str(figure) if figure else None}
    if as_json:
        print_json(result)
    else:
        shape = "×".join(map(str, images.shape))
        lo, hi = written_as.range
        console.print(f"wrote {', '.join(result['files'])}: {shape} {written_as.dtype} images in [{lo:g}, {hi:g}] "
                      f"({written_as.layout}, {order} order; "
                      f"{len(result['source_ids'])} sources × {variants} variants; ids "
                      f"{format_ids(result['source_ids'])}, counted from {id_base})"
                      + ("" if aug.labels is not None else "; the source has no labels")
                      + (f"; figure {figure}" if figure else ""), markup=False)


@app.command("compare-noise")
def compare_noise(
    run_a: Path = typer.Argument(..., help="Run folder A."),
    run_b: Path = typer.Argument(..., help="Run folder B."),
    ids: str = IDS,
    variants: int = VARIANTS,
    sigma: float = SIGMA,
    seed: int = SEED,
    mode: str = MODE,
    id_base: int = ID_BASE,
    data: str = typer.Option(None, "--data", help="Data source the ids refer to (default: run A's own source)."),
    out: Path = typer.Option(..., "--out", help="Figure to write (.png)."),
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """The same noise through two models: original, A's variants, B's variants, per image."""
    from aelab.codenoise import compare_noise as same_noise
    from aelab.codenoise import select
    from aelab.data.ids import format_ids
    from aelab.figures.generate import same_noise_figure
    from aelab.run import load_run

    ra, rb = load_run(run_a, weights=weights), load_run(run_b, weights=weights)
    aug_a, aug_b, numbers = same_noise(ra, rb, select(ra, ids, data, id_base), variants, sigma, seed,
                                       mode, id_base)  # type: ignore[arg-type]
    result = {"figure": str(same_noise_figure(aug_a, aug_b, numbers, out)), **numbers}
    if as_json:
        print_json(result)
        return
    rows = [{"model": f"{k.upper()}: {result[k]['name']} ({result[k]['family']})", "code": result[k]["code_size"],
             "MSE [0,1]": result[k]["mse"], "PSNR (dB)": result[k]["psnr"], "SSIM": result[k]["ssim"],
             "diversity": result[k]["diversity"], "code RMS": result[k]["code_rms"]} for k in ("a", "b")]
    table(rows, title=f"same noise (seed {seed}, {result['mode']}, sigma {sigma:g}): {variants} variants of "
                      f"{len(result['ids'])} images vs the original")
    console.print(f"ids {format_ids(result['ids'])} (counted from {id_base})", markup=False)
    console.print(f"wrote {out}; noise: {result['noise']}", markup=False)
