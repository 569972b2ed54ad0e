"""The order in which an epoch visits the training images.

In-memory data gets a full seeded permutation. Memory-mapped data gets a
permutation of contiguous blocks, shuffled again within a small window, so a
file on disk is read in long forward runs instead of one random row at a time
while batches still mix images from far-apart parts of the file.
"""

from __future__ import annotations

import numpy as np

from aelab.data.imageset import ImageSet

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
