"""Folders of image files: decoded in parallel worker processes, and packed once into a .npy cache.

Decoding a PNG or JPEG costs far more than reading its pixels back from a
``.npy``, so a folder of a million face crops is decoded once —
``aelab data pack folder:DIR --out faces.npy`` — and every later run
memory-maps the cache. Both the ``folder:`` source and ``pack`` go through
``decode_files``: a header pass (sizes and colour modes, no pixels) fixes the
array's shape, then chunks of files are decoded by a pool of processes and
written in order into the destination, which for ``pack`` is the memory-mapped
output file, so packing never holds the whole set in memory.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from aelab.data.files import IMAGE_SUFFIXES, open_image
from aelab.errors import AelabError, DataError
from aelab.io import atomic_write
from aelab.limits import check_array_fits

PARALLEL_MIN = 512  # fewer files decode faster here than a pool of processes starts
HEADER_CHUNK, DECODE_CHUNK = 512, 64  # files per task in each pass
Progress = Callable[[str, int, int], None]  # (phase, done, total)


def list_image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted: the position in this list is the image's id."""
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def folder_labels(root: Path, files: Sequence[Path]) -> tuple[np.ndarray | None, list[str] | None]:
    """Labels from first-level subfolders (``cats/1.png`` -> class 'cats'), when every file is in one."""
    tops = [f.relative_to(root).parts for f in files]
    if not all(len(t) > 1 for t in tops):
        return None, None
    names = sorted({t[0] for t in tops})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[t[0]] for t in tops], dtype=np.int64), names


# -- work done in the worker processes ----------------------------------------------------

def _channels(mode: str) -> int:
    # Greyscale stays one channel; every other mode (palette, alpha, CMYK, 16-bit) becomes RGB.
    return 1 if mode == "L" else 3


def _headers(files: Sequence[Path]) -> np.ndarray:
    """(height, width, channels) of each file, from its header only."""
    out = np.empty((len(files), 3), dtype=np.int64)
    for i, f in enumerate(files):
        with open_image(f) as im:  # refuses decompression bombs from the header
            out[i] = (im.size[1], im.size[0], _channels(im.mode))
    return out


def _decode(files: Sequence[Path], shape: tuple[int, int, int]) -> np.ndarray:
    """Decode ``files`` into one uint8 array of ``shape`` images (resized and converted as needed)."""
    from PIL import Image

    h, w, c = shape
    out = np.empty((len(files), h, w, c), dtype=np.uint8)
    for i, f in enumerate(files):
        with open_image(f) as im:
            im = im.convert("L" if c == 1 else "RGB") if im.mode != ("L" if c == 1 else "RGB") else im
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            out[i] = np.asarray(im, dtype=np.uint8).reshape(h, w, c)
    return out


# -- the pool ---------------------------------------------------------------------------------

def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 16))


