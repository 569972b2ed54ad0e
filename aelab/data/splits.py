"""The data a config names, split the way training split it.

Training and every later analysis call ``make_splits`` with the same config,
so the validation images of a Run are found again without storing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aelab.config import Config, DataConfig, config_from_dict
from aelab.data.imageset import ImageSet
from aelab.data.sources import load_images
from aelab.data.transforms import MinMax, Preprocess, Resize, fit_steps

FIT_BATCH = 4096  # training images per batch while fitting preprocessing statistics


@dataclass
class Splits:
    full: ImageSet
    train: ImageSet
    val: ImageSet | None

    @property
    def held_out(self) -> ImageSet:
        """Where a run is measured: the validation split, or the training split when there is none."""
        return self.val if self.val is not None else self.train


def load_for(data: DataConfig, source: str | ImageSet | None = None, labels: str | None = None) -> ImageSet:
    """Load ``source`` (default: the config's) with the config's label file and
    the load-time resize that lets a folder of mixed sizes be read."""
    pre = Preprocess(data.preprocess, data.range)
    first = pre.steps[0] if pre.steps else None
    size = (first.height, first.width) if isinstance(first, Resize) else None
    if source is None:
        source, labels = data.source, labels or data.labels
    return load_images(source, labels=labels, size=size)


def make_splits(data: DataConfig, seed: int) -> Splits:
    """Train / validation images of ``data``; drawn with ``data.split_seed`` when set, else ``seed`` (the run's)."""
    seed = seed if data.split_seed is None else data.split_seed
    full = load_for(data)
    kept = full.select_labels(data.select_labels) if data.select_labels else full
    kept = limit(kept, data, seed)
    train, val = kept.split(data.val_fraction, seed)
    return Splits(full, train, val)


LIMIT_STREAM = 1  # data.limit_mode random draws from its own seeded stream, apart from the split's


def limit(images: ImageSet, data: DataConfig, seed: int) -> ImageSet:
    """The ``data.limit`` images a run uses (the validation split is then taken from them): the first N,
    or a seeded random N kept in source order; all of them when there are no more than N."""
    n = data.limit
    if n is None or n >= len(images):
        return images
    if data.limit_mode == "first":
        return images.subset(np.arange(n))
    return images.subset(np.sort(np.random.default_rng([seed, LIMIT_STREAM]).choice(len(images), n, replace=False)))


def fit_preprocess(cfg: Config) -> Config:
    """``cfg`` with every ``minmax: fit`` step fitted on its training split and written back as
    ``minmax: [lo, hi]``, so the Run's resolved config reproduces the scaling; unchanged otherwise."""
    steps = Preprocess(cfg.data.preprocess, cfg.data.range).steps
    if not any(isinstance(s, MinMax) and not s.fitted for s in steps):
        return cfg
    train = make_splits(cfg.data, cfg.seed).train
    raw = cfg.to_dict()
    raw["data"]["preprocess"] = fit_steps(cfg.data.preprocess, lambda: (
        train.batch(slice(i, i + FIT_BATCH)) for i in range(0, len(train), FIT_BATCH)))
    return config_from_dict(raw)
