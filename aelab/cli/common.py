"""What every command shares: the Typer app, JSON output, and one-line errors."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="aelab: train, measure, edit, generate with and score image autoencoders.",
                  context_settings={"help_option_names": ["-h", "--help"]})
console = Console()
err_console = Console(stderr=True)

JSON = typer.Option(False, "--json", help="Print the results as JSON.")
SET = typer.Option(None, "--set", help="Override a config key, e.g. --set train.epochs=5 (repeatable).")
DATA = typer.Option(None, "--data", help="Data source (default: the run's validation split).")
ID_BASE = typer.Option(0, "--id-base", help="What the ids count from: 0 (rows of the data, the default) or 1 "
                       "(a homework's list, where id 1 is the first image). Ids are printed and written in it.")
WEIGHTS = typer.Option("last", "--weights", help="The run's weights to use: last (training's end) or best "
                       "(the best epoch's, kept by train.keep_best).")


def print_json(obj: Any) -> None:
    from aelab.io import json_safe  # imports torch: only once a command has results

    typer.echo(json.dumps(json_safe(obj), indent=2))


def table(rows: list[dict[str, Any]], title: str | None = None, columns: list[str] | None = None) -> None:
    """A rich table of dict rows; floats shown with 4 significant digits."""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    t = Table(title=title, show_lines=False)
    for c in cols:
        t.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), int | float) else "left")
    for r in rows:
        t.add_row(*(fmt(r.get(c)) for c in cols))
    console.print(t)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)
