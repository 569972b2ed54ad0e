"""Test hook: park the process at a named point so a test can SIGKILL it exactly there.

Inert unless ``AELAB_TEST_PAUSE_AT`` is set: ``pause_at`` then returns after one
environment lookup (it is called around durable writes, each of which costs an
fsync; read at call time so a forked child can be armed). With ``AELAB_TEST_PAUSE_AT=point`` (or
``point@n``, the n-th time the point is reached) the process writes the point's
name to ``AELAB_TEST_PAUSE_MARKER`` (when given) and sleeps until killed.

Points: ``<file>-before-fsync``, ``<file>-before-replace`` and
``<file>-after-replace`` around every durable write of ``aelab.io``, where
``<file>`` is the file name up to its first dot (``checkpoint``, ``model``,
``summary``, ``metrics``, ``config``, ...); ``<file>-before-remove`` and
``<file>-after-remove`` around ``aelab.io.remove``.
"""

from __future__ import annotations

import os
import time

_reached: dict[str, int] = {}


def pause_at(point: str) -> None:
    """Sleep for ever here when the environment asks to stop at ``point`` (tests only)."""
    at = os.environ.get("AELAB_TEST_PAUSE_AT")
    if not at:
        return
    name, _, nth = at.partition("@")
    if point != name:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] != int(nth or 1):
        return
    marker = os.environ.get("AELAB_TEST_PAUSE_MARKER")
    if marker:
        with open(marker, "w") as fh:
            fh.write(point)
    while True:
        time.sleep(60)
