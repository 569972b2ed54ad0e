"""Same input, same bytes: encode/decode give each row the same bytes whatever else is in the
request, in this process or another, for a given thread count (the promise of `aelab augment`,
`sample`, `compare-noise`, traversals and edits; see docs/generation.md).

Without the fixed blocks of ``aelab.run.ROWS`` rows (``DECODE_ROWS`` for decodes), the tiny conv
VAE below decodes a code alone differently from the same code among 64 (oneDNN picks other kernels
for small batches), so the piece-wise tests here fail."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import aelab
from aelab.codenoise import augment
from aelab.generate import sample
from aelab.run import DECODE_ROWS, ROWS, fixed_kernels

ROOT = Path(__file__).resolve().parents[1]
PIECES = (1, 2, 5, DECODE_ROWS - 1, DECODE_ROWS + 1, ROWS - 1, ROWS + 1)


@contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def in_pieces(fn, items, size: int):
    return [fn(items[i:i + size]) for i in range(0, len(items), size)]


def child_env(n_threads: int) -> dict[str, str]:
    """This checkout first on the path; ``n_threads`` torch threads in the child."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(n_threads), "MKL_NUM_THREADS": str(n_threads),
            "MPLBACKEND": "Agg"}


# -- in one process: any split of a request gives the same bytes ------------------------

# torch threads spin while they wait for each other: on a shared 2-core machine these take tens of seconds
SEVERAL_THREADS = pytest.mark.slow(reason="several torch threads on a shared machine")


@pytest.mark.parametrize("n_threads", [1, *(pytest.param(n, marks=SEVERAL_THREADS) for n in (2, 3))])
def test_decode_in_pieces_equals_one_call(tiny_vae_run: aelab.Run, n_threads: int) -> None:
    run = tiny_vae_run
    z = np.random.default_rng(0).standard_normal((3 * ROWS + 5, run.latent_size)).astype(np.float32)
    with threads(n_threads):
        whole = run.decode_tensor(z)
        assert torch.equal(whole, run.decode_tensor(z))  # the same call again
        for size in PIECES:
            assert torch.equal(torch.cat(in_pieces(run.decode_tensor, z, size)), whole), f"pieces of {size}"
        # a code alone, a code among others, and torch input, all the same bytes
        assert torch.equal(run.decode_tensor(torch.from_numpy(z[17])), whole[17:18])
        assert np.array_equal(run.decode(z[40:43]), run.preprocess.inverse(whole[40:43]))


@pytest.mark.parametrize("n_threads", [1, pytest.param(2, marks=SEVERAL_THREADS)])
def test_encode_and_reconstruct_in_pieces_equal_one_call(tiny_vae_run: aelab.Run, n_threads: int) -> None:
    run = tiny_vae_run
    images = run.splits.full.subset(np.arange(ROWS + 3))
    with threads(n_threads):
        codes, recon = run.encode(images), run.reconstruct(images)
        mean, logvar = run.encode_stats(images)
        for size in (1, 5, ROWS - 1):
            pieces = [images.subset(np.arange(i, min(i + size, len(images)))) for i in range(0, len(images), size)]
            assert np.array_equal(np.concatenate([run.encode(p) for p in pieces]), codes), f"pieces of {size}"
            if size == 5:
                assert np.array_equal(np.concatenate([run.reconstruct(p) for p in pieces]), recon)
                assert np.array_equal(np.concatenate([run.encode_stats(p)[1] for p in pieces]), logvar)
        assert np.array_equal(mean, codes)


def test_other_block_sizes_keep_the_promise_for_their_own_value(tiny_vae_run: aelab.Run) -> None:
    run = aelab.load_run(tiny_vae_run.path, rows=8, decode_rows=16)
    assert (run.rows, run.decode_rows) == (8, 16)
    assert (tiny_vae_run.rows, tiny_vae_run.decode_rows) == (ROWS, DECODE_ROWS)
    z = np.random.default_rng(2).standard_normal((19, run.latent_size)).astype(np.float32)
    whole = run.decode_tensor(z)
    for size in (1, 3, 9):
        assert torch.equal(torch.cat(in_pieces(run.decode_tensor, z, size)), whole), f"pieces of {size}"
    images = run.splits.full.subset(np.arange(19))
    codes = run.encode(images)
    for size in (1, 3, 9):
        pieces = [images.subset(np.arange(i, min(i + size, 19))) for i in range(0, 19, size)]
        assert np.array_equal(np.concatenate([run.encode(p) for p in pieces]), codes), f"pieces of {size}"
    for name in ("rows", "decode_rows"):
        for bad in (0, 5, 12):  # 5 rows on 2 threads broke the promise; 1 or multiples of 8 are accepted
            with pytest.raises(aelab.AelabError, match=f"^{name} must be 1 or a multiple of 8, got {bad}"):
                aelab.load_run(tiny_vae_run.path, **{name: bad})


