"""``aelab edit``, ``aelab traverse``, ``aelab interpolate``: compute with ``aelab.latent``, draw with
``aelab.figures.latent``, print the result's ``to_dict()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aelab.cli.common import DATA, ID_BASE, JSON, WEIGHTS, app, console, print_json, table

RUN = typer.Argument(..., help="Run folder.")
OUT = typer.Option(..., "--out", help="Figure to write (.png, .svg or .pdf).")
ID = typer.Option(None, "--id", help="Image id in --data (default: the run's own data set), counted "
                                    "from --id-base (default: the first image).")
IMAGE = typer.Option(None, "--image", help="Use this image file instead: centre-cropped to the run's aspect ratio "
                                           "and resized to its image size, as the explorer's upload is.")


def _image(run: Any, image_id: int | None, id_base: int, data: str | None,
           image: Path | None) -> tuple[Any, dict[str, Any]]:
    """The chosen image and how to name it: a file, or an id of --data / the run's whole data set (in the
    base the user counts from)."""
    from aelab.data.files import read_image_file
    from aelab.data.ids import check_base
    from aelab.errors import AelabError

    id_base = check_base(id_base)
    if image is not None:
        if image_id is not None:
            raise AelabError(f"give --id or --image, not both (--id {image_id}, --image {image})")
        return read_image_file(image, run.image_shape), {"image": str(image)}
    image_id = id_base if image_id is None else image_id
    return (run.data(data).by_ids([image_id], id_base),
            {"image": f"id {image_id}", "id": image_id, "id_base": id_base})


def _stats_data(run: Any, data: str | None) -> Any:
    """Where ranges and factor correlations come from: --data, else the run's validation split."""
    return run.data(data) if data else None


@app.command()
def edit(
    run: Path = RUN,
    image_id: int = ID,
    edits: list[str] = typer.Option(..., "--edit", help="An edit such as 0*=2, 2+=5, 3=2,1000=8, all+=0.5, "
                                                        "-1+=20, 10:20*=0 (repeatable: one figure row each)."),
    id_base: int = ID_BASE,
    data: str = DATA,
    image: Path = IMAGE,
    sample: bool = typer.Option(False, "--sample", help="VAE: start from a posterior draw, not the mean."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --sample draw."),
    out: Path = OUT,
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Change elements of one image's code and decode: original, reconstruction, edited, difference."""
    from aelab.figures.latent import edit_figure
    from aelab.latent import edit as compute
    from aelab.run import load_run

    r = load_run(run, weights=weights)
    img, chosen = _image(r, image_id, id_base, data, image)
    name = chosen["image"]
    edited = compute(r, img, edits, sample=sample, seed=seed)
    figure = edit_figure(edited, out, f"{r.name}, {name}: latent edits")
    result = {"run": str(run), **chosen, "figure": str(figure), **edited.to_dict()}
    if as_json:
        print_json(result)
        return
    table([{"edit": e["edit"], "elements": len(e["elements"]), "mean |change|": e["mean_abs_change"],
            "PSNR vs recon (dB)": e["psnr"]} for e in result["edits"]],
          title=f"{r.name}: {r.latent_size}-element code of {name}")
    console.print(f"wrote {out}")


@app.command()
def traverse(
    run: Path = RUN,
    image_id: int = ID,
    dims: str = typer.Option(None, "--dims", help="Elements to sweep, e.g. 0,1,2 or 0-4."),
    top: int = typer.Option(None, "--top", help="Sweep the N elements that move the output most (default 8)."),
    value_range: str = typer.Option("data", "--range", help="prior (VAE), data (mean ± 2 std), minmax, "
                                                            "or numbers like -3:3 (write --range=-3:3)."),
    steps: int = typer.Option(9, "--steps", help="Values per element."),
    factors: bool = typer.Option(False, "--factors", help="Name the generating factor each element tracks "
                                                          "(data with factors: builtin:faces)."),
    id_base: int = ID_BASE,
    data: str = DATA,
    image: Path = IMAGE,
    out: Path = OUT,
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """A grid: one row per code element, its value swept while the others stay at the image's code."""
    from aelab.errors import AelabError
    from aelab.figures.latent import traversal_figure
    from aelab.latent import traverse as compute
    from aelab.run import load_run

    if dims and top is not None:
        raise AelabError("give --dims or --top, not both")
    r = load_run(run, weights=weights)
    img, chosen = _image(r, image_id, id_base, data, image)
    name = chosen["image"]
    swept = compute(r, img, dims=dims, top=None if dims is not None else 8 if top is None else top,
                    range=value_range, steps=steps, data=_stats_data(r, data), factors=factors)
    figure = traversal_figure(swept, out, f"{r.name}, {name}: latent traversal ({value_range} range)")
    result = {"run": str(run), **chosen, "figure": str(figure), **swept.to_dict()}
    if as_json:
        print_json(result)
        return
    factor_of = {f["element"]: f for f in result.get("factors", [])}
    rows = []
    for e in result["elements"]:
        row = {"element": e["element"], "Δ output": e["output_change"]}
        if e["element"] in factor_of:
            row.update({"factor": factor_of[e["element"]]["factor"], "r": factor_of[e["element"]]["r"]})
        rows.append({**row, "code value": e["code_value"], "range": f"{e['low']:.3g} … {e['high']:.3g}"})
    table(rows, title=f"{r.name}: traversal of {name}" + (" (ranked by output change)"
                                                           if result["ranked_by_effect"] else ""))
    console.print(f"wrote {out}")


@app.command()
def interpolate(
    run: Path = RUN,
    ids: str = typer.Option(..., "--ids", help="Two image ids, e.g. 3,17."),
    steps: int = typer.Option(10, "--steps", help="Decoded images, both ends included."),
    mode: str = typer.Option("linear", "--mode", help="linear or slerp (along the sphere between the codes)."),
    id_base: int = ID_BASE,
    data: str = DATA,
    out: Path = OUT,
    weights: str = WEIGHTS,
    as_json: bool = JSON,
) -> None:
    """Decode codes between two images, the two originals at the ends."""
    from aelab.data.ids import check_base, parse_ids
    from aelab.errors import AelabError
    from aelab.figures.latent import interpolation_figure
    from aelab.latent import interpolate as compute
    from aelab.run import load_run

    pair = parse_ids(ids)
    check_base(id_base)
    if len(pair) != 2:
        raise AelabError(f"--ids '{ids}': give exactly two different ids, e.g. 3,17")
    r = load_run(run, weights=weights)
    pool = r.data(data)
    a, b = pool.by_ids(pair[:1], id_base), pool.by_ids(pair[1:], id_base)
    path = compute(r, a, b, steps=steps, mode=mode)
    figure = interpolation_figure(path, out, f"{r.name}: {mode} interpolation, id {pair[0]} → id {pair[1]}")
    result = {"run": str(run), "ids": pair, "id_base": id_base, "figure": str(figure), **path.to_dict()}
    if as_json:
        print_json(result)
        return
    changes = result["step_change"]
    console.print(f"wrote {out}: id {pair[0]} → id {pair[1]} (ids counted from {id_base}), {result['steps']} "
                  f"steps, mean |change| per step {min(changes):.4f}–{max(changes):.4f}")
