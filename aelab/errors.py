"""Errors a user can fix.

Anything raised as ``AelabError`` is the user's input being wrong (a file, a
key, a shape). The CLI prints its message as one line and exits with status 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AelabError(Exception):
    """Bad input: a file, a config key, a shape, a value. Printed as one line."""


class ConfigError(AelabError):
    """A config file or override that does not validate."""


class DataError(AelabError):
    """A data source that cannot be read or does not hold images."""


class RunError(AelabError):
    """A Run folder that is missing, incomplete or inconsistent."""


def closest_name(word: str, choices: Iterable[str]) -> str | None:
    """The nearest choice, or None when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def closest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest choice, or '' when none is close."""
    match = closest_name(word, choices)
    return f" (did you mean '{match}'?)" if match else ""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. Still a KeyboardInterrupt (code that stops on one still stops),
    but its message says where training stopped and the command that resumes it."""
