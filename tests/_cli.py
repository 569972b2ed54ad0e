"""The ``aelab`` command as a user runs it: the installed script in a real process, and the bad-input contract.

Shared by every test file that runs the CLI. ``aelab_each`` starts several commands at once, one per
core: a command that fails on bad input spends nearly all its time importing, on one core, so a test
that checks a dozen refusals waits for the slowest of each pair instead of for all of them in turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AELAB = Path(sys.executable).with_name("aelab")


def aelab(*args, cwd=None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``aelab ARGS`` in a subprocess through the installed console script; output captured as text."""
    assert AELAB.exists(), f"{AELAB} is missing: install the package (pip install -e .) to test its script"
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([str(AELAB), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def aelab_each(*commands, cwd=None) -> list[subprocess.CompletedProcess]:
    """Each command (a tuple of arguments) in its own ``aelab`` process, as many at a time as there are cores,
    each with one torch thread; the results in the order given."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda args: aelab(*args, cwd=cwd, env={"OMP_NUM_THREADS": "1"}), commands))


def one_line_exit_2(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and one line on stderr, naming what was wrong (every needle), with no traceback."""
    assert res.returncode == 2, (res.args, res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
