"""The ``aelab`` command: thin commands over the Python API.

Each group of commands lives in its own module and registers itself on the
shared Typer app. Errors the user can fix (``AelabError``) print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click

# Importing the command modules registers their commands on `app`.
from aelab.cli import anomaly, core, data, experiments, generate, latent, serve  # noqa: F401
from aelab.cli.common import app, err_console
from aelab.errors import AelabError

# Help lists the commands in the order of the study, grouped in panels.
PANELS = {
    "Train and measure": ["train", "info", "evaluate", "reconstruct", "demo"],
    "Latent space": ["edit", "traverse", "interpolate", "serve"],
    "Generation": ["sample", "augment", "compare-noise"],
    "Anomalies": ["score", "oneclass"],
    "Experiments": ["sweep", "report", "models"],
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
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
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
    sys.exit(rc if isinstance(rc, int) else 0)
