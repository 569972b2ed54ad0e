"""The edit language: small text edits of a code by *flat* element index.

The course exercise is "take one image's code, change two elements, decode, say
what changed". ``z[0][0] *= 2`` becomes ``0*=2`` and ``latent[:, 3], latent[:, 1000] = 2, 8``
becomes ``3=2,1000=8``, whatever the code's shape:

=============  ==============================================
``0*=2``       multiply element 0 by 2
``2+=5``       add 5 to element 2 (also ``-=``, ``/=``)
``3=2,1000=8`` set two elements (several ops, comma-separated)
``all+=0.5``   every element
``-1+=20``     negative indices count from the end
``10:20*=0``   a range, end exclusive, as in Python slices
=============  ==============================================

Pure text and numpy (no Run, no model), so the CLI, the explorer and tests share
one parser; ``edit_command`` writes the ``aelab edit`` line the explorer offers to copy.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aelab.errors import AelabError

OPS = ("*=", "/=", "+=", "-=", "=")
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
"""A decimal number as edits and ranges write it."""
_OP_RE = re.compile(rf"^(?P<target>all|-?\d+|-?\d*:-?\d*)(?P<op>\*=|/=|\+=|-=|=)(?P<value>{NUMBER})$")


@dataclass
class Op:
    """One operation: ``indices`` (flat, resolved against the code size) ``op`` ``value``."""

    text: str
    op: str
    value: float
    indices: np.ndarray


@dataclass
class Edit:
    """A parsed edit: its text, the code size it was checked against, and its ops in order."""

    text: str
    ops: list[Op] = field(default_factory=list)
    size: int = 0

    def __str__(self) -> str:
        return self.text

    @property
    def elements(self) -> np.ndarray:
        """Every flat index the edit touches (sorted, unique)."""
        return np.unique(np.concatenate([o.indices for o in self.ops])) if self.ops else np.empty(0, np.int64)


def _index(token: str, size: int, text: str) -> int:
    try:
        i = int(token)
    except ValueError:  # more digits than Python converts
        raise AelabError(f"edit '{text}': index {token[:20]}... is not a usable number") from None
    if not -size <= i < size:
        raise AelabError(f"edit '{text}': index {i} is outside the code of {size} elements "
                         f"(use 0..{size - 1}, or -{size}..-1 from the end)")
    return i % size


def _targets(target: str, size: int, text: str) -> np.ndarray:
    if target == "all":
        return np.arange(size, dtype=np.int64)
    if ":" not in target:
        return np.array([_index(target, size, text)], dtype=np.int64)
    lo_s, hi_s = target.split(":")
    lo = _index(lo_s, size, text) if lo_s else 0
    # the end of a range is exclusive, so `size` itself is a valid end
    hi = size if hi_s in ("", str(size)) else _index(hi_s, size, text)
    if hi <= lo:
        raise AelabError(f"edit '{text}': range {target} is empty in a code of {size} elements")
    return np.arange(lo, hi, dtype=np.int64)


def parse_edit(text: str, size: int) -> Edit:
    """Parse ``"0*=2"``, ``"3=2,1000=8"``, ``"all+=0.5"``, ``"-1+=20"``, ``"10:20*=0"`` for a code of ``size``."""
    if isinstance(text, Edit):
        return text if text.size == size else parse_edit(text.text, size)
    raw = str(text).strip()
    if not raw:
        raise AelabError(f"edit is empty; write e.g. '0*=2' or '3=2,1000=8' (code of {size} elements)")
    ops = []
    for part in raw.split(","):
        part = part.replace(" ", "")
        m = _OP_RE.match(part)
        if not m:
            raise AelabError(f"edit '{raw}': cannot read '{part}'; write INDEX OP NUMBER with OP one of "
                             f"{' '.join(OPS)}, INDEX a number, a range a:b or 'all' (code of {size} elements)")
        value = float(m["value"])
        if not math.isfinite(value) or abs(value) > float(np.finfo(np.float32).max):
            raise AelabError(f"edit '{raw}': {m['value']} is too large for a float32 code (code of {size} elements)")
        if m["op"] == "/=" and value == 0:
            raise AelabError(f"edit '{raw}': division by zero in '{part}'")
        ops.append(Op(part, m["op"], value, _targets(m["target"], size, raw)))
    return Edit(raw, ops, size)


def apply_edits(codes: np.ndarray, edit: Edit | str) -> np.ndarray:
    """A copy of ``codes`` (N×latent_shape, or one code) with ``edit`` applied to every code.

    Ops apply left to right, so ``0*=2,0+=1`` doubles then adds."""
    arr = np.asarray(codes, dtype=np.float32)
    single = arr.ndim == 1
    batch = arr[None] if single else arr
    flat = batch.reshape(len(batch), -1).copy()
    parsed = parse_edit(edit, flat.shape[1])
    for o in parsed.ops:
        cols = flat[:, o.indices]
        v = np.float32(o.value)
        if o.op == "=":
            cols = np.full_like(cols, v)
        elif o.op == "+=":
            cols = cols + v
        elif o.op == "-=":
            cols = cols - v
        elif o.op == "*=":
            cols = cols * v
        else:
            cols = cols / v
        flat[:, o.indices] = cols
    out = flat.reshape(batch.shape)
    return out[0] if single else out



def edit_command(run_path: str | Path, image_id: int | None, edits: list[str], out: str | Path = "edit.png",
                 data: str | None = None, sample: bool = False, image: str | Path | None = None) -> str:
    """The equivalent ``aelab edit ...`` command line (the web page's "copy as command").

    ``image``: an image file instead of an id (``--image``, read as the explorer reads an upload).
    With no edits it writes ``all+=0``, which changes nothing, so the line still runs and shows the
    plain reconstruction."""
    if isinstance(edits, str):
        edits = [edits]
    edits = list(edits) or ["all+=0"]
    if (image is None) == (image_id is None):
        raise ValueError("edit_command: give an image id or an image file, not both or neither")
    where = ["--image", str(image)] if image is not None else ["--id", str(int(image_id))]
    parts = ["aelab", "edit", str(run_path), *where]
    for e in edits:
        parts += ["--edit", str(e)]
    if data:
        parts += ["--data", data]
    if sample:
        parts.append("--sample")
    parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in parts)
