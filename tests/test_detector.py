"""AutoencoderDetector: the scikit-learn / PyOD estimator, its saved threshold, and `aelab threshold` / `predict`."""

import csv
import json
import os

import numpy as np
import pytest
from _cli import aelab as aelab_cli
from _cli import aelab_each, one_line_exit_2
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import aelab
from aelab.data.sources import load_images
from aelab.detector import AutoencoderDetector, check_contamination, read_detector
from aelab.errors import AelabError, RunError
from aelab.runfolder import DETECTOR, foreign_files

FEW = settings(max_examples=int(os.environ.get("AELAB_EXAMPLES", 60)), deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
FACES = "builtin:faces?n=160&size=16"


@pytest.fixture(scope="module")
def saved(tiny_run, tmp_path_factory):
    """The shared tiny run with a threshold (contamination 0.2), saved as a copy."""
    det = AutoencoderDetector.from_run(tiny_run, contamination=0.2)
    return det, det.save(tmp_path_factory.mktemp("det") / "saved")


@pytest.mark.slow
def test_fit_on_an_array_sets_pyod_attributes():
    x = load_images(FACES).batch()
    det = AutoencoderDetector(tiny_config(), contamination=0.1, train__epochs=1).fit(x)
    scores = aelab.score(det.run_, x, "mse")  # independent of the detector's own bookkeeping
    np.testing.assert_array_equal(det.decision_scores_, scores)
    assert det.threshold_ == pytest.approx(np.quantile(scores, 0.9))
    np.testing.assert_array_equal(det.labels_, (scores > det.threshold_).astype(int))
    assert det.labels_.sum() == 16  # 10% of 160 distinct scores lie above their 90% quantile
    np.testing.assert_array_equal(det.predict(x), det.labels_)
    np.testing.assert_array_equal(det.decision_function(x[:7]), scores[:7])
    assert det.run_.config.train.epochs == 1  # the override reached the config
    # the same images as float N×C×H×W score the same
    np.testing.assert_allclose(det.decision_function(x[:7].transpose(0, 3, 1, 2) / 255.0), scores[:7], rtol=1e-12)


@pytest.mark.slow
def test_fit_grayscale_n_h_w_with_a_target_fpr():
    x = load_images("builtin:digits").batch()[..., 0]  # N×H×W
    det = AutoencoderDetector(tiny_config(), fpr=0.1, train__epochs=1, data__val_fraction=0.25).fit(x)
    held_out = aelab.score(det.run_, det.run_.val_data(), "mse")
    assert len(held_out) == round(len(x) * 0.25)
    assert det.threshold_ == pytest.approx(np.quantile(held_out, 0.9))
    assert det.threshold_rule_["fpr"] == 0.1 and len(det.decision_scores_) == len(x)


@pytest.mark.slow
def test_fit_on_a_source_string_and_fit_predict(tmp_path):
    det = AutoencoderDetector(tiny_config(), contamination=0.25, out=tmp_path / "run", train__epochs=1)
    labels = det.fit_predict(FACES)
    assert det.run_.path == tmp_path / "run" and labels.sum() == 40


def test_predict_proba_is_pyods_linear_scaling(saved):
    det, _ = saved
    x = load_images(FACES).batch()[:20]
    s = det.decision_function(x)
    lo, hi = det.decision_scores_.min(), det.decision_scores_.max()
    p = det.predict_proba(x)
    assert p.shape == (20, 2)
    np.testing.assert_allclose(p[:, 1], np.clip((s - lo) / (hi - lo), 0, 1))
    np.testing.assert_allclose(p.sum(1), 1.0)
    far = det.proba_of(np.array([lo - 1, hi + 1]))
    np.testing.assert_array_equal(far[:, 1], [0.0, 1.0])  # clipped outside the training range


def test_params_clone_and_set_params():
    det = AutoencoderDetector("oneclass", score="l1", contamination=0.05, train__epochs=3, **{"model.latent_dim": 4})
    params = det.get_params()
    assert params["score"] == "l1" and params["train__epochs"] == 3 and params["model.latent_dim"] == 4
    twin = clone(det)
    assert twin is not det and twin.get_params() == params and not hasattr(twin, "run_")
    twin.set_params(contamination=0.2, train__lr=0.01)
    assert twin.get_params()["contamination"] == 0.2 and twin.get_params()["train__lr"] == 0.01
    assert det.get_params() == params  # the clone shares nothing
    cfg = twin.check_params()
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.latent_dim) == (3, 0.01, 4)
    with pytest.raises(AelabError, match="unknown parameter 'contamintion'.*did you mean 'contamination'"):
        twin.set_params(contamintion=0.1)
    with pytest.raises(NotFittedError):
        twin.predict(np.zeros((1, 16, 16, 3), np.uint8))


def test_config_errors_are_one_line():
    with pytest.raises(AelabError, match="no such preset .*did you mean 'oneclass'"):
        AutoencoderDetector("oneclas").check_params()
    with pytest.raises(AelabError, match="combined"):
        AutoencoderDetector(score="combined").check_params()
    with pytest.raises(AelabError, match="train.epochs"):
        AutoencoderDetector(train__epochs=0).check_params()


