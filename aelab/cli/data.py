"""``aelab data``: prepare data sets, e.g. pack a folder of images into a memory-mappable .npy."""

from __future__ import annotations

from pathlib import Path

import typer

from aelab.cli.common import JSON, app, console, print_json, table

data_app = typer.Typer(help="Prepare data: pack a folder of images into a .npy cache.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'64x48' or '64' -> (height, width)."""
    from aelab.errors import AelabError

    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise AelabError(f"--size '{text}': expected HxW such as 64x64 (or one number for a square)")
    return (values[0], values[-1])


@data_app.command("pack")
def pack(
    source: str = typer.Argument(..., help="folder:DIR (or a folder path) of image files."),
    out: Path = typer.Option(..., "--out", help="The .npy cache to write (uint8 N×H×W×C)."),
    size: str = typer.Option(None, "--size", help="Resize every image to HxW while decoding, e.g. 64x64."),
    workers: int = typer.Option(None, "--workers", min=1, help="Decoding processes (default: one per core)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = JSON,
) -> None:
    """Decode a folder of images once into a .npy that training memory-maps (use it as npy:OUT)."""
    from aelab.data.pack import pack_folder

    result = pack_folder(source, out, size=parse_size(size), workers=workers, force=force,
                         progress=not (quiet or as_json))
    if as_json:
        print_json(result)
        return
    table([{"out": result["out"], "images": result["n"], "shape": "×".join(map(str, result["shape"])),
            "MB": result["bytes"] / 2**20, "time (s)": result["seconds"], "img/s": result["images_per_s"]}])
    console.print(f"train from it with   data.source: npy:{result['out']}")
    if result["labels"]:
        console.print(f"its labels           data.labels: {result['labels']}  "
                      f"(classes {', '.join(result['class_names'])})")
    console.print(f"the file of each id  {result['files']}")