def test_augment_of_one_id_equals_its_rows_among_others(tiny_vae_run: aelab.Run) -> None:
    """The docs: noise (and now the images) do not depend on which other ids were chosen."""
    run = tiny_vae_run
    alone = augment(run, [3], variants=4, sigma=0.5, seed=1)
    many = augment(run, "0-9", variants=4, sigma=0.5, seed=1)
    assert np.array_equal(alone.images, many.images[many.source_ids == 3])


def test_the_first_samples_of_a_larger_draw_are_a_smaller_draw(tiny_vae_run: aelab.Run) -> None:
    assert np.array_equal(sample(tiny_vae_run, 40, seed=3).images[:5], sample(tiny_vae_run, 5, seed=3).images)


def test_fixed_kernels_scopes_cudnn_flags_and_nests() -> None:
    """On CUDA, decoding runs with cuDNN benchmarking off and deterministic algorithms, and
    puts the caller's flags back when the last of several concurrent users leaves."""
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark, cudnn.deterministic
    cuda = torch.device("cuda")  # only the flags are touched, so this runs without a GPU
    try:
        cudnn.benchmark, cudnn.deterministic = True, False
        entered, release = threading.Event(), threading.Event()

        def other_user() -> None:
            with fixed_kernels(cuda):
                entered.set()
                release.wait(10)

        worker = threading.Thread(target=other_user)
        worker.start()
        assert entered.wait(10)
        with fixed_kernels(cuda):
            assert (cudnn.benchmark, cudnn.deterministic) == (False, True)
        assert (cudnn.benchmark, cudnn.deterministic) == (False, True)  # the other user is still inside
        release.set()
        worker.join(10)
        assert (cudnn.benchmark, cudnn.deterministic) == (True, False)
        with fixed_kernels(torch.device("cpu")):
            assert (cudnn.benchmark, cudnn.deterministic) == (True, False)  # the CPU path changes nothing
    finally:
        cudnn.benchmark, cudnn.deterministic = before


# -- across processes ----------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.cli import main

run, out, wide = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "wide"


def cli(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


cli("augment", run, "--ids", "1-5", "--variants", 5, "--sigma", 0.5, "--seed", 7, "--out", out / "aug.npz")
cli("sample", run, "-n", 9, "--seed", 7, "--out", out / "samples.png", "--save", out / "samples.npz")
if wide:
    cli("augment", run, "--ids", "0-9", "--variants", 5, "--sigma", 0.5, "--seed", 7, "--out", out / "wide.npz")
z = np.load(out.parent / "z.npy")
r = aelab.load_run(run)
pieces = {str(size): torch.cat([r.decode_tensor(z[i:i + size]) for i in range(0, len(z), size)]).numpy()
          for size in (1, 5)}
np.savez(out / "decoded.npz", threads=torch.get_num_threads(), **pieces)
"""
CHILD_THREADS = 2


@pytest.fixture(scope="module")
def two_processes(tiny_vae_run: aelab.Run, tmp_path_factory) -> Path:
    """Two fresh processes (at once) each run `aelab augment` and `aelab sample` through the CLI
    entry point and decode the same codes in pieces of 1 and of 5; the second also augments a
    wider id range. Files land in a/ and b/."""
    root = tmp_path_factory.mktemp("two_processes")
    z = np.random.default_rng(5).standard_normal((ROWS + 3, tiny_vae_run.latent_size)).astype(np.float32)
    np.save(root / "z.npy", z)
    children = []
    for name, wide in (("a", "narrow"), ("b", "wide")):
        (root / name).mkdir()
        children.append(subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_vae_run.path), str(root / name), wide],
                                         env=child_env(CHILD_THREADS), cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True))
    for child in children:
        output, _ = child.communicate(timeout=300)
        assert child.returncode == 0, output
    return root


@pytest.mark.slow
def test_augment_and_sample_commands_write_the_same_bytes_in_two_processes(two_processes: Path) -> None:
    a, b = two_processes / "a", two_processes / "b"
    assert (a / "aug.npz").read_bytes() == (b / "aug.npz").read_bytes()
    assert (a / "samples.npz").read_bytes() == (b / "samples.npz").read_bytes()
    with np.load(a / "aug.npz") as aug, np.load(b / "wide.npz") as wide:  # ids 1-5 among 0-9, in the other process
        assert aug["images"].shape == (25, 16, 16, 3)
        assert np.array_equal(aug["images"], wide["images"][np.isin(wide["source_ids"], [1, 2, 3, 4, 5])])


@pytest.mark.slow(reason="two processes that import torch and run the CLI")
def test_decode_in_another_process_and_layout_is_bit_identical(tiny_vae_run: aelab.Run, two_processes: Path) -> None:
    z = np.load(two_processes / "z.npy")
    with threads(CHILD_THREADS):
        whole = tiny_vae_run.decode_tensor(z).numpy()
    for name in ("a", "b"):
        with np.load(two_processes / name / "decoded.npz") as child:
            assert int(child["threads"]) == CHILD_THREADS
            for size in ("1", "5"):
                assert child[size].tobytes() == whole.tobytes(), f"pieces of {size} in child {name}"
