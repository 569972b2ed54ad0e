"""The order in which an epoch visits the training images.

In-memory data gets a full seeded permutation. Memory-mapped data gets a
permutation of contiguous blocks, shuffled again within a small window, so a
file on disk is read in long forward runs instead of one random row at a time
while batches still mix images from far-apart parts of the file.

Training reads an epoch as global batches (``epoch_batches``); with several
processes each takes its contiguous part of every batch (``shard_batch``), so
the ranks' parts together are exactly the one-process batch. ``ReadAhead``
reads the next batches in a background thread and unmaps what it read, so
memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import contextlib
import mmap
import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from aelab.data.imageset import ImageSet
from aelab.data.transforms import Preprocess

BLOCK = 64  # rows read together from a memory-mapped file
WINDOW = 16  # blocks whose rows are mixed with each other


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def epoch_order(n: int, seed: int, epoch: int, data: ImageSet | None = None) -> np.ndarray:
    """Positions 0..n-1 in this epoch's seeded order."""
    rng = epoch_rng(seed, epoch)
    if data is None or not isinstance(data.images, np.memmap) or n <= BLOCK * 2:
        return rng.permutation(n)
    starts = rng.permutation(np.arange(0, n, BLOCK))
    blocks = [np.arange(s, min(s + BLOCK, n)) for s in starts]
    order = []
    for w in range(0, len(blocks), WINDOW):
        window = np.concatenate(blocks[w:w + WINDOW])
        order.append(window[rng.permutation(len(window))])
    return np.concatenate(order)


# -- steps, shards and read-ahead (training reads through these) -------------------------

def _keep_last(rest: int, n: int, world: int) -> bool:
    """A short last batch is kept when every rank gets two images (BatchNorm needs two)."""
    return rest >= 2 * world or (world == 1 and rest == 1 and n == 1)


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if _keep_last(rest, n, world) else 0)


def epoch_batches(order: np.ndarray, batch_size: int, world: int = 1) -> list[np.ndarray]:
    """The global batches of one epoch: ``batch_size`` consecutive positions of ``order`` each."""
    n = len(order)
    return [order[s:s + batch_size] for s in range(0, steps_per_epoch(n, batch_size, world) * batch_size, batch_size)]


def shard_batch(positions: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous part of a global batch; the ranks' parts together are the batch, in order."""
    from aelab.distributed import shard_range

    part = shard_range(len(positions), rank, world)
    return positions[part.start:part.stop]


def release_pages(images: np.ndarray) -> None:
    """Drop a memory map's pages from this process (the OS page cache keeps them).

    Rows read through a memory map stay mapped, and counted in the process's
    resident memory, until the map is closed; an epoch over a 10 GB file would
    end with 10 GB resident. After each read the pages are unmapped instead, so
    resident memory stays at the batches in flight."""
    mm = getattr(images, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # a closed map, or a platform that refuses the advice
            mm.madvise(mmap.MADV_DONTNEED)


Positions = np.ndarray | slice


def read_batch(data: ImageSet, positions: Positions) -> np.ndarray:
    """uint8 images at ``positions``, leaving no memory-mapped pages behind.

    A contiguous slice of a memory map comes back from ``ImageSet.batch`` as a view of the map,
    which would read the file later (in the consumer, after the pages were dropped); it is
    copied here, so the read happens now and the batch owns its memory."""
    batch = data.batch(positions)
    if isinstance(data.images, np.memmap) and np.may_share_memory(batch, data.images):
        batch = batch.copy()
    release_pages(data.images)
    return batch


class ReadAhead:
    """Reads batches ``depth`` ahead of the consumer in a background thread.

    File reads and numpy copies release the GIL, so the next batches come off
    the disk (or the memory map) while the model computes on this one. For a
    CUDA ``device`` the thread also pins each batch and copies it to the GPU on
    a side stream, so host-to-device copies overlap the compute stream; the
    consumer gets uint8 tensors already on the GPU. Memory is bounded: at most
    ``depth`` + 2 batches exist at a time."""

    def __init__(self, data: ImageSet, batches: Sequence[Positions], depth: int = 2,
                 device: torch.device | None = None):
        self.data, self.batches, self.depth = data, list(batches), depth
        self.cuda = device is not None and device.type == "cuda"
        if self.cuda:
            assert device is not None
            # the thread has its own current device, so name the index explicitly
            self.device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
            self.stream = torch.cuda.Stream(self.device)

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, positions: Positions) -> object:
        batch = read_batch(self.data, positions)
        if not self.cuda:
            return batch
        pinned = torch.from_numpy(batch).pin_memory()
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            on_gpu = pinned.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return on_gpu, ready

    def _hand_over(self, item: object) -> np.ndarray | torch.Tensor:
        if not self.cuda:
            return item  # type: ignore[return-value]
        on_gpu, ready = item  # type: ignore[misc]
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(ready)  # the model's kernels start after the copy, without blocking the host
        on_gpu.record_stream(compute)  # and its memory is not reused while they still read it
        return on_gpu

    def __iter__(self) -> Iterator[np.ndarray | torch.Tensor]:
        if self.depth < 1 or len(self.batches) < 2:
            for positions in self.batches:
                yield self._hand_over(self._read(positions))
            return
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                for positions in self.batches:
                    if stop.is_set():
                        return
                    put(self._read(positions))
                put(_END)
            except BaseException as exc:  # handed to the consumer, which raises it
                put(_Failed(exc))

        thread = threading.Thread(target=work, name="aelab-read-ahead", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield self._hand_over(item)
        finally:
            stop.set()
            thread.join()


_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


READ_AHEAD = 2
"""Batches ``model_batches`` reads ahead in a thread by default (0: read in the caller's thread)."""


def model_batches(data: ImageSet | np.ndarray, batch_size: int, pre: Preprocess, device: torch.device,
                  memory_format: torch.memory_format = torch.contiguous_format,
                  depth: int = READ_AHEAD) -> Iterator[torch.Tensor]:
    """``data`` in consecutive batches of ``batch_size`` images, preprocessed onto ``device``.

    The one path from stored images to model input outside the training steps (the Trainer's
    evaluation, and every ``Run.batches`` caller: encode, decode, evaluate, score): read through
    ``ReadAhead``, so memory-mapped pages are released after each batch and, on CUDA, batches
    are pinned and copied on a side stream. ``depth`` 0 reads synchronously (still releasing
    pages), for callers where a second thread only competes with the model for the cores."""
    images = data if isinstance(data, ImageSet) else ImageSet(data)
    chunks = [slice(start, start + batch_size) for start in range(0, len(images), batch_size)]
    for batch in ReadAhead(images, chunks, depth=depth, device=device):
        yield pre(batch, device, memory_format=memory_format)
