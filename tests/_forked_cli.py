"""The aelab CLI in a child forked from a multiprocessing forkserver that imported aelab once.

A fresh ``python -m aelab`` spends 5-15 s importing on a busy 2-core machine; a
fork of a process that already imported it spends none, so the kill harness can
start dozens of training processes. The child is a real, separate process: it
can be SIGKILLed at any point and its files are all it leaves behind.
"""

from __future__ import annotations

import os

import aelab.cli


def run(argv: list[str], env: dict[str, str], log: str) -> None:
    """``aelab <argv>`` with ``env`` added, stdout and stderr into ``log``; the exit status is the CLI's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(env)
    aelab.cli.main(argv)
