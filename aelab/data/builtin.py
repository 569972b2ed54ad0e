"""Built-in data sets: only data that ships inside installed packages, or is generated.

``digits`` is scikit-learn's 1,797 8×8 handwritten digits; ``lfw`` is the
scikit-image LFW subset (100 faces, then 100 non-faces, 25×25); ``faces``
is aelab's own procedural 64×64×3 faces, with their generating factors.
"""

from __future__ import annotations

import numpy as np

from aelab.data.imageset import ImageSet
from aelab.errors import DataError
from aelab.limits import check_fits


def digits() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ImageSet(images, d.target.astype(np.int64), name="builtin:digits",
                    class_names=[str(i) for i in range(10)])


def lfw() -> ImageSet:
    """Labels: 0 = face, 1 = non-face (the anomaly when faces are normal)."""
    from skimage.data import lfw_subset

    x = lfw_subset()
    images = np.rint(np.clip(x, 0, 1) * 255.0).astype(np.uint8)[..., None]
    labels = np.repeat(np.array([0, 1], dtype=np.int64), len(x) // 2)
    return ImageSet(images, labels, name="builtin:lfw", class_names=["face", "non-face"])


def faces(n: int = 5000, seed: int = 0, size: int = 64, anomaly_fraction: float = 0.0) -> ImageSet:
    """Labels: 0 = normal face, 1 = defective face (only with anomaly_fraction > 0)."""
    from aelab.data.faces import make_faces

    where = f"builtin:faces?n={n}&seed={seed}&size={size}&anomaly_fraction={anomaly_fraction}"
    if n > 0 and size > 0:  # images plus ~200 bytes of factors and labels per face, before drawing any
        check_fits(n * (3 * size * size + 200), f"{where}: {n:,} faces of {size}×{size}×3", error=DataError)
    try:
        images, labels, factors = make_faces(n, seed=seed, size=size, anomaly_fraction=anomaly_fraction)
    except ValueError as exc:
        raise DataError(f"builtin:faces: {exc}") from None
    if n == 0:
        raise DataError(f"{where}: n must be at least 1")
    return ImageSet(images, labels, name=where, factors=factors, class_names=["normal", "anomalous"])


BUILTINS = {
    "digits": (digits, {}),
    "lfw": (lfw, {}),
    "faces": (faces, {"n": (int, 5000), "seed": (int, 0), "size": (int, 64), "anomaly_fraction": (float, 0.0)}),
}
