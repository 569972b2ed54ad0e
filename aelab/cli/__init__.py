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
