"""The built-in faces: shapes, determinism, anomaly bookkeeping, and that every factor and every
defect actually shows in the pixels (the point of the data set)."""

from __future__ import annotations

import numpy as np
import pytest

from aelab.data.faces import ANOMALY_KINDS, FACTOR_NAMES, make_faces

SIGNED = {"mouth_curve", "head_turn", "light_direction"}


@pytest.fixture(scope="module")
def normal_faces() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    images, labels, factors = make_faces(2000, seed=3)
    assert not labels.any()
    return images.astype(np.float32), factors


@pytest.fixture(scope="module")
def mixed_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """800 faces with 40% defects, and the same 800 faces without defects."""
    images, labels, factors = make_faces(800, seed=4, anomaly_fraction=0.4)
    clean = make_faces(800, seed=4)[0]
    return images.astype(np.float32), clean.astype(np.float32), labels, factors


def test_public_names() -> None:
    assert ANOMALY_KINDS == ("no_eyes", "smeared", "wrong_colours", "occluded")
    assert len(FACTOR_NAMES) == len(set(FACTOR_NAMES)) >= 10
    assert {"skin_tone", "hair_colour", "eye_size", "eye_spacing", "mouth_curve", "head_turn", "head_size",
            "light_direction", "background_tone"} <= set(FACTOR_NAMES)


