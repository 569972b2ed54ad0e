"""The bad-input contract checked on a finished ``aelab`` process: exit status 2 and one line on stderr,
naming what was wrong, with no traceback. Shared by the test files that run the CLI in a subprocess."""

from __future__ import annotations

import subprocess


def one_line_exit_2(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