@FEW
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.booleans(), st.none(),
                 st.text(max_size=4)))
def test_contamination_is_checked(value):
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 0.5
    det = AutoencoderDetector(tiny_config(), contamination=value)
    if ok:
        assert check_contamination(value) == value
        det.check_params()
    else:
        with pytest.raises(AelabError, match="contamination must be a number in \\(0, 0.5\\]"):
            det.check_params()


@FEW
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.one_of(st.integers(), st.floats(), st.text(max_size=5),
                                                                   st.none()), max_size=3))
def test_any_params_work_or_raise_one_line(params):
    det = AutoencoderDetector(tiny_config())
    try:
        det.set_params(**params)
        det.check_params()
    except AelabError as exc:
        assert "\n" not in str(exc)


def test_save_load_round_trip(saved, tiny_run, tmp_path):
    det, path = saved
    loaded = AutoencoderDetector.load(path)
    x = load_images(FACES).batch()[:9]
    assert loaded.threshold_ == det.threshold_ and loaded.score == "mse"
    assert loaded.get_params()["out"] is None and clone(loaded).get_params()["config"] == str(path)
    np.testing.assert_array_equal(loaded.decision_scores_, det.decision_scores_)
    np.testing.assert_array_equal(loaded.decision_function(x), det.decision_function(x))
    np.testing.assert_array_equal(loaded.predict_proba(x), det.predict_proba(x))
    info = json.loads((path / DETECTOR).read_text())
    assert info["threshold"] == det.threshold_ and info["rule"]["contamination"] == 0.2
    assert foreign_files(path) == []  # everything saved is a file aelab writes into a run: --force may replace it
    assert not (tiny_run.path / DETECTOR).exists()  # the shared run was copied, not changed
    with pytest.raises(RunError, match="not empty"):
        det.save(path)
    with pytest.raises(RunError, match="no threshold .*aelab threshold"):
        read_detector(tiny_run.path)


@pytest.mark.slow
def test_threshold_predict_cli(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run.path, run)
    np.save(tmp_path / "big.npy", np.zeros((3, 20, 20, 3), np.uint8))
    unset, too_many = aelab_each(("predict", run, "--data", FACES), ("threshold", run, "--contamination", "0.6"))
    one_line_exit_2(unset, "no threshold", "aelab threshold")
    one_line_exit_2(too_many, "contamination", "(0, 0.5]")
    res = aelab_cli("threshold", run, "--contamination", "0.25", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n_flagged"] == 30  # a quarter of the 120 training images
    res, other_shape = aelab_each(("predict", run, "--data", FACES, "--out", tmp_path / "p.csv", "--json"),
                                  ("predict", run, "--data", f"npy:{tmp_path / 'big.npy'}"))
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)
    rows = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert list(rows[0]) == ["ID", "score", "label"] and len(rows) == 160
    scores = aelab.score(tiny_run, load_images(FACES).batch(), "mse")
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-8)
    labels = [int(r["label"]) for r in rows]
    assert labels == (scores > counts["threshold"]).astype(int).tolist()
    assert counts["n_anomalous"] == sum(labels) and counts["n_normal"] == 160 - sum(labels)
    one_line_exit_2(other_shape, "20×20×3", "16×16×3")


def test_from_run_with_a_target_fpr(tiny_run):
    det = AutoencoderDetector.from_run(tiny_run, fpr=0.1)
    held_out = aelab.score(tiny_run, tiny_run.val_data(), "mse")
    assert det.threshold_ == pytest.approx(np.quantile(held_out, 0.9)) and det.threshold_rule_["n"] == 40
    np.testing.assert_array_equal(det.decision_scores_, aelab.score(tiny_run, tiny_run.splits.train, "mse"))
    with pytest.raises(AelabError, match="fpr must be a number in \\(0, 1\\)"):
        AutoencoderDetector.from_run(tiny_run, fpr=1.5)


@pytest.mark.slow(reason="an installed-script process: ~2 s of start-up")
def test_predict_ids_count_from_the_id_base(saved, tmp_path):
    """``aelab predict --id-base 1`` writes the same rows with ids counted from 1, as every id-taking command."""
    from aelab.detector import predict_source

    _, run = saved
    data = "builtin:faces?n=12&size=16&seed=3"
    res = aelab_cli("predict", run, "--data", data, "--out", tmp_path / "p1.csv", "--id-base", "1", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["id_base"] == 1
    rows = list(csv.DictReader((tmp_path / "p1.csv").read_text().splitlines()))
    assert [int(r["ID"]) for r in rows] == list(range(1, 13))
    rows0 = predict_source(run, data, tmp_path / "p0.csv")
    assert rows0.id_base == 0 and rows0.ids.tolist() == list(range(12))
    assert [float(r["score"]) for r in rows] == pytest.approx(rows0.scores.tolist(), rel=1e-8)
    assert [int(r["label"]) for r in rows] == rows0.labels.tolist()
    res = aelab_cli("predict", run, "--data", data, "--out", tmp_path / "p.csv", "--id-base", "1")
    assert res.returncode == 0 and "ids from 1" in res.stdout, res.stderr
    one_line_exit_2(aelab_cli("predict", run, "--data", data, "--id-base", "2"), "--id-base 2")
