"""Files written so that a reader never sees half of one, even after a crash.

Everything goes to a temporary name in the same folder first, is fsynced, and
is then renamed into place (atomic on POSIX); the folder is fsynced after the
rename so the new name itself survives a power cut. A process killed at any
point leaves either the old file or the new one, plus at most a stray
``.<name>.*.tmp`` (``remove_stray_temps`` clears those). Weights are
safetensors, never pickle.
numpy, torch and safetensors are imported by the functions that use them, so
the CLI's ``--json`` output and the report can use this module without them.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

from aelab._testhooks import pause_at


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` with the permissions a plain open() would give (mkstemp uses 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _point(path: Path, stage: str) -> str:
    return f"{path.name.split('.')[0]}-{stage}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename or removal in ``folder`` durable (the entry lives in the folder, not the file)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: str, path: Path) -> None:
    """The one way a file gets into place: its bytes on disk, then the rename, then the rename on disk.
    Without the first fsync a crash can leave the new name pointing at an empty or partial file."""
    pause_at(_point(path, "before-fsync"))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    pause_at(_point(path, "before-replace"))
    os.replace(tmp, path)
    pause_at(_point(path, "after-replace"))
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically and durably (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(path: str | Path) -> None:
    """Delete ``path`` (if there) and make the deletion durable."""
    path = Path(path)
    pause_at(_point(path, "before-remove"))
    try:
        path.unlink()
    except FileNotFoundError:
        return
    pause_at(_point(path, "after-remove"))
    _fsync_dir(path.parent)


def remove_stray_temps(folder: str | Path) -> None:
    """Delete the temporary files a killed writer left in ``folder`` (call only while nothing writes there)."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def json_safe(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, paths to str, NaN/inf to None
    (an edit that changes nothing has an infinite PSNR; strict JSON has no Infinity)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, dumps_json(obj, indent=2) + "\n")


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """JSON text for ``obj``; numpy values and paths become plain JSON."""
    return json.dumps(obj, indent=indent, default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A safetensors file written like ``atomic_write``: atomically and durably."""
    from safetensors.torch import save_file

    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def _npy_bytes(arr: np.ndarray) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_npy(path: str | Path, arr: np.ndarray) -> Path:
    atomic_write(path, _npy_bytes(arr))
    return Path(path)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """An uncompressed ``.npz`` (what ``np.savez`` writes) with fixed timestamps, so the same
    arrays always give the same bytes; written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(arr))
    atomic_write(path, buf.getvalue())
    return Path(path)
