"""The images a run is explored on: its splits by name (val, train, test where the run has them, or
the ``--data`` source), and finding an image id in them with an error that says where it is instead."""

from __future__ import annotations

from typing import Any

import numpy as np

from aelab.data.imageset import ImageSet
from aelab.run import Run

LABELS = {"val": "validation", "train": "training", "test": "test", "data": "--data"}
"""What the page calls each split."""


class SplitError(LookupError):
    """An unknown split or an id not in a split; ``status`` is the HTTP status it is answered with."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status


class ServedImages:
    """A run's splits by name, the first the default: validation (held out), training and the source's
    own test split, in that order, or the one ``data`` source. Ids stay rows of their source, as
    ``aelab edit --id`` reads them: training and validation ids are rows of the run's data source; test
    ids are rows of its test split, a source of its own (``source`` names it for the command)."""

    def __init__(self, run: Run, data: str | None = None):
        self.sets: dict[str, ImageSet] = {}
        if data is not None:
            self.sets["data"] = run.data(data)
        else:
            splits = run.splits
            if splits.val is not None:
                self.sets["val"] = splits.val
            self.sets["train"] = splits.train
            if splits.full.test is not None:
                self.sets["test"] = splits.full.test
        self.default = next(iter(self.sets))
        self.data = data
        self._lookups: dict[str, np.ndarray] = {}

    def name(self, split: str | None) -> str:
        """``split``, or the default when None; an unknown or absent split is a 404 naming those there are."""
        if split is None:
            return self.default
        if split not in self.sets:
            raise SplitError(f"this run has no {LABELS.get(split, split)} split; it has "
                             f"{', '.join(f'{s} ({LABELS[s]})' for s in self.sets)}")
        return split

    def get(self, split: str | None) -> ImageSet:
        return self.sets[self.name(split)]

    def source(self, split: str | None) -> str | None:
        """The ``--data`` the ``aelab edit`` command needs for ids of this split (None: the run's own source)."""
        split = self.name(split)
        if split == "data":
            return self.data
        return self.sets["test"].name if split == "test" else None

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": s, "label": LABELS[s], "n_images": len(d), "source": d.name} for s, d in self.sets.items()]

    def positions(self, split: str | None, ids: list[int] | np.ndarray) -> np.ndarray:
        """Where each id (a row of the split's source) is in ``split``: int64, -1 for one not there. One
        indexing into the split's ``ImageSet.lookup``, built on first use and kept (the splits never change)."""
        split = self.name(split)
        if split not in self._lookups:
            self._lookups[split] = self.sets[split].lookup()
        lookup, ids = self._lookups[split], np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.full(len(ids), -1, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(lookup))
        out[inside] = lookup[ids[inside]]
        return out

    def position(self, split: str | None, image_id: int) -> int:
        """Where image ``image_id`` is in ``split``; a 404 that says which split has it when this one does not."""
        split = self.name(split)
        found = int(self.positions(split, [image_id])[0])
        if found >= 0:
            return found
        images = self.sets[split]
        if not 0 <= image_id < len(images.images):
            raise SplitError(f"no image with id {image_id} in the {LABELS[split]} split (its ids are rows "
                             f"0..{len(images.images) - 1} of {images.name or 'the data'})")
        # train and val share their source's ids; the test split has ids of its own
        elsewhere = [s for s in self.sets if s not in (split, "test", "data") and self.positions(s, [image_id])[0] >= 0]
        hint = f"; it is in the {LABELS[elsewhere[0]]} split" if elsewhere else ""
        raise SplitError(f"image {image_id} is not in the {LABELS[split]} split of {len(images)} images{hint}")

    def by_ids(self, split: str | None, ids: list[int]) -> ImageSet:
        """The images with ``ids`` in ``split``, found together; the first id not there is a 404 as ``position``'s."""
        pos = self.positions(split, ids)
        if (pos < 0).any():
            self.position(split, int(np.asarray(ids)[np.flatnonzero(pos < 0)[0]]))
        return self.get(split).subset(pos)
