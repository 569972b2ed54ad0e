"""What the explorer hands out: the edited decode as a PNG file, its code as ``.npy`` or JSON, and the
``aelab edit`` command that makes it again, for a data-set image (``--id``) or an upload (``--image``)."""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.serve.pictures import png_bytes

if TYPE_CHECKING:
    from aelab.serve.state import LoadedRun

MEDIA = {"png": "image/png", "npy": "application/octet-stream", "json": "application/json"}
UPLOAD_PLACEHOLDER = "IMAGE.png"
"""The ``--image`` of an upload's command when the page does not send the file's name."""


def value_text(v: float) -> str:
    """Shortest text that reads back as the same float32."""
    return str(np.float32(v))


def edit_text(code: np.ndarray, original: np.ndarray) -> tuple[str | None, list[int]]:
    """The elements where ``code`` differs from ``original`` as one absolute edit (``1=2.5,7=-0.3``)."""
    changed = np.flatnonzero(code != original)
    return (",".join(f"{i}={value_text(code[i])}" for i in changed) or None), changed.tolist()


def file_name(loaded: LoadedRun, where: str, kind: str) -> str:
    """``ae-val12-edited.png``: ASCII letters, digits and ``._+-`` only (the name goes into a header)."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{loaded.key}-{where}")[:120]
    return f"{stem}-{'edited' if kind == 'png' else 'code'}.{kind}"


def export(loaded: LoadedRun, code: np.ndarray, kind: str, source: dict[str, Any]) -> bytes:
    """``code`` (flat float32, checked) as a file of ``kind``.

    png: the decode, the same pixels /api/decode shows; npy: float32 of the run's latent shape
    (``run.decode(np.load(f)[None])`` decodes it); json: the flat code with its shape and ``source``
    (which image it was edited from)."""
    if kind == "png":
        with loaded.lock:
            image = loaded.to_uint8(loaded.decode(code[None]))[0]
        return png_bytes(image)
    shaped = code.astype(np.float32).reshape(loaded.run.latent_shape)
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, shaped, allow_pickle=False)
        return buf.getvalue()
    body = {"run": loaded.label, "run_name": loaded.key, **source, "latent_shape": list(loaded.run.latent_shape),
            "code": code.astype(np.float32).astype(np.float64).tolist()}
    return (json.dumps(body, indent=1) + "\n").encode()
