"""Code statistics: CodeStats against numpy/scipy, seeded sampling, the weights-keyed cache, one Gaussian
shared by sampling and the latent score, and the generation/anomaly figures drawn from results alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

import aelab
from aelab import anomaly
from aelab.codenoise import augment
from aelab.codestats import RIDGE, CodeStats, code_stats, file_name, weights_hash
from aelab.errormaps import heatmaps
from aelab.errors import AelabError
from aelab.generate import latent_prior, sample
from aelab.scorekernels import latent_gaussian

SOURCE = "builtin:faces?n=120&size=16&anomaly_fraction=0.25"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ae(trained) -> aelab.Run:
    cfg = {"name": "cs-ae", "seed": 0, "data": {"source": SOURCE, "val_fraction": 0.2},
           "model": {"type": "fcn", "hidden": [32], "latent_dim": 5},
           "train": {"epochs": 1, "batch_size": 32, "lr": 0.003}}
    return trained(cfg)


def _codes(n: int = 400, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 3


def test_fit_matches_numpy_with_the_documented_ridge() -> None:
    x = _codes()
    s = CodeStats.fit(x)
    cov = np.cov(x, rowvar=False)
    ridge = RIDGE * np.trace(cov) / len(cov)
    np.testing.assert_allclose(s.mean_, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov_, cov + ridge * np.eye(4), rtol=1e-10)
    np.testing.assert_allclose(s.std_, x.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_array_equal(s.min_, x.min(0))
    np.testing.assert_array_equal(s.max_, x.max(0))
    assert s.n_ == 400 and s.ridge_ == pytest.approx(ridge)
    # Mahalanobis against scipy, and the whitening matrix the batched score uses
    inv = np.linalg.inv(s.cov_)
    want = [mahalanobis(z, s.mean_, inv) for z in x[:10]]
    np.testing.assert_allclose(s.mahalanobis(x[:10]), want, rtol=1e-9)
    np.testing.assert_allclose(np.linalg.norm((x[:10] - s.mean_) @ s.whitening(), axis=1), want, rtol=1e-9)
    with pytest.raises(AelabError, match="at least 2 codes"):
        CodeStats.fit(x[:1])


def test_a_singular_covariance_still_has_an_inverse() -> None:
    x = _codes(3, 8)  # more elements than codes: rank 2
    s = CodeStats.fit(x)
    assert np.isfinite(s.mahalanobis(x)).all() and s.sample(5, seed=0).shape == (5, 8)


def test_seeded_sampling_is_reproducible_and_has_the_fitted_covariance() -> None:
    s = CodeStats.fit(_codes())
    a, b = s.sample(50, seed=3), s.sample(50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, s.sample(50, seed=4))
    eps = np.random.default_rng(3).standard_normal((50, 4))  # the documented stream
    np.testing.assert_allclose(a, s.mean_ + eps @ s.chol_.T, rtol=1e-5, atol=1e-5)
    many = s.sample(40000, seed=1).astype(np.float64)
    scale = np.abs(s.cov_).max()
    np.testing.assert_allclose(many.mean(0), s.mean_, atol=0.05 * np.sqrt(scale))
    np.testing.assert_allclose(np.cov(many, rowvar=False), s.cov_, atol=0.05 * scale)
    cooler = s.sample(40000, seed=1, temperature=0.5).astype(np.float64)
    np.testing.assert_allclose(np.cov(cooler, rowvar=False), 0.25 * s.cov_, atol=0.05 * scale)


def test_code_stats_fits_the_training_codes_and_caches_them(ae: aelab.Run, monkeypatch) -> None:
    s = code_stats(ae)
    codes = ae.encode(ae.splits.train).reshape(len(ae.splits.train), -1)
    ref = CodeStats.fit(codes)
    np.testing.assert_allclose(s.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(s.cov_, ref.cov_, rtol=1e-12)
    assert code_stats(ae) is s and ae.cache[("codestats", "train", s.n_)] is s
    path = ae.path / file_name("train", s.n_)
    assert path.exists()
    # a fresh Run reads the file (no encoding) and gets the same numbers
    again = aelab.load_run(ae.path)
    monkeypatch.setattr(again, "encode", lambda *a, **k: pytest.fail("encoded although the file matches"))
    loaded = code_stats(again)
    np.testing.assert_array_equal(loaded.cov_, s.cov_)
    np.testing.assert_array_equal(loaded.sample(7, seed=2), s.sample(7, seed=2))
    # n subsamples (seeded), under its own key and file
    small = code_stats(ae, "train", n=20)
    assert small.n_ == 20 and (ae.path / file_name("train", 20)).exists()
    with pytest.raises(AelabError, match="split 'test'"):
        code_stats(ae, "test")
    from aelab.runfolder import foreign_files

    assert foreign_files(ae.path) == []  # --force may still replace the folder


def test_new_weights_are_fitted_again(ae: aelab.Run, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ae.path, copy)
    before = code_stats(aelab.load_run(copy))
    from aelab.io import load_tensors, save_tensors

    weights = load_tensors(copy / "model.safetensors")
    save_tensors(copy / "model.safetensors", {k: v * 1.5 for k, v in weights.items()})
    changed = aelab.load_run(copy)
    assert weights_hash(changed) != weights_hash(ae)
    after = code_stats(changed)
    assert not np.allclose(after.mean_, before.mean_)
    np.testing.assert_allclose(after.mean_, changed.encode(changed.splits.train).mean(0), rtol=1e-5, atol=1e-6)


def test_sampling_and_the_latent_score_share_one_gaussian(ae: aelab.Run) -> None:
    prior = latent_prior(ae)
    s = sample(ae, 6, seed=0)
    stats = code_stats(ae)
    assert prior.stats is stats and s.prior.stats is stats
    np.testing.assert_array_equal(s.codes, stats.sample(6, seed=0))
    mean, whiten = latent_gaussian(ae)
    np.testing.assert_allclose(mean.numpy(), stats.mean_, rtol=1e-6)
    np.testing.assert_allclose(whiten.numpy(), stats.whitening(), rtol=1e-5, atol=1e-6)
    images = ae.splits.full.batch(slice(0, 5))
    got = anomaly.score(ae, images, "latent")
    np.testing.assert_allclose(got, stats.mahalanobis(ae.encode(images)), rtol=1e-4)


def test_latent_ranges_are_code_stats(ae: aelab.Run) -> None:
    from aelab.latent import code_stats as latent_stats
    from aelab.latent import data_ranges

    codes = ae.encode(ae.splits.val).astype(np.float64)
    s = latent_stats(ae)
    np.testing.assert_allclose(s["std"], codes.std(0, ddof=1), rtol=1e-5)
    lo, hi = data_ranges(ae, kind="data")
    np.testing.assert_allclose(lo, codes.mean(0) - 2 * codes.std(0, ddof=1), rtol=1e-4, atol=1e-5)
    assert "_latent_stats" not in vars(ae)


@pytest.mark.slow
def test_figures_draw_from_results_without_a_model(ae: aelab.Run, tmp_path: Path) -> None:
    from aelab.figures.anomaly import draw_maps
    from aelab.figures.generate import augment_figure, samples_figure

    s = sample(ae, 6, seed=0)
    aug = augment(ae, "0-2", variants=3, seed=1)
    res = anomaly.analyse(ae, SOURCE)
    maps = heatmaps(ae, res, top_k=3, sample=2)
    assert [m.name for m in maps] == ["worst", "sample"] and maps[0].errors.shape == (3, 16, 16)
    res.images = None  # the figures need the results and the maps only
    figs = draw_maps(res, maps, tmp_path / "maps")
    assert set(figs) == {"worst", "sample", "score_hist", "roc"}
    for path in (*figs.values(), samples_figure(s, tmp_path / "s.png", "ae"), augment_figure(aug, tmp_path / "a.png")):
        assert Path(path).stat().st_size > 1000
    assert res.numbers()["metrics"]["n"] == len(res.scores) and "scores" not in res.numbers()
