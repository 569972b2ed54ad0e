"""Run the example notebooks top to bottom and keep their outputs (``make notebooks``).

    python examples/run_notebooks.py [--quick] [--out runs/notebooks] [--cwd .] [NOTEBOOK ...]

Each notebook runs in a fresh IPython kernel (nbclient + ipykernel) with ``--cwd`` as its working
folder (where it looks for ``trainingset.npy`` and writes ``runs/...``); the executed copy, outputs
kept, goes to ``--out``. The committed notebooks stay without outputs. ``--quick`` sets
``AELAB_NOTEBOOK_QUICK=1``, which the notebooks' first cell reads to choose even smaller settings
(the tests use it). Exits 1 on the first cell that raises, after writing the notebook up to there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = [HERE / "hw8_latent_study.ipynb", HERE / "hw2_conv_ae_vae.ipynb"]


def run(notebook: Path, out: Path, cwd: Path, timeout: int = 900) -> float:
    """Execute one notebook in a fresh kernel and write the executed copy into ``out``; seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / notebook.name)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    parser.add_argument("--out", type=Path, default=Path("runs/notebooks"))
    parser.add_argument("--cwd", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true", help="even smaller settings (AELAB_NOTEBOOK_QUICK=1)")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["AELAB_NOTEBOOK_QUICK"] = "1"  # the kernel inherits this process's environment
    args.cwd.mkdir(parents=True, exist_ok=True)
    from nbclient.exceptions import CellExecutionError

    for notebook in args.notebooks:
        try:
            seconds = run(notebook, args.out, args.cwd.resolve())
        except CellExecutionError as exc:
            print(f"{notebook.name}: a cell failed (executed copy in {args.out / notebook.name}):\n{exc}",
                  file=sys.stderr)
            return 1
        print(f"{notebook.name}: ran in {seconds:.0f} s -> {args.out / notebook.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
