"""ImageSet: what every data source returns.

Images stay uint8 N×H×W×C (possibly a read-only memory map of a file) until a
batch is needed; subsets are index arrays over the same storage, so holding
out a validation split or selecting labels never copies the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Layout = Literal["nhwc", "nchw", "nhw"]


@dataclass(frozen=True)
class SourceFormat:
    """How the source stored its images (aelab keeps them uint8 N×H×W×C whatever it was), so what
    aelab writes back (``aelab augment``) can match the student's own arrays."""

    layout: Layout = "nhwc"
    """nhwc (channels last), nchw (channels first) or nhw (one channel, no channel axis)."""
    dtype: str = "uint8"
    """The stored dtype's name: uint8, float32, float64, int64 ..."""
    range: tuple[float, float] = (0.0, 255.0)
    """The values' scale: (0, 255) for integer images, (0, 1) for float ones (the only float range
    the loaders accept)."""

    @property
    def is_float(self) -> bool:
        return np.dtype(self.dtype).kind == "f"

    def to_dict(self) -> dict[str, object]:
        return {"layout": self.layout, "dtype": self.dtype, "range": list(self.range)}


@dataclass
class ImageSet:
    images: np.ndarray
    """uint8 N×H×W×C storage (may be an np.memmap); read through ``batch``."""
    labels: np.ndarray | None = None
    """int64 per stored image, or None when the source has no labels."""
    name: str = ""
    factors: dict[str, np.ndarray] | None = None
    """Per-image generating factors (``builtin:faces``), aligned with storage."""
    class_names: list[str] | None = None
    test: ImageSet | None = None
    """The source's own test split, when it has one (npz x_test, IDX t10k)."""
    index: np.ndarray | None = field(default=None, repr=False)
    """Rows of ``images`` that belong to this set (None: all, in order)."""
    source_format: SourceFormat = field(default_factory=SourceFormat)
    """The layout, dtype and value range the source stored (subsets keep it)."""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"ImageSet needs uint8 N×H×W×C, got {self.images.dtype} {self.images.shape}")

    # -- size and shape ---------------------------------------------------
    def __len__(self) -> int:
        return len(self.images) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def ids(self) -> np.ndarray:
        """Stable ids: the row of each image in the source (0..N-1)."""
        return np.arange(len(self.images)) if self.index is None else self.index

    # -- reading -----------------------------------------------------------
    def batch(self, positions: np.ndarray | slice | None = None) -> np.ndarray:
        """uint8 images at ``positions`` (positions in this set, not ids).

        Rows are read in ascending storage order, then put back in the asked
        order, so a memory-mapped file is read forwards."""
        rows = self.rows(positions)
        if isinstance(rows, slice):
            return np.ascontiguousarray(self.images[rows])
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        out[order] = self.images[rows[order]]
        return out

    def rows(self, positions: np.ndarray | slice | None = None) -> np.ndarray | slice:
        if positions is None:
            positions = slice(None)
        if self.index is None:
            return positions if isinstance(positions, slice) else np.asarray(positions, dtype=np.int64)
        return self.index[positions]

    def label_batch(self, positions: np.ndarray | slice | None = None) -> np.ndarray | None:
        if self.labels is None:
            return None
        return np.asarray(self.labels[self.rows(positions)])

    def get_labels(self) -> np.ndarray | None:
        return self.label_batch(None)

    def get_factors(self) -> dict[str, np.ndarray] | None:
        if self.factors is None:
            return None
        rows = self.rows(None)
        return {k: np.asarray(v[rows]) for k, v in self.factors.items()}

    # -- subsets -----------------------------------------------------------
    def subset(self, positions: np.ndarray) -> ImageSet:
        """A view on the images at ``positions`` (no copy of the pixels)."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"positions outside 0..{len(self) - 1}")
        return replace(self, index=np.asarray(np.arange(len(self.images)) if self.index is None
                                              else self.index)[positions], test=None)

    def lookup(self) -> np.ndarray:
        """Per source row, its position in this set (-1: not in it): int64 of the source's length, so many
        ids are found with one indexing (``by_ids``, the explorer's splits)."""
        out = np.full(len(self.images), -1, dtype=np.int64)
        out[self.ids] = np.arange(len(self))
        return out

    def by_ids(self, ids: list[int] | np.ndarray, id_base: int = 0) -> ImageSet:
        """The images whose stable ids are ``ids``, counted from ``id_base`` (0: rows; 1: homework lists).
        An id outside the source names itself, the base and the valid range."""
        from aelab.data.ids import from_rows, to_rows
        from aelab.errors import DataError

        rows = to_rows(ids, len(self.images), id_base, self.name or "data")
        pos = self.lookup()[rows]
        if (pos < 0).any():
            shown = ", ".join(map(str, from_rows(rows[pos < 0][:10], id_base).tolist()))
            raise DataError(f"{self.name or 'data'}: id {shown} is not in this subset of {len(self)} images")
        return self.subset(pos)

    def select_labels(self, keep: list[int]) -> ImageSet:
        from aelab.errors import DataError

        if self.labels is None:
            raise DataError(f"{self.name}: data.select_labels given but the source has no labels")
        mask = np.isin(self.get_labels(), keep)
        if not mask.any():
            have = np.unique(self.get_labels())
            raise DataError(
                f"{self.name}: data.select_labels {keep} keeps no image (labels present: {have.tolist()[:20]})"
            )
        return self.subset(np.flatnonzero(mask))

    def split(self, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
        """A seeded (train, validation) split; validation is None for fraction 0."""
        n_val = int(round(len(self) * val_fraction))
        if n_val == 0:
            return self, None
        if n_val >= len(self):
            from aelab.errors import DataError

            raise DataError(f"{self.name}: data.val_fraction {val_fraction} leaves no training image of {len(self)}")
        perm = np.random.default_rng(seed).permutation(len(self))
        return self.subset(np.sort(perm[n_val:])), self.subset(np.sort(perm[:n_val]))
