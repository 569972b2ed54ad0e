"""Anomaly scoring, metrics, the CSV, the CLI, streaming, and the one-class protocol."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from typer.testing import CliRunner

import aelab
from aelab import anomaly, rankmetrics
from aelab.cli.common import app
from aelab.data.transforms import Preprocess, fit_steps
from aelab.errors import AelabError, ConfigError

FACES = "builtin:faces?n=240&size=16"


def small(model: dict, name: str, epochs: int) -> dict:
    return {"name": name, "seed": 0, "data": {"source": FACES, "val_fraction": 0.2},
            "model": model, "train": {"epochs": epochs, "batch_size": 32, "lr": 0.003}}


@pytest.fixture(scope="session")
def fcn_run(trained):
    return trained(small({"type": "fcn", "hidden": [64], "latent_dim": 8}, "anom-fcn", 6))


@pytest.fixture(scope="session")
def vae_run(trained):
    return trained(small({"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 8}, "anom-vae", 20))


@pytest.fixture(scope="session")
def clean_and_corrupt():
    """40 clean faces the runs never saw, then the same faces as negatives with 30% of pixels turned to noise
    (far from the training images in pixels and in code space)."""
    clean = aelab.load_images("builtin:faces?n=40&size=16&seed=7").images
    rng = np.random.default_rng(1)
    mask = rng.random(clean.shape[:3])[..., None] < 0.3
    corrupt = np.where(mask, rng.integers(0, 256, clean.shape, dtype=np.uint8), 255 - clean)
    return np.concatenate([clean, corrupt]), np.r_[np.zeros(40), np.ones(40)].astype(int)


# -- metrics against scikit-learn ------------------------------------------------------

FIXED_SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.2, 0.9, 0.05, 0.8, 0.5, 0.5, 0.3])
FIXED_LABELS = np.array([0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0])


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_metrics_match_scikit_learn(seed):
    if seed is None:
        s, y = FIXED_SCORES, FIXED_LABELS  # with ties
    else:
        rng = np.random.default_rng(seed)
        y = (rng.random(500) < 0.2).astype(int)
        s = np.round(rng.normal(size=500) + y, 1)  # rounding makes many ties
    m = rankmetrics.metrics(s, y)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    p, r, t = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)[:-1]
    best = int(np.argmax(f1))
    assert m["best_f1"] == pytest.approx(f1[best])
    assert (m["precision"], m["recall"]) == pytest.approx((p[best], r[best]))
    called = s >= m["threshold"]
    assert m["precision"] == pytest.approx((called & (y == 1)).sum() / called.sum())
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert m["tpr_at_5pct_fpr"] == pytest.approx(tpr[fpr <= 0.05].max())
    assert (m["n"], m["n_anomalous"], m["n_normal"]) == (len(y), y.sum(), len(y) - y.sum())


def test_fixed_example_by_hand():
    m = rankmetrics.metrics([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    # pairs (anomalous, normal): (0.9>0.8), (0.9>0.1), (0.3<0.8), (0.3>0.1) -> 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    # AP: precision 1 at recall 0.5, precision 2/3 at recall 1 -> (1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["best_f1"] == pytest.approx(0.8) and m["threshold"] == pytest.approx(0.3)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_single_class_labels_give_what_is_defined_and_say_why(labels):
    m = rankmetrics.metrics([0.1, 0.2, 0.3, 0.4], labels)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["tpr_at_5pct_fpr"] is None
    assert m["n"] == 4
    which = "normal" if labels[0] == 0 else "anomalous"
    assert m[f"score_mean_{which}"] == pytest.approx(0.25)
    assert set(m["undefined"]) >= {"roc_auc", "pr_auc", "best_f1", "tpr_at_5pct_fpr"}
    assert f"only {which}" in m["undefined"]["roc_auc"]


def test_metrics_reject_bad_labels():
    with pytest.raises(AelabError, match="3 labels for 4 scores"):
        rankmetrics.metrics([1, 2, 3, 4], [0, 1, 0])
    with pytest.raises(AelabError, match="0 .normal. / 1 .anomalous."):
        rankmetrics.metrics([1, 2, 3], [0, 1, 2])
    with pytest.raises(AelabError, match="NaN"):
        rankmetrics.metrics([1, np.nan, 3], [0, 1, 0])


def test_rank_normalise_and_combine():
    from scipy.stats import rankdata

    x = np.array([3.0, 1.0, 2.0, 2.0, 9.0])
    assert anomaly.rank_normalise(x) == pytest.approx(rankdata(x) / 5)
    parts = {"mse": np.array([0.1, 0.5, 0.3]), "latent": np.array([7.0, 1.0, 4.0])}
    expected = 0.5 * rankdata(parts["mse"]) / 3 + 0.5 * rankdata(parts["latent"]) / 3
    assert anomaly.combine(parts) == pytest.approx(expected)


# -- score kinds on a model where the ordering is known --------------------------------

@pytest.mark.parametrize("kind", ["mse", "l2", "l1", "ssim", "latent", "knn", "combined", "normalised"])
def test_every_kind_ranks_corrupted_above_clean(fcn_run, clean_and_corrupt, kind):
    images, labels = clean_and_corrupt
    s = anomaly.score(fcn_run, images, kind)
    assert s.shape == (80,) and s.dtype == np.float64
    assert rankmetrics.metrics(s, labels)["roc_auc"] > 0.97


@pytest.mark.parametrize("kind", ["mse", "ssim", "elbo"])
def test_vae_kinds_rank_corrupted_above_clean(vae_run, clean_and_corrupt, kind):
    images, labels = clean_and_corrupt
    assert rankmetrics.metrics(anomaly.score(vae_run, images, kind), labels)["roc_auc"] > 0.97


def test_scores_match_an_independent_computation(fcn_run, vae_run, clean_and_corrupt):
    images = clean_and_corrupt[0][:10]
    x = fcn_run.to_model(images)
    recon = torch.as_tensor(fcn_run.decode(fcn_run.encode(images)).astype(np.float64) / 255.0)
    x01 = (x.double() + 1) / 2
    # decode() rounds to uint8, so compare with a tolerance of the rounding
    want = ((recon.permute(0, 3, 1, 2) - x01) ** 2).mean((1, 2, 3)).numpy()
    assert anomaly.score(fcn_run, images, "mse") == pytest.approx(want, abs=3e-3)
    mse, l2, l1 = (anomaly.score(fcn_run, images, k) for k in ("mse", "l2", "l1"))
    assert l2 == pytest.approx(np.sqrt(mse * x[0].numel()), rel=1e-5)
    assert (l1 >= 0).all() and (l1 ** 2 <= mse + 1e-9).all()  # Jensen: mean|e|^2 <= mean e^2
    # and exactly, from the float reconstructions (no uint8 rounding)
    rt = fcn_run.preprocess.to_unit(torch.as_tensor(fcn_run.decode_tensor(fcn_run.encode(images)))).double()
    assert mse == pytest.approx(((rt - x01) ** 2).mean((1, 2, 3)).numpy(), rel=1e-4)
    assert l1 == pytest.approx((rt - x01).abs().mean((1, 2, 3)).numpy(), rel=1e-4)
    # ELBO: the training loss of a VAE, per image, with the posterior mean decoded
    mean, logvar = vae_run.encode_stats(images)
    xv = vae_run.to_model(images)
    rv = vae_run.decode_tensor(mean)
    kl = -0.5 * (1 + logvar - mean ** 2 - np.exp(logvar)).sum(1)
    want = ((rv - xv) ** 2).flatten(1).mean(1).numpy() + kl / xv[0].numel()
    assert anomaly.score(vae_run, images, "elbo") == pytest.approx(want, rel=1e-4)


def test_int8_scores_stay_close_to_fp32(fcn_run, clean_and_corrupt):
    from scipy.stats import spearmanr

    images, labels = clean_and_corrupt
    fp32, int8 = anomaly.score(fcn_run, images, "mse"), anomaly.score(fcn_run, images, "mse", int8=True)
    assert not np.array_equal(fp32, int8)  # the int8 path really ran
    assert int8 == pytest.approx(fp32, rel=0.05)
    assert spearmanr(fp32, int8).statistic > 0.99
    assert rankmetrics.metrics(int8, labels)["roc_auc"] > 0.97


def test_latent_score_is_the_mahalanobis_distance(fcn_run, clean_and_corrupt):
    images = clean_and_corrupt[0][:6]
    train_codes = fcn_run.encode(fcn_run.splits.train).astype(np.float64)
    mu = train_codes.mean(0)
    cov = np.cov(train_codes, rowvar=False)
    cov += 1e-3 * np.trace(cov) / len(cov) * np.eye(len(cov))
    d = fcn_run.encode(images) - mu
    want = np.sqrt(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d))
    assert anomaly.score(fcn_run, images, "latent") == pytest.approx(want, rel=1e-3)
    from aelab.codestats import file_name

    assert (fcn_run.path / file_name("train", len(fcn_run.splits.train))).exists()


def test_elbo_needs_a_vae_and_kinds_are_checked(fcn_run):
    with pytest.raises(AelabError, match="needs a VAE.*fcn"):
        anomaly.score(fcn_run, np.zeros((2, 16, 16, 3), np.uint8), "elbo")
    with pytest.raises(AelabError, match="unknown score kind 'mes'.*did you mean 'mse'"):
        anomaly.score(fcn_run, np.zeros((2, 16, 16, 3), np.uint8), "mes")


def test_wrong_image_shape_names_both_shapes(fcn_run):
    with pytest.raises(AelabError, match=r"32×32×3.*expects \(3, 16, 16\)"):
        anomaly.score(fcn_run, np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(AelabError, match=r"16×16×1.*expects \(3, 16, 16\)"):
        anomaly.score(fcn_run, np.zeros((2, 16, 16, 1), np.uint8))


def test_one_image_and_the_default_split(fcn_run, clean_and_corrupt):
    one = clean_and_corrupt[0][0]
    assert anomaly.score(fcn_run, one).shape == (1,)
    assert len(anomaly.score(fcn_run)) == len(fcn_run.data())  # no data given: the run's own source


# -- streaming ----------------------------------------------------------------------------

def test_streaming_from_a_memory_mapped_file(fcn_run, clean_and_corrupt, tmp_path):
    images = clean_and_corrupt[0]
    np.save(tmp_path / "test.npy", images)
    data = fcn_run.data(f"npy:{tmp_path / 'test.npy'}")
    assert isinstance(data.images, np.memmap)
    streamed = anomaly.components(fcn_run, data, ["mse", "ssim", "latent"], batch_size=7)
    whole = anomaly.components(fcn_run, images, ["mse", "ssim", "latent"], batch_size=1000)
    for k in whole:
        assert streamed[k] == pytest.approx(whole[k], rel=1e-5, abs=1e-9)


# -- files, the CLI --------------------------------------------------------------------

def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_csv_format(tmp_path):
    path = anomaly.write_scores_csv(tmp_path / "s.csv", np.array([0.5, 1e-9, 3.25]))
    assert path.read_text() == "ID,score\n0,0.5\n1,1e-09\n2,3.25\n"


@pytest.mark.slow
def test_cli_score_end_to_end(fcn_run, tmp_path):
    source = "builtin:faces?n=60&size=16&seed=3&anomaly_fraction=0.2"
    res = CliRunner().invoke(app, ["score", str(fcn_run.path), "--data", source, "--score", "l2", "--out",
                                   str(tmp_path / "s.csv"), "--maps", str(tmp_path / "maps"), "--top-k", "4",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    rows = read_csv(tmp_path / "s.csv")
    assert rows[0] == ["ID", "score"] and len(rows) == 61
    assert [int(r[0]) for r in rows[1:]] == list(range(60))
    scores = np.array([float(r[1]) for r in rows[1:]])
    data = aelab.load_images(source)
    assert scores == pytest.approx(anomaly.score(fcn_run, data, "l2"), rel=1e-6)
    assert out["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(data.labels, scores))
    assert out["metrics"]["n_anomalous"] == 12
    for name in ("worst", "sample", "score_hist", "roc"):
        assert (tmp_path / "maps" / f"{name}.png").stat().st_size > 1000
    record = json.loads((fcn_run.path / "anomaly.json").read_text())
    assert record["metrics"]["roc_auc"] == out["metrics"]["roc_auc"] and record["kind"] == "l2"


def test_cli_labels_file_and_bad_inputs(fcn_run, tmp_path, capsys):
    from aelab.cli import main

    np.save(tmp_path / "x.npy", aelab.load_images("builtin:faces?n=20&size=16").images)
    np.save(tmp_path / "y.npy", np.r_[np.zeros(15), np.ones(5)].astype(np.int64))
    np.save(tmp_path / "short.npy", np.zeros(7, np.int64))
    np.save(tmp_path / "big.npy", np.zeros((3, 20, 20, 3), np.uint8))
    base = ["score", str(fcn_run.path), "--out", str(tmp_path / "s.csv"), "--quiet"]
    res = CliRunner().invoke(app, [*base, "--data", f"npy:{tmp_path / 'x.npy'}", "--labels", str(tmp_path / "y.npy")])
    assert res.exit_code == 0 and "roc_auc" in res.output
    for args, msg in [(["--data", f"npy:{tmp_path / 'x.npy'}", "--labels", str(tmp_path / "short.npy")],
                       "7 labels for 20 images"),
                      (["--data", f"npy:{tmp_path / 'big.npy'}"], "20×20×3"),
                      (["--data", f"npy:{tmp_path / 'x.npy'}", "--score", "elbo"], "needs a VAE")]:
        with pytest.raises(SystemExit) as exc:
            main([*base, *args])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("aelab: error:") and msg in err and "Traceback" not in err


def test_labels_apart_from_a_source(fcn_run, tmp_path):
    y = np.zeros(len(fcn_run.data()), np.int64)
    y[:10] = 1
    np.save(tmp_path / "own.npy", y)
    res = CliRunner().invoke(app, ["score", str(fcn_run.path), "--labels", str(tmp_path / "own.npy"), "--out",
                                   str(tmp_path / "s.csv"), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["metrics"]["n_anomalous"] == 10
    images = fcn_run.data().batch()[:20]
    np.save(tmp_path / "twenty.npy", y[:20])
    out = anomaly.analyse(fcn_run, images, labels=str(tmp_path / "twenty.npy"))
    assert out.metrics["n_anomalous"] == 10
    with pytest.raises(AelabError, match="240 labels for 20 images"):
        anomaly.analyse(fcn_run, images, labels=str(tmp_path / "own.npy"))


def test_cli_single_class_labels_explain(fcn_run, tmp_path):
    res = CliRunner().invoke(app, ["score", str(fcn_run.path), "--data", "builtin:faces?n=20&size=16", "--out",
                                   str(tmp_path / "s.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "roc_auc: undefined" in res.output and "only normal" in res.output


# -- preprocessing steps of the protocol ------------------------------------------------

def test_gcn_l1_and_fitted_minmax_against_numpy():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (6, 5, 4, 1), dtype=np.uint8)
    x = batch.astype(np.float64) / 255
    c = x - x.mean((1, 2, 3), keepdims=True)
    g = c / np.abs(c).mean((1, 2, 3), keepdims=True)
    specs = fit_steps(["gcn_l1", "minmax"], lambda: iter([batch[:4], batch[4:]]))
    assert specs[0] == "gcn_l1" and specs[1]["minmax"] == pytest.approx([g.min(), g.max()], rel=1e-5)
    out = Preprocess(specs, (-1.0, 1.0))(batch).numpy()
    want = (g - g.min()) / (g.max() - g.min()) * 2 - 1
    assert out == pytest.approx(want.transpose(0, 3, 1, 2), abs=1e-5)
    with pytest.raises(ConfigError, match="no fitted values"):
        Preprocess(["minmax"])(batch)
    with pytest.raises(ConfigError, match="hi > lo"):
        Preprocess([{"minmax": [1, 0]}])


# -- the one-class protocol ---------------------------------------------------------------

ONECLASS = {"name": "oc", "seed": 0,
            "data": {"source": "builtin:digits", "val_fraction": 0.0, "range": [0, 1],
                     "preprocess": ["gcn_l1", {"minmax": "fit"}]},
            "model": {"type": "conv", "channels": [8, 16], "kernel": 3, "latent_dim": 8},
            "train": {"epochs": 20, "batch_size": 32, "lr": 0.005}}


@pytest.fixture(scope="session")
def oneclass_result(tmp_path_factory):
    from aelab.oneclass import oneclass

    return oneclass(ONECLASS, normal="0,1", out=tmp_path_factory.mktemp("oc") / "out")


def test_oneclass_on_digits_end_to_end(oneclass_result):
    from pathlib import Path

    res = oneclass_result
    assert [r["normal"] for r in res["rows"]] == [0, 1]
    digits = aelab.load_images("builtin:digits")
    counts = np.bincount(digits.labels)
    out = Path(res["out"])
    train_x, test_y = np.load(out / "data" / "train-images.npy"), np.load(out / "data" / "test-labels.npy")
    assert len(train_x) + len(test_y) == len(digits)
    assert np.bincount(test_y).tolist() == [int(round(c * 0.5)) for c in counts]
    for row in res["rows"]:
        c = row["normal"]
        assert row["n_train"] == counts[c] - int(round(counts[c] * 0.5))
        assert row["n_test"] == len(test_y) and row["n_anomalous"] == int((test_y != c).sum())
        assert row["roc_auc"] > 0.9  # 0 and 1 are easy digits, even for a tiny model
        scores = [float(r[1]) for r in read_csv(Path(row["run"]) / "scores.csv")[1:]]
        assert row["roc_auc"] == pytest.approx(roc_auc_score(test_y != c, scores))
    assert res["mean_roc_auc"] == pytest.approx(np.mean([r["roc_auc"] for r in res["rows"]]))
    assert json.loads((out / "oneclass.json").read_text())["mean_roc_auc"] == pytest.approx(res["mean_roc_auc"])
    from aelab.oneclass import ONECLASS_FOLDER
    from aelab.runfolder import foreign_files

    assert foreign_files(out, ONECLASS_FOLDER) == []  # all of it is the study's own: a rerun may reuse the folder


def test_oneclass_minmax_is_fitted_on_the_normal_class_and_reproduced(oneclass_result):
    from pathlib import Path

    out = Path(oneclass_result["out"])
    run = aelab.load_run(out / "class-0")  # a reloaded Run: the fitted values come from its config.yaml
    lo, hi = run.config.data.preprocess[1]["minmax"]
    images = np.load(out / "data" / "train-images.npy")[np.load(out / "data" / "train-labels.npy") == 0]
    x = images.astype(np.float64) / 255
    c = x - x.mean((1, 2, 3), keepdims=True)
    g = c / np.abs(c).mean((1, 2, 3), keepdims=True)
    assert (lo, hi) == pytest.approx((g.min(), g.max()), rel=1e-5)
    want = ((g - lo) / (hi - lo)).transpose(0, 3, 1, 2)
    assert run.to_model(images[:5]).numpy() == pytest.approx(want[:5], abs=1e-5)


@pytest.mark.slow(reason="a one-class study through the CLI (~0.5 s)")
def test_oneclass_cli_reuses_runs_and_checks_classes(oneclass_result, tmp_path):
    import yaml

    cfg = tmp_path / "oc.yaml"
    cfg.write_text(yaml.safe_dump(ONECLASS))
    res = CliRunner().invoke(app, ["oneclass", str(cfg), "--normal", "1", "--out", oneclass_result["out"],
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["rows"][0]["roc_auc"] == pytest.approx(oneclass_result["rows"][1]["roc_auc"])
    runs = sorted(Path(oneclass_result["out"]).glob("*/summary.json"))
    assert runs and all((p.parent / "figures" / "loss.png").is_file() for p in runs)  # drawn by the command
    bad = CliRunner().invoke(app, ["oneclass", str(cfg), "--normal", "12", "--out", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "no image has that label" in str(bad.exception or bad.output)
