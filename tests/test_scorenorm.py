"""The ``knn`` and ``normalised`` score kinds against independent computations."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import aelab
from aelab import anomaly, scorenorm
from aelab.errors import AelabError

FACES = "builtin:faces?n=240&size=16"


@pytest.fixture(scope="session")
def fcn_run(trained):
    # the same config as tests/test_anomaly.py's fcn_run, so the training is shared
    return trained({"name": "anom-fcn", "seed": 0, "data": {"source": FACES, "val_fraction": 0.2},
                    "model": {"type": "fcn", "hidden": [64], "latent_dim": 8},
                    "train": {"epochs": 6, "batch_size": 32, "lr": 0.003}})


@pytest.fixture(scope="session")
def images():
    return aelab.load_images("builtin:faces?n=12&size=16&seed=7").images


def mahalanobis_whitening(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and W with ``|(z - mean) W|`` the Mahalanobis distance (covariance + the codestats ridge)."""
    mu = codes.mean(0)
    cov = np.cov(codes, rowvar=False)
    cov += 1e-3 * np.trace(cov) / len(cov) * np.eye(len(cov))
    return mu, np.linalg.inv(np.linalg.cholesky(cov)).T


def test_zmean_is_the_mean_of_z_scores():
    parts = {"latent": np.array([0.1, 0.5, 0.3]), "ssim": np.array([0.2, 0.2, 0.8]), "knn": np.array([4.0, 1.0, 7.0])}
    stats = {"latent": (0.2, 0.1), "ssim": (0.5, 0.25), "knn": (3.0, 2.0)}
    want = np.array([(0.1 - 0.2) / 0.1 + (0.2 - 0.5) / 0.25 + (4 - 3) / 2,
                     (0.5 - 0.2) / 0.1 + (0.2 - 0.5) / 0.25 + (1 - 3) / 2,
                     (0.3 - 0.2) / 0.1 + (0.8 - 0.5) / 0.25 + (7 - 3) / 2]) / 3
    assert scorenorm.zmean(parts, stats) == pytest.approx(want)
    # a constant component (std 0) is shifted, not divided by zero
    assert scorenorm.zmean({"mse": np.array([1.0, 3.0])}, {"mse": (1.0, 0.0)}) == pytest.approx([0.0, 2.0])
    with pytest.raises(AelabError, match="missing component score.*knn"):
        scorenorm.zmean({"mse": np.ones(3)}, {"mse": (0, 1), "knn": (0, 1)})


def test_knn_is_the_mean_distance_to_the_nearest_training_codes(fcn_run, images):
    train = fcn_run.encode(fcn_run.splits.train).astype(np.float64)
    mu, w = mahalanobis_whitening(train)
    q = (fcn_run.encode(images) - mu) @ w
    r = (train - mu) @ w
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    want = np.sort(d, axis=1)[:, :scorenorm.KNN_K].mean(1)
    assert anomaly.score(fcn_run, images, "knn") == pytest.approx(want, rel=1e-3)
    # a training image's nearest code is its own: with k = 1 its distance is 0
    codes = torch.from_numpy(fcn_run.encode(fcn_run.splits.train.batch(slice(0, 3))))
    assert scorenorm.knn_distance(codes, scorenorm.reference_codes(fcn_run), k=1).numpy() == pytest.approx(
        np.zeros(3), abs=1e-3)


def test_normalised_is_zscored_on_the_held_out_normals(fcn_run, images):
    val = fcn_run.splits.val.batch()
    parts = anomaly.components(fcn_run, val, scorenorm.NORMALISED_PARTS)
    stats = {k: (v.mean(), v.std()) for k, v in parts.items()}
    got = anomaly.heldout_stats(fcn_run)
    assert list(got) == list(scorenorm.NORMALISED_PARTS)
    for k, (m, sd) in stats.items():
        assert got[k] == pytest.approx((m, sd), rel=1e-6)
    s = anomaly.score(fcn_run, val, "normalised")
    assert s.mean() == pytest.approx(0.0, abs=1e-9)  # each z-score has mean 0 on these very images
    # per image: an image's score does not depend on the others scored with it
    assert anomaly.score(fcn_run, images, "normalised")[:4] == pytest.approx(
        anomaly.score(fcn_run, images[:4], "normalised"))
    with pytest.raises(AelabError, match="'normalised' is made from the ssim, latent, knn"):
        anomaly.components(fcn_run, images, ["normalised"])


def test_knn_and_latent_share_one_encoding_of_one_subsample(fcn_run, tmp_path, monkeypatch):
    from aelab import codestats

    copy = shutil.copytree(fcn_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("codestats-*"))
    monkeypatch.setattr(codestats, "FIT_MAX", 50)  # a seeded subsample of the training split
    run = aelab.load_run(copy)
    encoded = []
    encode = run.encode
    monkeypatch.setattr(run, "encode", lambda images, *a, **k: encoded.append(len(images)) or encode(images, *a, **k))
    mean, whiten, refs = scorenorm.reference_codes(run)
    stats = codestats.code_stats(run)
    assert encoded == [50]  # the fit and the reference codes come from one encoding
    pick = np.sort(np.random.default_rng(0).choice(len(fcn_run.splits.train), 50, replace=False))
    codes = fcn_run.encode(fcn_run.splits.train.subset(pick)).astype(np.float64)
    mu, w = mahalanobis_whitening(codes)
    assert stats.n_ == 50 and stats.mean_ == pytest.approx(codes.mean(0), rel=1e-9)
    np.testing.assert_allclose(refs.numpy(), (codes - mu) @ w, rtol=1e-4, atol=1e-4)
    # a second Run on the folder finds the fit on disk and encodes the subsample once for its references
    again = aelab.load_run(copy)
    encoded_again = []
    encode_again = again.encode
    monkeypatch.setattr(again, "encode", lambda images, *a, **k: encoded_again.append(len(images))
                        or encode_again(images, *a, **k))
    np.testing.assert_array_equal(scorenorm.reference_codes(again)[2].numpy(), refs.numpy())
    assert encoded_again == [50]


def test_latent_and_knn_together_are_each_alone(fcn_run, images, tmp_path, monkeypatch):
    """Scored together (``normalised`` does), latent and knn share one encoding of the training subsample
    and one whitening per batch, with the numbers each gives alone."""
    copy = shutil.copytree(fcn_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("codestats-*"))
    run = aelab.load_run(copy)
    encoded = []
    encode = run.encode
    monkeypatch.setattr(run, "encode", lambda imgs, *a, **k: encoded.append(len(imgs)) or encode(imgs, *a, **k))
    both = anomaly.components(run, images, ["latent", "knn"])
    assert encoded == [len(run.splits.train)]  # the fit and the reference codes from one encoding
    for kind in ("latent", "knn"):
        np.testing.assert_array_equal(both[kind], anomaly.components(fcn_run, images, [kind])[kind])
    codes = fcn_run.encode(images).astype(np.float64)
    from aelab.codestats import code_stats

    stats = code_stats(fcn_run)
    assert both["latent"] == pytest.approx(stats.mahalanobis(codes), rel=1e-4)
