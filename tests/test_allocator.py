"""keep_freed_memory: a training step's large tensors reuse freed memory instead of fresh kernel pages."""

import resource

import pytest
import torch

from aelab import allocator
from aelab.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(allocator._LIBC is None, reason="glibc only")
BIG = 64 << 20  # above glibc's largest mmap threshold (32 MiB)


def page_faults_of(cycles: int) -> int:
    """Minor page faults of allocating, touching and freeing a 64 MiB tensor ``cycles`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        t = torch.empty(BIG, dtype=torch.uint8)
        t.fill_(1)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_freed_memory_is_reused_only_inside_the_context():
    pages = BIG // resource.getpagesize()
    assert page_faults_of(4) >= 3 * pages  # glibc default: fresh pages every time
    with keep_freed_memory():
        page_faults_of(8)  # the heap grows for the first few (small objects take parts of the freed block)
        assert page_faults_of(4) < pages // 4  # then it stays: the same memory serves every cycle
        assert allocator.active()
    assert not allocator.active()
    assert page_faults_of(4) >= 3 * pages  # defaults are back


def test_contexts_nest():
    pages = BIG // resource.getpagesize()
    with keep_freed_memory():
        with keep_freed_memory():
            page_faults_of(8)
        # the inner exit leaves the settings alone while the outer user is still inside
        assert allocator.active()
        assert page_faults_of(4) < pages // 4
    assert not allocator.active()
