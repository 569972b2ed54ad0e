"""Id lists as people type them: ``0,5,9`` or ``1-5,226-230``, counted from 0 or from 1.

aelab's ids are rows of the data source, counted from 0. Homework lists count images from 1
(``[1, 2, 3, 4, 5, 226, …, 1475]``, indexed ``i - 1``), so every command that takes ids takes
``--id-base 1`` too (Python: ``id_base=1``): ids are read, printed and written in that base, and
turned into rows (``id - id_base``) only where images are looked up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aelab.errors import AelabError, DataError

MAX_IDS = 10_000_000  # a range longer than any data set aelab reads is a typo, not a request for terabytes
ID_BASES = (0, 1)


def check_base(id_base: int) -> int:
    """The base ids count from: 0 (aelab's rows) or 1 (homework lists)."""
    if isinstance(id_base, bool) or id_base not in ID_BASES:
        raise AelabError(f"--id-base {id_base!r}: ids count from 0 (rows of the data) or 1 (first image is 1)")
    return int(id_base)


def parse_ids(text: str | int | Sequence[int] | np.ndarray) -> list[int]:
    """'1-5,9' -> [1, 2, 3, 4, 5, 9] (ranges inclusive, order kept, duplicates dropped), as written:
    which base they count from is for ``to_rows`` to apply."""
    if isinstance(text, bool):
        raise AelabError(f"id list {text!r} is not an id or a list of ids")
    if isinstance(text, int | np.integer):
        text = [int(text)]
    if isinstance(text, list | tuple | np.ndarray):
        out = [int(t) for t in text]
        if not out:
            raise AelabError("the id list is empty")
        if min(out) < 0:
            raise AelabError(f"id list {out[:10]}: ids cannot be negative")
        return list(dict.fromkeys(out))
    out = []
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


def id_range(n: int, id_base: int = 0) -> str:
    """The valid ids of ``n`` images in a base, as an error shows them: ``1..1475 (ids count from 1)``."""
    return f"{id_base}..{n - 1 + id_base} (ids count from {id_base}, --id-base {id_base})"


def to_rows(ids: Sequence[int] | np.ndarray, n: int, id_base: int = 0, where: str = "data") -> np.ndarray:
    """Ids in ``id_base`` -> rows 0..n-1; an id outside the data is a DataError naming it, the base and
    the valid range."""
    id_base = check_base(id_base)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    outside = ids[(ids < id_base) | (ids >= n + id_base)]
    if outside.size:
        shown = ", ".join(map(str, outside[:10].tolist())) + (" ..." if outside.size > 10 else "")
        hint = ""
        if id_base == 0 and outside.max() == n:
            hint = "; a list that counts from 1 needs --id-base 1"
        raise DataError(f"{where}: no image with id {shown}: {n:,} images have ids {id_range(n, id_base)}{hint}")
    return ids - id_base


def from_rows(rows: Sequence[int] | np.ndarray, id_base: int = 0) -> np.ndarray:
    """Rows -> ids in ``id_base`` (int64), for what is printed and written."""
    return np.asarray(rows, dtype=np.int64) + check_base(id_base)


def format_ids(ids: Sequence[int] | np.ndarray) -> str:
    """[1, 2, 3, 4, 5, 226] -> '1-5,226': the inverse of ``parse_ids``, for what a command prints."""
    parts: list[str] = []
    values = [int(i) for i in ids]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[end - 1] + 1:
            a, b = values[start], values[end - 1]
            parts.append(str(a) if a == b else f"{a}-{b}")
            start = end
    return ",".join(parts)
