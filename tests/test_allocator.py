"""keep_freed_memory: a training step's large tensors reuse freed memory instead of fresh kernel pages."""

import json
import resource
import subprocess
import sys

import pytest
import torch

import aelab.train  # noqa: F401  the heap layout training has (a bare `import aelab` is lazy and leaves another)
from aelab import allocator
from aelab.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
BIG = 128 << 20  # above glibc's largest mmap threshold (32 MiB) and the free heap top it keeps (< 64 MiB)


def page_faults_of(cycles: int, size: int = BIG) -> int:
    """Minor page faults of allocating, touching and freeing a ``size``-byte tensor ``cycles`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        t = torch.empty(size, dtype=torch.uint8)
        t.fill_(1)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


# In a fresh process, so that no earlier test has left large free blocks in the heap.
SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_allocator import page_faults_of
import aelab.train  # the process as training has it (import aelab alone is lazy and leaves another heap layout)
from aelab.allocator import keep_freed_memory

def resident_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

outside = page_faults_of(3)
with keep_freed_memory():
    page_faults_of(8)  # the heap grows for the first few (small objects take parts of the freed block)
    inside = page_faults_of(4)
    kept = resident_mib()
print(json.dumps({{"outside": outside, "inside": inside, "kept_mib": kept, "after_mib": resident_mib()}}))
"""


@pytest.mark.slow(reason="a fresh process that imports torch and touches 1.9 GB of pages")
def test_freed_memory_is_reused_inside_and_given_back_after():
    tests = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    pages = BIG // resource.getpagesize()
    assert r["outside"] >= 2 * pages  # glibc's default: fresh pages from the kernel (nearly) every time
    assert r["inside"] < pages // 4  # kept: the same memory serves every cycle
    assert r["kept_mib"] - r["after_mib"] >= 0.75 * BIG / 2**20  # leaving gives the kept memory back


def test_contexts_nest():
    pages = BIG // resource.getpagesize()
    with keep_freed_memory():
        with keep_freed_memory():
            page_faults_of(8)
        # the inner exit leaves the settings alone while the outer user is still inside
        assert allocator.active()
        assert page_faults_of(4) < pages // 4
    assert not allocator.active()
