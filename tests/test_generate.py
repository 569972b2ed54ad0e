"""Generation with Gaussian noise: prior sampling, the Gaussian fit for plain autoencoders,
augmentation files and their round trip into training, same-noise comparisons, and the
Fréchet distance / sharpness figures of merit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import aelab
from aelab.cli import main
from aelab.codenoise import augment, code_noise, compare_noise, select
from aelab.errors import AelabError
from aelab.figures.generate import same_noise_figure
from aelab.generate import fit_gaussian, fit_gmm, latent_prior, sample
from aelab.quality import FeatureExtractor, feature_run, frechet_distance, generation_quality, sharpness

SOURCE = "builtin:faces?n=200&size=16&anomaly_fraction=0.3"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(name: str, model: dict) -> dict:
    return {"name": name, "seed": 0, "data": {"source": SOURCE, "val_fraction": 0.2}, "model": model,
            "train": {"epochs": 2, "batch_size": 32, "lr": 0.003}}


@pytest.fixture(scope="session")
def ae(trained) -> aelab.Run:
    return trained(_config("gen-ae", {"type": "fcn", "hidden": [64], "latent_dim": 4}))


@pytest.fixture(scope="session")
def vae(trained) -> aelab.Run:
    model = {"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 6}
    return trained(_config("gen-vae", model))


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# -- sampling -------------------------------------------------------------------------

def test_prior_samples_shapes_and_determinism(vae: aelab.Run) -> None:
    s = sample(vae, 12, seed=3)
    assert s.images.shape == (12, 16, 16, 3) and s.images.dtype == np.uint8
    assert s.prior.kind == "prior" and s.codes.shape == (12, 6) and s.codes.dtype == np.float32
    # the codes are the documented stream: default_rng(seed).standard_normal((n, k)) * temperature
    expected = np.random.default_rng(3).standard_normal((12, 6)).astype(np.float32)
    np.testing.assert_allclose(s.codes, expected, rtol=1e-6)
    np.testing.assert_allclose(sample(vae, 12, seed=3, temperature=0.5).codes, 0.5 * expected, rtol=1e-6)
    again = sample(vae, 12, seed=3).images
    np.testing.assert_array_equal(again, s.images)
    np.testing.assert_array_equal(again, vae.decode(expected))
    assert not np.array_equal(sample(vae, 12, seed=4).images, s.images)


def test_sample_errors(ae: aelab.Run, vae: aelab.Run) -> None:
    with pytest.raises(AelabError, match="has no prior"):
        sample(ae, 4, fit="prior")
    with pytest.raises(AelabError, match="-n must be at least 1"):
        sample(vae, 0)
    with pytest.raises(AelabError, match="temperature"):
        sample(vae, 4, temperature=0)
    with pytest.raises(AelabError, match="--fit 'normal'"):
        sample(vae, 4, fit="normal")  # type: ignore[arg-type]


def test_gaussian_fit_for_plain_autoencoder(ae: aelab.Run) -> None:
    prior = latent_prior(ae)
    assert prior.kind == "gaussian" and latent_prior(ae).stats is prior.stats  # fitted once per Run
    codes = ae.encode(ae.splits.train).astype(np.float64)
    assert prior.n_fit == len(ae.splits.train) == 160
    np.testing.assert_allclose(prior.means[0], codes.mean(0), rtol=1e-6, atol=1e-9)
    cov = prior.chols[0] @ prior.chols[0].T
    want = np.cov(codes, rowvar=False)
    want += 1e-3 * np.trace(want) / len(want) * np.eye(len(want))  # the documented ridge
    np.testing.assert_allclose(cov, want, rtol=1e-6, atol=1e-9 * np.trace(cov))
    # draws follow the fitted distribution
    draws = prior.sample(40000, seed=1).astype(np.float64)
    np.testing.assert_allclose(draws.mean(0), codes.mean(0), atol=0.05 * codes.std(0).max())
    np.testing.assert_allclose(np.cov(draws, rowvar=False), want, atol=0.05 * np.abs(want).max())
    s = sample(ae, 8, seed=0)
    assert s.images.shape == (8, 16, 16, 3) and "fitted to 160 training codes" in s.prior.describe()


def test_gaussian_fit_recovers_a_known_covariance() -> None:
    rng = np.random.default_rng(0)
    true_cov = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    data = rng.multivariate_normal([1.0, -2.0, 0.5], true_cov, size=20000)
    prior = fit_gaussian(data)
    np.testing.assert_allclose(prior.means[0], [1.0, -2.0, 0.5], atol=0.03)
    np.testing.assert_allclose(prior.chols[0] @ prior.chols[0].T, true_cov, atol=0.05)
    with pytest.raises(AelabError, match="at least 2 codes"):
        fit_gaussian(data[:1])


def test_gmm_fit_finds_two_clusters(ae: aelab.Run) -> None:
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(-5, 0.5, (500, 2)), rng.normal(5, 0.5, (500, 2))])
    prior = fit_gmm(data, components=2)
    assert prior.kind == "gmm"
    np.testing.assert_allclose(sorted(prior.means[:, 0]), [-5, 5], atol=0.1)
    np.testing.assert_allclose(prior.weights, [0.5, 0.5], atol=0.02)
    draws = prior.sample(2000, seed=0)
    assert 0.4 < (draws[:, 0] > 0).mean() < 0.6 and np.abs(np.abs(draws[:, 0]) - 5).mean() < 0.6
    s = sample(ae, 6, fit="gmm", components=3)
    assert s.prior.kind == "gmm" and len(s.prior.weights) == 3 and s.images.shape == (6, 16, 16, 3)
    with pytest.raises(AelabError, match="needs at least 10 codes"):
        fit_gmm(data[:5], components=10)


# -- noise and augmentation ----------------------------------------------------------------

def test_noise_stream_is_per_id_and_prefix_stable() -> None:
    long = code_noise(7, [1, 226, 841], 5, 32)
    short = code_noise(7, [1, 226, 841], 5, 10)
    assert long.shape == (3, 5, 32) and long.dtype == np.float32
    np.testing.assert_array_equal(long[..., :10], short)
    np.testing.assert_array_equal(code_noise(7, [226], 5, 32)[0], long[1])  # independent of the other ids
    expected = np.random.default_rng([7, 841]).standard_normal((32, 5)).T.astype(np.float32)
    np.testing.assert_array_equal(long[2], expected)
    assert not np.array_equal(code_noise(8, [1], 5, 32)[0], long[0])


def test_augment_layout_labels_and_values(ae: aelab.Run) -> None:
    full = ae.splits.full
    ids = [1, 2, 3, 150]
    aug = augment(ae, "1-3,150", variants=4, sigma=0.5, seed=2)
    assert aug.images.shape == (16, 16, 16, 3) and aug.images.dtype == np.uint8
    np.testing.assert_array_equal(aug.source_ids, np.repeat(ids, 4))
    np.testing.assert_array_equal(aug.variant, np.tile(np.arange(4), 4))
    np.testing.assert_array_equal(aug.labels, np.repeat(full.labels[ids], 4))
    assert len(set(full.labels[ids])) > 1 or full.labels.any()  # the anomaly labels vary in this source
    # variant v of image i is decode(code_i + sigma * eps[i, v]), eps from the documented stream
    images = full.by_ids(ids)
    codes = ae.encode(images)
    eps = np.stack([np.random.default_rng([2, i]).standard_normal((4, 4)).T for i in ids]).astype(np.float32)
    expected = ae.decode((codes[:, None] + np.float32(0.5) * eps).reshape(16, 4))
    np.testing.assert_array_equal(aug.images, expected)  # exact: each row decodes alike in any request
    np.testing.assert_array_equal(aug.originals, full.batch(np.array(ids)))
    # sigma 0 gives back the reconstructions
    zero = augment(ae, images, variants=2, sigma=0.0, seed=2)
    recon = ae.reconstruct(images)
    np.testing.assert_array_equal(zero.images[::2], recon)


def test_augment_posterior_mode(vae: aelab.Run, ae: aelab.Run) -> None:
    images = vae.splits.full.by_ids([5, 6])
    aug = augment(vae, images, variants=3, seed=1, mode="posterior")
    mean, logvar = vae.encode_stats(images)
    eps = code_noise(1, [5, 6], 3, 6)
    expected = vae.decode((mean[:, None] + np.exp(0.5 * logvar)[:, None] * eps).reshape(6, 6))
    assert aug.sigma is None and aug.mode == "posterior"
    np.testing.assert_array_equal(aug.images, expected)
    with pytest.raises(AelabError, match="--mode posterior needs a VAE"):
        augment(ae, images, mode="posterior")


def test_same_seed_same_bytes_and_round_trip_into_training(ae: aelab.Run, tmp_path: Path) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    augment(ae, "0-9", variants=5, sigma=0.5, seed=11).save(a)
    augment(ae, "0-9", variants=5, sigma=0.5, seed=11).save(b)
    assert a.read_bytes() == b.read_bytes()
    with np.load(a) as z:
        assert set(z.files) == {"images", "labels", "source_ids", "variant", "seed", "sigma", "id_base", "layout",
                                "order"}
        assert int(z["id_base"]) == 0 and str(z["layout"]) == "nhwc" and str(z["order"]) == "image"
        assert z["images"].shape == (50, 16, 16, 3) and int(z["seed"]) == 11
        other = augment(ae, "0-9", 5, 0.5, seed=12).images
        assert not np.array_equal(z["images"], other)
    data = aelab.load_images(f"npz:{a}")
    assert data.images.shape == (50, 16, 16, 3) and data.labels is not None and len(data.labels) == 50
    cfg = _config("from-aug", {"type": "fcn", "hidden": [32], "latent_dim": 3})
    cfg["data"] = {"source": f"npz:{a}", "val_fraction": 0.2}
    cfg["train"]["epochs"] = 1
    run = aelab.train(cfg, out=tmp_path / "from-aug")
    assert run.summary["n_train"] == 40 and run.summary["n_val"] == 10 and np.isfinite(run.summary["mse"])


def test_npy_format(ae: aelab.Run, tmp_path: Path) -> None:
    aug = augment(ae, [4, 7], variants=3, seed=0)
    written = aug.save(tmp_path / "aug.npz", format="npy")
    assert [p.name for p in written] == ["aug_data.npy", "aug_label.npy", "aug_ids.npy"]
    data = aelab.load_images(f"npy:{tmp_path / 'aug_data.npy'}", labels=str(tmp_path / "aug_label.npy"))
    np.testing.assert_array_equal(data.images, aug.images)
    np.testing.assert_array_equal(data.labels, aug.labels)
    np.testing.assert_array_equal(np.load(tmp_path / "aug_ids.npy"), [4, 4, 4, 7, 7, 7])


def test_augment_without_labels(ae: aelab.Run, tmp_path: Path) -> None:
    aug = augment(ae, ae.splits.full.batch(slice(0, 3)), variants=2)  # a bare array: no ids, no labels
    assert aug.labels is None and aug.source_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert "labels" not in np.load(aug.save(tmp_path / "x.npz")[0]).files


def test_id_lists_and_their_errors(ae: aelab.Run) -> None:
    assert select(ae, "1-3,10").ids.tolist() == [1, 2, 3, 10]
    assert select(ae, [7, 7, 2]).ids.tolist() == [7, 2]
    with pytest.raises(AelabError, match=r"no image with id 200, 201"):
        select(ae, "198-201")
    with pytest.raises(AelabError, match="runs backwards"):
        select(ae, "5-1")
    with pytest.raises(AelabError, match="'x' in id list"):
        select(ae, "1,x")
    with pytest.raises(AelabError, match="--variants"):
        augment(ae, "1", variants=0)


# -- the same noise through two models ------------------------------------------------------

@pytest.mark.slow(reason="decodes and draws two models' variants (~0.4 s)")
def test_compare_noise_uses_identical_noise(ae: aelab.Run, vae: aelab.Run, tmp_path: Path) -> None:
    images = ae.splits.full.by_ids([1, 2, 3])
    aug_a, aug_b, res = compare_noise(ae, vae, images, variants=4, sigma=0.5, seed=9)
    assert aug_a.noise.shape == (3, 4, 4) and aug_b.noise.shape == (3, 4, 6)
    np.testing.assert_array_equal(aug_a.noise, aug_b.noise[..., :4])  # the shared first min(k) elements
    np.testing.assert_array_equal(aug_b.noise, code_noise(9, [1, 2, 3], 4, 6))
    # the same images through each model alone (augment) get the same noise again
    np.testing.assert_array_equal(augment(vae, images, 4, 0.5, 9).images, aug_b.images)
    assert res["shared_elements"] == 4 and res["a"]["code_size"] == 4 and res["b"]["code_size"] == 6
    # diversity: mean absolute pixel difference over pairs of variants, computed here with loops
    x = aug_a.images.astype(np.float64).reshape(3, 4, -1) / 255
    pairs = [np.abs(x[i, p] - x[i, q]).mean() for i in range(3) for p in range(4) for q in range(p + 1, 4)]
    assert res["a"]["diversity"] == pytest.approx(np.mean(pairs), rel=1e-5)
    mse = ((x - aug_a.originals.astype(np.float64).reshape(3, 1, -1) / 255) ** 2).mean()
    assert res["a"]["mse"] == pytest.approx(mse, rel=1e-4)
    # the un-noised reconstructions and their PSNR, and sigma in units of each model's code spread
    for run, aug, key in ((ae, aug_a, "a"), (vae, aug_b, "b")):
        np.testing.assert_array_equal(aug.recons, run.reconstruct(images))
        x = aug.recons.astype(np.float64).reshape(3, -1) / 255
        ref = aug.originals.astype(np.float64).reshape(3, -1) / 255
        psnr = np.mean(-10 * np.log10(((x - ref) ** 2).mean(1)))  # from the uint8 images: to rounding
        assert res[key]["recon_psnr"] == pytest.approx(psnr, rel=1e-3)
        codes = run.encode(run.splits.train).reshape(len(run.splits.train), -1).astype(np.float64)
        spread = np.sqrt(np.mean(codes.var(0, ddof=1)))
        assert res[key]["code_std"] == pytest.approx(spread, rel=1e-3)
        assert res[key]["sigma_in_code_std"] == pytest.approx(0.5 / spread, rel=1e-3)
    path = same_noise_figure(aug_a, aug_b, res, tmp_path / "cmp.png")  # drawn from the results alone
    assert path.stat().st_size > 5000


# -- quality -------------------------------------------------------------------------

def test_frechet_distance_against_eigenvalues() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) * [1, 2, 3, 0.5, 1] + 0.7
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_root = np.sqrt(np.clip(np.linalg.eigvals(ca @ cb).real, 0, None)).sum()  # tr sqrt(AB) = sum sqrt(eig(AB))
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_root
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(4 * 5, rel=1e-6)  # a pure shift: |shift|²
    with pytest.raises(AelabError, match="at least 2"):
        frechet_distance(a[:1], b)


def test_sharpness_of_a_ramp() -> None:
    ramp = np.tile((np.arange(16) * 10).astype(np.uint8)[None, :, None], (16, 1, 3))[None]
    assert sharpness(ramp)[0] == pytest.approx(10 / 255, rel=1e-6)
    flat = np.full((2, 8, 8, 1), 77, np.uint8)
    assert sharpness(flat).tolist() == [0.0, 0.0]
    checker = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)[None, ..., None]
    assert sharpness(checker)[0] == pytest.approx(np.sqrt(2), rel=1e-6)


@pytest.mark.slow
def test_generation_quality_writes_json_and_reuses_the_feature_net(ae: aelab.Run, vae: aelab.Run) -> None:
    q = generation_quality(vae, n=30)
    saved = json.loads((vae.path / "quality.json").read_text())
    assert saved["fd_generated"] == pytest.approx(q["fd_generated"]) and q["n"] == 30
    for key in ("fd_generated", "fd_reconstructed", "fd_train_vs_held_out", "sharpness_real",
                "sharpness_generated", "sharpness_ratio_generated"):
        assert np.isfinite(q[key]) and q[key] >= 0, key
    net_dir = vae.path / q["feature_net"]["path"]
    weights = (net_dir / "model.safetensors").read_bytes()
    # a second evaluation reuses it; a sibling run (same parent folder) on the same data copies it
    # instead of training: the copy is byte-identical (a retrained net's safetensors header may not be)
    assert generation_quality(vae, n=30)["fd_generated"] == pytest.approx(q["fd_generated"])
    sibling = vae.path.parent / "sibling"
    shutil.copytree(vae.path, sibling, ignore=shutil.ignore_patterns("quality*", "codestats-*"))
    qs = generation_quality(aelab.load_run(sibling), n=30)
    assert (sibling / qs["feature_net"]["path"] / "model.safetensors").read_bytes() == weights
    qa = generation_quality(ae, n=30)
    assert qa["feature_net"]["hash"] == q["feature_net"]["hash"]
    assert qa["fd_train_vs_held_out"] == pytest.approx(q["fd_train_vs_held_out"])  # same real images, same net
    feats = FeatureExtractor(feature_run(vae))(vae.splits.full.batch(slice(0, 5)))
    assert feats.shape == (5, 16 + 32 + 64 + 32)
    from aelab.runfolder import foreign_files

    assert foreign_files(vae.path) == []  # quality.json and quality/ are a run's own: --force may replace it


# -- the command line ----------------------------------------------------------------

@pytest.mark.slow
def test_cli_sample_augment_compare(ae: aelab.Run, vae: aelab.Run, tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(["sample", vae.path, "-n", "8", "--seed", "2", "--out", tmp_path / "s.png",
                            "--save", tmp_path / "s.npz", "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["fit"] == "prior" and (tmp_path / "s.png").exists()
    with np.load(tmp_path / "s.npz") as z:
        np.testing.assert_array_equal(z["images"], sample(vae, 8, seed=2).images)
    code, out, _ = run_cli(["sample", ae.path, "-n", "4", "--fit", "gmm", "--components", "2",
                            "--out", tmp_path / "g.png", "--json"], capsys)
    assert code == 0 and json.loads(out)["fit"] == "gmm"

    code, out, _ = run_cli(["augment", ae.path, "--ids", "1-5,20", "--variants", "3", "--sigma", "0.3",
                            "--seed", "4", "--out", tmp_path / "aug.npz", "--figure", tmp_path / "aug.png",
                            "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["images"] == [18, 16, 16, 3] and res["source_ids"] == [1, 2, 3, 4, 5, 20]
    assert (tmp_path / "aug.png").stat().st_size > 5000
    with np.load(tmp_path / "aug.npz") as z:
        np.testing.assert_array_equal(z["images"], augment(ae, "1-5,20", 3, 0.3, 4).images)

    code, out, _ = run_cli(["compare-noise", ae.path, vae.path, "--ids", "1-2", "--variants", "2", "--seed", "3",
                            "--out", tmp_path / "c.png", "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["shared_elements"] == 4 and set(res["a"]) >= {"mse", "psnr", "ssim", "diversity"}
    code, out, _ = run_cli(["compare-noise", ae.path, vae.path, "--ids", "1-2", "--out", tmp_path / "c2.png"], capsys)
    assert code == 0 and "diversity" in out and "default_rng([seed, row])" in out


def test_cli_augment_converts_the_images_once(ae: aelab.Run, tmp_path: Path, capsys, monkeypatch) -> None:
    """``aelab augment`` writes and reports one conversion (layout, dtype, order) of the variants."""
    from aelab.codenoise import Augmented

    calls = []
    real = Augmented.output
    monkeypatch.setattr(Augmented, "output", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    code, out, _ = run_cli(["augment", ae.path, "--ids", "1-2", "--variants", "2", "--layout", "nchw",
                            "--dtype", "float32", "--order", "round", "--format", "npy",
                            "--out", tmp_path / "a.npy", "--json"], capsys)
    assert code == 0 and len(calls) == 1
    res = json.loads(out)
    want = augment(ae, "1-2", 2, 0.5, 0).arrays("nchw", "float32", "round")
    np.testing.assert_array_equal(np.load(tmp_path / "a_data.npy"), want["images"])
    assert res["images"] == [4, 3, 16, 16] and res["layout"] == "nchw" and res["dtype"] == "float32"


def test_cli_errors_exit_2(ae: aelab.Run, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["augment", ae.path, "--ids", "1-3,250", "--out", tmp_path / "x.npz"], capsys)
    assert code == 2 and "no image with id 250" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()
    code, _, err = run_cli(["sample", ae.path, "--fit", "prior", "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "has no prior" in err
    code, _, err = run_cli(["augment", ae.path, "--ids", "1", "--format", "csv", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--format 'csv'" in err


@pytest.mark.slow(reason="measures sample quality with the feature net (~1.5 s)")
def test_cli_evaluate_quality(ae: aelab.Run, vae: aelab.Run, capsys) -> None:
    code, out, _ = run_cli(["evaluate", vae.path, "--quality-n", "20", "--json"], capsys)
    res = json.loads(out)
    assert code == 0 and res["quality"]["n"] == 20 and "fd_generated" in res["quality"]
    code, out, _ = run_cli(["evaluate", ae.path, "--json"], capsys)
    assert code == 0 and "quality" not in json.loads(out)
    code, out, _ = run_cli(["evaluate", ae.path, "--quality", "--quality-n", "20"], capsys)
    assert code == 0 and "FD to held-out" in out and "Gaussian" in out
