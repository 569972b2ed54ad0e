"""The ``aelab`` command: thin commands over the Python API.

Each group of commands lives in its own module and registers itself on the
shared Typer app. Errors the user can fix (``AelabError``) print one line and
exit with status 2; ``--debug`` shows the traceback instead. Usage errors (an
unknown option, a missing argument, a bad value) print one line and the usage,
exit 2. Nothing here imports torch: each command imports what it needs when it
runs, so ``--help``, ``--version`` and ``models`` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

# Importing the command modules registers their commands on `app`.
from aelab.cli import anomaly, core, data, deploy, experiments, generate, latent, serve  # noqa: F401
from aelab.cli.common import app, err_console
from aelab.errors import AelabError


def _show_version(value: bool) -> None:
    if value:
        from aelab import __version__

        typer.echo(f"aelab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the version and exit."),
) -> None:
    """aelab: train, measure, edit, generate with and score image autoencoders."""

# Help lists the commands in the order of the study, grouped in panels.
PANELS = {
    "Train and measure": ["train", "info", "evaluate", "reconstruct", "demo"],
    "Latent space": ["edit", "traverse", "interpolate", "serve"],
    "Generation": ["sample", "augment", "compare-noise"],
    "Anomalies": ["score", "oneclass", "threshold", "predict", "export"],
    "Experiments": ["sweep", "analyse", "report", "models"],
}
_ORDER = [name for names in PANELS.values() for name in names]


def _command_name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


for _info in app.registered_commands:
    _info.rich_help_panel = next((p for p, names in PANELS.items() if _command_name(_info) in names), None)
for _group in app.registered_groups:  # `aelab data ...` belongs with training
    _group.rich_help_panel = "Train and measure"
app.registered_commands.sort(key=lambda i: _ORDER.index(_command_name(i)) if _command_name(i) in _ORDER else 99)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AELAB_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        rc = app(args=args, prog_name="aelab", standalone_mode=False)
    except typer.Abort:
        err_console.print("aelab: interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("aelab: interrupted")
        sys.exit(130)
    except AelabError as exc:
        if debug:
            raise
        print(f"aelab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        sys.exit(_report_usage_error(exc))
    sys.exit(rc if isinstance(rc, int) else 0)


def _is_usage_error(exc: BaseException) -> bool:
    """A click-style exception (``exit_code``, ``show()``, ``format_message()``), whichever module defines it.

    typer ≤ 0.15 raises click's own classes, newer typer those of its bundled copy
    (``typer._click.exceptions``); matching on the interface covers both without
    importing either.
    """
    return (isinstance(getattr(exc, "exit_code", None), int) and callable(getattr(exc, "show", None))
            and callable(getattr(exc, "format_message", None)))


def _report_usage_error(exc: Any) -> int:
    """One line naming the problem, then the command's usage; returns the exit status (2 for usage errors)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `aelab` or `aelab data` alone: the help is the message
        if exc.format_message().strip():  # typer with rich has already printed it
            exc.show()
        return exc.exit_code
    print(f"aelab: error: {' '.join(str(exc.format_message()).split())}", file=sys.stderr)
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        usage = " ".join(ctx.get_usage().split())
        print(f"{usage}  (more: {ctx.command_path} --help)", file=sys.stderr)
    return exc.exit_code
