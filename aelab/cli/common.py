"""What every command shares: the Typer app, JSON output, and one-line errors."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aelab.tables import cell as fmt  # one way to write a number in a cell, shared with the notebook

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="aelab: train, measure, edit, generate with and score image autoencoders.",
                  context_settings={"help_option_names": ["-h", "--help"]})
# In a terminal rich wraps to its width; anywhere else (a log, a pipe, CI, a notebook's `!aelab`) lines are
# printed whole (soft_wrap) and tables as plain text: a path or a number is never cut or split.
console = Console()
err_console = Console(stderr=True)
for _c in (console, err_console):
    _c.soft_wrap = not _c.is_terminal

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
    """Dict rows as a table; floats shown with 4 significant digits. In a terminal a rich table whose cells
    fold onto more lines when it is narrow; elsewhere plain aligned text, each row on one line."""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    right = [bool(rows) and numeric(rows[0].get(c)) for c in cols]
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    if not console.is_terminal:
        typer.echo(plain_table(cols, cells, right, title))
        return
    t = Table(title=escape(title) if title else None, show_lines=False)
    for c, r in zip(cols, right, strict=True):  # a narrow terminal: cells fold onto more lines, nothing is cut
        t.add_column(escape(c), justify="right" if r else "left", overflow="fold")
    for row in cells:
        t.add_row(*(escape(v) for v in row))
    console.print(t)


def plain_table(cols: list[str], cells: list[list[str]], right: list[bool], title: str | None = None) -> str:
    """Columns padded to their widest cell, two spaces apart; nothing shortened."""
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return "  ".join(padded).rstrip()

    return "\n".join(([title] if title else []) + [line(cols)] + [line(row) for row in cells])


def numeric(v: Any) -> bool:
    """A number, or a number already formatted ("1,234", "0.0123", "192×"): right-aligned in a table."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(str(v).replace(",", "").removesuffix("×"))
    except ValueError:
        return False
    return True


    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)
