"""Several processes, one run: torch.distributed set up from the environment torchrun gives.

``torchrun --nproc_per_node=N -m aelab train CONFIG`` starts N processes and
sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in each; ``setup``
reads them and starts the process group (NCCL for CUDA devices, gloo on CPU).
A plain ``aelab train`` sees no WORLD_SIZE and gets ``Dist()``: one process, and
every helper here degrades to a no-op, so single-process code pays nothing.

Conventions every distributed command keeps: rank 0 alone touches the output
folder (``run_on_main`` shares its result or error with every rank, so a bad
``--out`` stops all ranks with the same one-line message instead of a hang),
and numbers are reduced so what rank 0 writes is the global value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist

from aelab.errors import AelabError

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job. ``Dist()`` is the single-process default."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owned: bool = False
    """True when ``setup`` started the process group (and ``teardown`` should end it)."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment variables; (0, 1, 0) without them."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise AelabError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None


def current() -> Dist:
    """The job as it stands: an already started process group, else the environment (not started)."""
    if tdist.is_available() and tdist.is_initialized():
        return Dist(tdist.get_rank(), tdist.get_world_size(), env_world()[2], tdist.get_backend())
    rank, world, local = env_world()
    return Dist(rank, world, local)


def joined() -> Dist:
    """The process group this process has joined, or ``Dist()`` when it has joined none."""
    return current() if tdist.is_available() and tdist.is_initialized() else Dist()


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def setup(device: torch.device, timeout_s: float = 1800.0) -> Dist:
    """Join the process group torchrun describes (a no-op for one process, or when already joined)."""
    if tdist.is_available() and tdist.is_initialized():
        return current()
    rank, world, local = env_world()
    if world <= 1:
        return Dist()
    if not tdist.is_available():
        raise AelabError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = backend_for(device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise AelabError(f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} CUDA devices; "
                             f"use --nproc_per_node={torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(local)
    tdist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Dist(rank, world, local, backend, owned=True)


def teardown(d: Dist) -> None:
    if d.owned and tdist.is_initialized():
        # Leave together: a rank that destroyed its gloo group while another still held its own
        # sometimes aborted at exit ("terminate called without an active exception").
        tdist.barrier()
        tdist.destroy_process_group()


def device_for(device: torch.device, d: Dist) -> torch.device:
    """Each process of a multi-GPU job drives the GPU of its local rank."""
    if d.active and device.type == "cuda":
        return torch.device("cuda", d.local_rank)
    return device


def _comm_device(d: Dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if d.backend == "nccl" else torch.device("cpu")


# -- collectives that are no-ops for one process -------------------------------------

def barrier(d: Dist) -> None:
    if d.active:
        tdist.barrier()


def all_reduce_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of ``values`` over all ranks (a new tensor on the values' device)."""
    if not d.active:
        return values
    buf = values.detach().to(_comm_device(d), torch.float64 if values.is_floating_point() else values.dtype,
                             copy=True)
    tdist.all_reduce(buf, op=tdist.ReduceOp.SUM)
    return buf.to(values.device)


def weighted_mean(values: dict[str, float | torch.Tensor], n: int, d: Dist) -> tuple[dict[str, float], int]:
    """Global mean of per-rank means ``values`` over ``n`` local items each; one all-reduce for all keys."""
    local = torch.tensor([float(v) for v in values.values()] + [1.0], dtype=torch.float64) * n
    total = all_reduce_sum(local, d).tolist()
    count = total[-1]
    return {k: t / max(count, 1e-12) for k, t in zip(values, total[:-1], strict=True)}, int(round(count))


def broadcast_object(obj: T, d: Dist, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; for small control data and checkpoints)."""
    if not d.active:
        return obj
    box = [obj if d.rank == src else None]
    tdist.broadcast_object_list(box, src=src, device=_comm_device(d) if d.backend == "nccl" else None)
    return box[0]  # type: ignore[return-value]


def run_on_main(fn: Callable[[], T], d: Dist) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank.

    An ``AelabError`` on rank 0 is raised on every rank with the same message,
    and any other failure stops the other ranks too, instead of leaving them
    waiting at the next collective."""
    if not d.active:
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    failure: BaseException | None = None
    if d.main:
        try:
            outcome = ("ok", fn())
        except AelabError as exc:
            outcome, failure = ("error", exc), exc
        except BaseException as exc:
            outcome, failure = ("crash", f"{type(exc).__name__}: {exc}"), exc
    kind, value = broadcast_object(outcome, d)
    if failure is not None:
        raise failure
    if kind == "error":
        raise value
    if kind == "crash":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def gather_to_main(array: np.ndarray, d: Dist) -> np.ndarray | None:
    """Concatenate every rank's ``array`` in rank order on rank 0 (None elsewhere).

    With shards from ``shard_range`` the result is in the original order."""
    if not d.active:
        return array
    parts: list[Any] | None = [None] * d.world if d.main else None
    tdist.gather_object(array, parts, dst=0)
    return np.concatenate(parts) if parts is not None else None


def all_gather_rows(array: np.ndarray, d: Dist) -> np.ndarray:
    """Every rank's ``array`` concatenated in rank order, on every rank (per-image results of shards)."""
    if not d.active:
        return array
    parts: list[Any] = [None] * d.world
    tdist.all_gather_object(parts, np.asarray(array))
    return np.concatenate(parts)


# -- sharding --------------------------------------------------------------------------

def shard_range(n: int, rank: int, world: int) -> range:
    """The contiguous part of 0..n-1 that ``rank`` of ``world`` handles; sizes differ by at most one.

    Concatenated in rank order the shards are 0..n-1 again, which is how
    ``gather_to_main`` puts per-item results back in id order."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard_of(images: S, d: Dist) -> S:
    """This rank's contiguous part of an ImageSet or array (all of it for one process)."""
    if not d.active:
        return images
    part = shard_range(len(images), d.rank, d.world)
    if hasattr(images, "subset"):
        return images.subset(np.arange(part.start, part.stop))  # type: ignore[union-attr,return-value]
    return images[part.start:part.stop]  # type: ignore[index,return-value]


def check_batch_size(batch_size: int, world: int) -> int:
    """Images per rank in each step; the global batch must split evenly over the ranks."""
    if batch_size % world:
        lower, upper = batch_size // world * world, -(-batch_size // world) * world
        options = " or ".join(str(b) for b in dict.fromkeys(b for b in (lower, upper) if b > 0))
        raise AelabError(f"train.batch_size {batch_size} does not split evenly over {world} processes; "
                         f"use a multiple of {world} (e.g. {options})")
    return batch_size // world
