"""The explorer's pictures: PNG bytes and data URIs of uint8 images, and the coloured difference map."""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 H×W×C (C 1, 3 or 4) -> PNG bytes; fast compression, the images are tiny."""
    arr = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


@lru_cache(maxsize=1)
def _magma() -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def diff_map(a: torch.Tensor, b: torch.Tensor, floor: float = 0.05) -> tuple[np.ndarray, float]:
    """|a - b| (images in [0, 1], C×H×W) averaged over channels, coloured with magma.

    The colour scale runs to the largest difference, but never below ``floor``,
    so a tiny edit is not blown up to look like a large one."""
    d = (a - b).abs().mean(0)
    top = float(d.max()) if d.numel() else 0.0
    idx = (d / max(top, floor)).clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()
    return _magma()[idx], top