@pytest.mark.parametrize("size", [16, 40, 64])
def test_shapes_and_dtypes(size: int) -> None:
    images, labels, factors = make_faces(70, seed=1, size=size, anomaly_fraction=0.3)
    assert images.shape == (70, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (70,) and labels.dtype == np.int64
    assert set(factors) == set(FACTOR_NAMES) | {"anomaly_kind"}
    for name in FACTOR_NAMES:
        assert factors[name].shape == (70,) and factors[name].dtype == np.float32
    assert factors["anomaly_kind"].shape == (70,) and factors["anomaly_kind"].dtype == np.int64
    assert images.std() > 20  # not blank


def test_empty() -> None:
    images, labels, factors = make_faces(0, size=32, anomaly_fraction=0.5)
    assert images.shape == (0, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (0,) and labels.dtype == np.int64
    assert all(factors[name].shape == (0,) for name in (*FACTOR_NAMES, "anomaly_kind"))


def test_factor_ranges(normal_faces: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    _, factors = normal_faces
    for name in FACTOR_NAMES:
        low = -1.0 if name in SIGNED else 0.0
        values = factors[name]
        assert values.min() >= low and values.max() <= 1.0, name
        assert values.min() < low + 0.05 and values.max() > 0.95, name  # the whole range is used


def test_deterministic() -> None:
    first, second = make_faces(90, seed=7, anomaly_fraction=0.2), make_faces(90, seed=7, anomaly_fraction=0.2)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    for name in first[2]:
        assert np.array_equal(first[2][name], second[2][name])
    assert not np.array_equal(first[0], make_faces(90, seed=8, anomaly_fraction=0.2)[0])


def test_image_does_not_depend_on_n() -> None:
    assert np.array_equal(make_faces(100)[0][:10], make_faces(10)[0])
    long, short = make_faces(150, seed=5), make_faces(70, seed=5)  # across a chunk boundary
    assert np.array_equal(long[0][:70], short[0])
    for name in FACTOR_NAMES:
        assert np.array_equal(long[2][name][:70], short[2][name])
    # The same factors at another size.
    assert np.array_equal(make_faces(70, seed=5, size=32)[2]["eye_size"], short[2]["eye_size"])


@pytest.mark.parametrize("n", [0, 1, 7, 50, 333])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_anomaly_count_and_kinds(n: int, fraction: float) -> None:
    _, labels, factors = make_faces(n, seed=2, size=16, anomaly_fraction=fraction)
    kind = factors["anomaly_kind"]
    assert labels.sum() == round(fraction * n)
    assert np.array_equal(labels, (kind >= 0).astype(np.int64))
    assert set(np.unique(labels)) <= {0, 1}
    assert kind.min(initial=-1) >= -1 and kind.max(initial=-1) < len(ANOMALY_KINDS)


def test_every_kind_occurs(mixed_faces: tuple) -> None:
    _, _, labels, factors = mixed_faces
    counts = np.bincount(factors["anomaly_kind"][labels == 1], minlength=len(ANOMALY_KINDS))
    assert counts.sum() == 320 and counts.min() > 40  # roughly uniform over the kinds


def test_defects_leave_normal_images_and_factors_alone(mixed_faces: tuple) -> None:
    images, clean, labels, factors = mixed_faces
    assert np.array_equal(images[labels == 0], clean[labels == 0])
    reference = make_faces(800, seed=4)[2]
    for name in FACTOR_NAMES:
        assert np.array_equal(factors[name], reference[name])


def test_each_defect_is_visible(mixed_faces: tuple) -> None:
    """Each defective image against its own defect-free twin: a strong local change for every kind,
    and a large overall one for the kinds that touch most of the face."""
    images, clean, _, factors = mixed_faces
    change = np.abs(images - clean)
    for k, name in enumerate(ANOMALY_KINDS):
        chosen = factors["anomaly_kind"] == k
        assert change[chosen].max(axis=(1, 2, 3)).min() > 80, name
        if name in {"smeared", "wrong_colours"}:
            assert change[chosen].mean(axis=(1, 2, 3)).min() > 5, name
        if name == "occluded":
            # the rectangle is solid: many pixels change, not just an edge
            assert (change[chosen] > 30).any(axis=3).mean(axis=(1, 2)).min() > 0.04


def _pupil_pixels(images: np.ndarray) -> np.ndarray:
    """Dark bluish pixels in the rows the eyes lie in (at 64 px): the pupils, per image."""
    band = images[:, 24:36, 12:52]
    return ((band.max(axis=3) < 110) & (band[..., 2] - band[..., 0] > 10)).sum(axis=(1, 2))


def test_no_eyes_removes_the_pupils(mixed_faces: tuple) -> None:
    images, clean, _, factors = mixed_faces
    chosen = factors["anomaly_kind"] == ANOMALY_KINDS.index("no_eyes")
    assert (_pupil_pixels(clean[chosen]) > 0).all()
    assert (_pupil_pixels(images[chosen]) < _pupil_pixels(clean[chosen])).all()


def test_anomalies_are_further_from_the_median_face(mixed_faces: tuple) -> None:
    """Distance to the per-pixel median normal face, in units of each pixel's typical deviation among
    normal faces (so the widely varying background does not drown the face)."""
    images, _, labels, _ = mixed_faces
    normal = images[labels == 0]
    median = np.median(normal, axis=0)
    deviation = np.median(np.abs(normal - median), axis=0) + 2.0
    distance = (np.abs(images - median) / deviation).mean(axis=(1, 2, 3))
    assert distance[labels == 1].mean() > 1.1 * distance[labels == 0].mean()


def _standardised_gap(images: np.ndarray, spread: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-pixel difference of the group means, in units of that pixel's spread."""
    return float(np.max(np.abs(images[a].mean(0) - images[b].mean(0)) / spread))


def test_every_factor_moves_the_pixels(normal_faces: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """Top against bottom quartile of each factor, compared with random groups of the same size: a factor
    that did nothing would look like the random groups."""
    images, factors = normal_faces
    spread = images.std(axis=0) + 1.0
    quarter = len(images) // 4
    rng = np.random.default_rng(0)
    chance = max(
        _standardised_gap(images, spread, p[:quarter], p[quarter:2 * quarter])
        for p in (rng.permutation(len(images)) for _ in range(5))
    )
    for name in FACTOR_NAMES:
        order = np.argsort(factors[name])
        gap = _standardised_gap(images, spread, order[-quarter:], order[:quarter])
        assert gap > 2 * chance, (name, gap, chance)


def test_skin_tone_darkens_the_face(normal_faces: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    images, factors = normal_faces
    cheeks = images[:, 34:40, 22:42].mean(axis=(1, 2, 3))  # below the eyes, around the nose
    order = np.argsort(factors["skin_tone"])
    quarter = len(images) // 4
    assert cheeks[order[:quarter]].mean() - cheeks[order[-quarter:]].mean() > 60


def test_lighting_and_background(normal_faces: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    images, factors = normal_faces
    light = np.corrcoef(factors["light_direction"], images[:, :, -8:].mean(axis=(1, 2, 3))
                        - images[:, :, :8].mean(axis=(1, 2, 3)))[0, 1]
    corner = np.corrcoef(factors["background_tone"], images[:, :6, :6].mean(axis=(1, 2, 3)))[0, 1]
    assert light > 0.7 and corner > 0.7


def test_smile_puts_the_mouth_centre_below_its_corners(
    normal_faces: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    images, factors = normal_faces
    window = images[:, 34:54]  # the mouth rows, at 64 px
    red, green, blue = window[..., 0], window[..., 1], window[..., 2]
    lips = (red - green > 50) & (blue >= green)  # the mouth is red with a little blue; auburn hair is not
    rows = np.arange(34, 54, dtype=np.float32)[None, :, None]
    mean_row = (lips * rows).sum(axis=1) / np.maximum(lips.sum(axis=1), 1)  # (n, W)
    sag = np.zeros(len(images), np.float32)
    for i in range(len(images)):
        columns = np.flatnonzero(lips[i].any(axis=0))
        if columns.size >= 6:
            sag[i] = mean_row[i, columns[len(columns) // 2]] - mean_row[i, columns[[0, -1]]].mean()
    assert np.corrcoef(factors["mouth_curve"], sag)[0, 1] > 0.6


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": -1}, "n"),
        ({"n": 2.0}, "n"),
        ({"n": True}, "n"),
        ({"n": 4, "size": 15}, "size"),
        ({"n": 4, "size": 32.0}, "size"),
        ({"n": 4, "anomaly_fraction": -0.1}, "anomaly_fraction"),
        ({"n": 4, "anomaly_fraction": 1.5}, "anomaly_fraction"),
        ({"n": 4, "anomaly_fraction": float("nan")}, "anomaly_fraction"),
        ({"n": 4, "anomaly_fraction": "0.1"}, "anomaly_fraction"),
    ],
)
def test_argument_errors(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        make_faces(**kwargs)


def test_numpy_integers_are_accepted() -> None:
    images, _, _ = make_faces(np.int64(3), size=np.int32(16))
    assert images.shape == (3, 16, 16, 3)