class _Inline(Executor):
    """Runs tasks at once in this process (small folders, or ``workers=1``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _executor(n_files: int, workers: int | None) -> Executor:
    workers = default_workers() if workers is None else workers
    if workers <= 1 or n_files < PARALLEL_MIN:
        return _Inline()
    # fork starts workers without importing torch again; elsewhere the platform's default is used.
    ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _in_order(pool: Executor, fn: Callable, chunks: list, ahead: int) -> Iterator[Any]:
    """Results of ``fn(chunk)`` in chunk order, at most ``ahead`` tasks in flight (bounded memory)."""
    pending: deque[Future] = deque()
    it = iter(chunks)
    for chunk in it:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= ahead:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))


def _chunks(files: Sequence[Path], size: int) -> list[Sequence[Path]]:
    return [files[i:i + size] for i in range(0, len(files), size)]


def image_shape(files: Sequence[Path], size: tuple[int, int] | None = None, *, pool: Executor | None = None,
                on_progress: Progress | None = None, hint: str = "add a resize step to data.preprocess",
                where: str = "") -> tuple[int, int, int]:
    """(H, W, C) every file will be decoded to: ``size`` or the common size; RGB if any file is in colour."""
    pool = pool or _Inline()
    heads, done = [], 0
    for part in _in_order(pool, _headers, _chunks(files, HEADER_CHUNK), ahead=8):
        heads.append(part)
        done += len(part)
        if on_progress:
            on_progress("reading headers", done, len(files))
    hw = np.concatenate(heads)
    if size is None:
        odd = np.flatnonzero((hw[:, :2] != hw[0, :2]).any(1))
        if odd.size:
            f1, f2, (h1, w1), (h2, w2) = files[0], files[odd[0]], hw[0, :2], hw[odd[0], :2]
            raise DataError(f"{where or f1.parent}: images of different sizes ({f1.name} is {w1}×{h1}, {f2.name} is "
                            f"{w2}×{h2}); {hint}")
        size = (int(hw[0, 0]), int(hw[0, 1]))
    return size[0], size[1], int(hw[:, 2].max())


def decode_files(files: Sequence[Path], size: tuple[int, int] | None = None, *, workers: int | None = None,
                 out: Callable[[tuple[int, ...]], np.ndarray] | None = None, on_progress: Progress | None = None,
                 hint: str = "add a resize step to data.preprocess", where: str = "",
                 pool: Executor | None = None) -> np.ndarray:
    """Decode ``files`` into uint8 N×H×W×C.

    ``out(shape)``, when given, makes the destination (e.g. a memory-mapped
    file) once the header pass knows the shape. ``workers`` processes decode
    chunks in parallel (default: one per core; fewer than PARALLEL_MIN files
    are decoded in this process). A ``pool`` passed in is used and left open."""
    own = pool is None
    pool = pool or _executor(len(files), workers)
    try:
        shape = image_shape(files, size, pool=pool, on_progress=on_progress, hint=hint, where=where)
        full = (len(files), *shape)
        if out is None:
            check_array_fits(full, 1, where or "folder", "decoding it")
        dest = np.empty(full, dtype=np.uint8) if out is None else out(full)
        start = 0
        ahead = 2 * getattr(pool, "_max_workers", 1)
        decode = _DecodeTo(shape)
        for part in _in_order(pool, decode, _chunks(files, DECODE_CHUNK), ahead=ahead):
            dest[start:start + len(part)] = part
            start += len(part)
            if on_progress:
                on_progress("decoding", start, len(files))
        return dest
    finally:
        if own:
            pool.shutdown(cancel_futures=True)


class _DecodeTo:
    """A picklable ``_decode`` with the target shape bound (sent to worker processes)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape

    def __call__(self, files: Sequence[Path]) -> np.ndarray:
        return _decode(files, self.shape)


# -- pack ---------------------------------------------------------------------------------------

def _rich_progress(enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:.0f} img/s"), TimeRemainingColumn(), transient=False)
    tasks: dict[str, Any] = {}
    started = time.perf_counter()

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, rate=0.0)
        bar.update(tasks[phase], completed=done, rate=done / max(time.perf_counter() - started, 1e-9))

    return bar, update


def pack_folder(source: str | Path, out: str | Path, *, size: tuple[int, int] | None = None,
                workers: int | None = None, force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Decode a folder of images once into ``out`` (.npy, uint8 N×H×W×C) for memory-mapped training.

    Beside it go ``<stem>.files.txt`` (the file of each id, one per line) and,
    when the images sit in class subfolders, ``<stem>.labels.npy``. Returns
    what was written and how fast."""
    root = Path(str(source).removeprefix("folder:"))
    out = Path(out)
    if out.suffix != ".npy":
        raise AelabError(f"--out {out}: the cache must be a .npy file")
    if out.is_dir():  # --force replaces a cache file, never a folder
        raise AelabError(f"--out {out} is a folder; the cache must be a .npy file")
    if out.exists() and not force:
        raise AelabError(f"{out} already exists; use --force to replace it")
    files = list_image_files(root)
    labels, class_names = folder_labels(root, files)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")  # renamed into place only when complete
    started = time.perf_counter()
    bar, update = _rich_progress(progress)
    pool = _executor(len(files), workers)
    try:
        pool.submit(int).result()  # start (fork) the workers before the progress bar starts its thread
        with bar if bar is not None else nullcontext():
            mm = decode_files(files, size, pool=pool, on_progress=update, where=str(root),
                              hint="pass --size HxW to resize them",
                              out=lambda shape: np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                                         shape=shape))
            shape = mm.shape[1:]
            mm.flush()
            del mm
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    stem = out.with_suffix("")
    atomic_write(f"{stem}.files.txt", "".join(f"{f.relative_to(root).as_posix()}\n" for f in files))
    label_path = None
    if labels is not None:
        label_path = Path(f"{stem}.labels.npy")
        buf = io.BytesIO()
        np.save(buf, labels)
        atomic_write(label_path, buf.getvalue())
    seconds = time.perf_counter() - started
    return {"out": str(out), "source": f"folder:{root}", "n": len(files), "shape": list(shape),
            "bytes": out.stat().st_size, "files": f"{stem}.files.txt",
            "labels": str(label_path) if label_path else None, "class_names": class_names,
            "seconds": round(seconds, 3), "images_per_s": round(len(files) / max(seconds, 1e-9), 1)}
