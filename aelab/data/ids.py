"""Id lists as people type them: ``0,5,9`` or ``1-5,226-230``."""

from __future__ import annotations

from aelab.errors import AelabError

MAX_IDS = 10_000_000  # a range longer than any data set aelab reads is a typo, not a request for terabytes


def parse_ids(text: str | int | list[int]) -> list[int]:
    """'1-5,9' -> [1, 2, 3, 4, 5, 9] (ranges inclusive, order kept, duplicates dropped)."""
    if isinstance(text, int):
        return [text]
    if isinstance(text, list):
        return list(dict.fromkeys(int(t) for t in text))
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise AelabError(f"id range '{part}' runs backwards")
                if b - a >= MAX_IDS:
                    raise AelabError(f"id range '{part}' names {b - a + 1:,} ids; at most {MAX_IDS:,} at a time")
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise AelabError(f"'{part}' in id list '{text}' is not an id or a range like 1-5") from None
    if not out:
        raise AelabError(f"id list '{text}' names no ids")
    if min(out) < 0:
        raise AelabError(f"id list '{text}': ids cannot be negative")
    return list(dict.fromkeys(out))
