"""Data larger than memory: bounded read-ahead from memory maps, and folders packed into .npy caches."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from aelab.data.batches import ReadAhead, read_batch, release_pages
from aelab.data.imageset import ImageSet

LINUX = sys.platform.startswith("linux")


def write_npy(path: Path, n: int, shape=(64, 64, 3)) -> Path:
    """An n-image uint8 .npy written block by block (never all in this process's memory)."""
    block = np.random.default_rng(0).integers(0, 256, (1024, *shape), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (n, *shape)})
        for start in range(0, n, len(block)):
            fh.write(block[:min(len(block), n - start)].tobytes())
    return path


def rss_file_mb() -> float:
    """Resident file-backed memory of this process (what a memory map's touched pages count as)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


# -- read-ahead -------------------------------------------------------------------------

def test_read_ahead_gives_the_batches_in_order(tmp_path):
    data = ImageSet(np.load(write_npy(tmp_path / "a.npy", 300, (4, 4, 1)), mmap_mode="r")).subset(np.arange(1, 300))
    rng = np.random.default_rng(1)
    batches = [rng.permutation(len(data))[:k] for k in (7, 32, 1, 64, 5)] + [slice(10, 20)]
    for depth in (0, 1, 3):
        got = list(ReadAhead(data, batches, depth=depth))
        assert len(got) == len(batches)
        for b, g in zip(batches, got, strict=True):
            np.testing.assert_array_equal(g, data.batch(b))
            assert g.dtype == np.uint8 and g.flags.c_contiguous


def test_read_ahead_stops_its_thread_and_passes_errors_on(tmp_path):
    data = ImageSet(np.zeros((50, 2, 2, 1), np.uint8))
    before = threading.active_count()
    for i, _ in enumerate(ReadAhead(data, [np.arange(5)] * 40, depth=2)):
        if i == 3:
            break  # the consumer leaves early (max_steps): the reader must not linger
    assert threading.active_count() == before
    with pytest.raises(IndexError):
        list(ReadAhead(data, [np.arange(5), np.array([99])], depth=2))
    assert threading.active_count() == before


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_reading_a_memory_map_leaves_no_pages_resident(tmp_path):
    path = write_npy(tmp_path / "m.npy", 6000)  # 74 MB
    mapped = np.load(path, mmap_mode="r")
    data = ImageSet(mapped)
    base = rss_file_mb()
    batches = [np.arange(s, min(s + 256, len(data))) for s in range(0, len(data), 256)]
    for _ in ReadAhead(data, batches):
        pass
    assert rss_file_mb() - base < 16
    for b in batches:  # the same reads without unmapping keep the whole file resident
        data.batch(b)
    assert rss_file_mb() - base > 60
    release_pages(mapped)
    assert rss_file_mb() - base < 16
    release_pages(np.zeros(3))  # not a map: nothing to do
    assert read_batch(data, slice(0, 2)).shape == (2, 64, 64, 3)


CHILD = r'''
import json, resource, sys
import aelab
source, out, epochs, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
data = {"source": f"npy:{source}", "val_fraction": val, "preprocess": [{"center_crop": 8}]}
run = aelab.train({"name": "big", "data": data,
                   "model": {"type": "fcn", "hidden": [16], "latent_dim": 4},
                   "train": {"epochs": epochs, "batch_size": 256, "eval_batch_size": 64, "threads": 1}},
                  out=out)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "n_train": run.summary["n_train"], "steps": run.summary["steps"]}))
'''


@pytest.mark.skipif(not LINUX, reason="ru_maxrss units and madvise are Linux's")
def test_training_from_a_file_larger_than_its_memory_budget(tmp_path):
    """A 300 MB file costs about what a 12 MB one does: the file's pages are not kept resident."""
    big = write_npy(tmp_path / "big.npy", 24_576)  # 302 MB
    small = write_npy(tmp_path / "small.npy", 1024)  # 12.6 MB
    (tmp_path / "child.py").write_text(CHILD)

    def peak(source: Path, epochs: int, val: float) -> dict:
        out = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(source), str(tmp_path / source.stem),
                              str(epochs), str(val)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    # the same number of steps and the same 64 validation images, so only the file size differs
    a = peak(small, 24, 64 / 1024)
    b = peak(big, 1, 64 / 24_576)
    assert b["n_train"] == 24_576 - 64 and abs(a["steps"] - b["steps"]) <= 2
    assert b["peak_mb"] - a["peak_mb"] < 150, (a, b)
    assert b["peak_mb"] < a["peak_mb"] + big.stat().st_size / 2**20 / 2
