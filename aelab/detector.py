"""``AutoencoderDetector``: aelab's anomaly scores as a scikit-learn / PyOD style estimator.

    det = aelab.AutoencoderDetector("oneclass", contamination=0.05, train__epochs=50).fit(normal_images)
    det.decision_function(images)   # higher = more anomalous (``aelab.anomaly.score``)
    det.predict(images)             # 1 = anomalous: score > threshold_
    det.save("runs/detector"); det = aelab.AutoencoderDetector.load("runs/detector")

Fitting trains a Run (``aelab.train``) on X, scores X with ``aelab.anomaly.score`` and puts the
threshold at the (1 - contamination) quantile of those training scores, as PyOD does; with ``fpr``
it is the (1 - fpr) quantile of the scores of the run's held-out validation split instead (normal
images the model never trained on, so the false-positive rate on new normal images is about ``fpr``).
The threshold, the score kind and the training scores' range live in ``RUN/detector.json``
(``runfolder.DETECTOR``), the training scores in ``RUN/detector-scores.safetensors``: a saved
detector is a Run folder, read without pickle, and ``aelab predict RUN`` applies it.

Parameters follow scikit-learn's rules: ``__init__`` stores them and nothing else (checked in
``fit``), ``get_params`` / ``set_params`` / ``sklearn.base.clone`` see every one, config
overrides included (``train__epochs=5`` or ``**{"train.epochs": 5}``).

One module (~370 lines) for one estimator: its parameter checks, the class, and the saved
detector's file and ``predict_source`` are the estimator's contract, changed together.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin

from aelab.anomaly import KINDS, check_kind, score, write_scores_csv
from aelab.config import Config, as_config, config_from_dict, preset, set_key
from aelab.data.imageset import ImageSet
from aelab.data.sources import as_uint8_images
from aelab.errors import AelabError, RunError, closest
from aelab.io import load_tensors, save_tensors, write_json, write_npy
from aelab.run import Run, load_run, read_summary
from aelab.runfolder import DETECTOR, DETECTOR_SCORES, make_folder, state

FORMAT, VERSION = "aelab-detector", 1
PARAMS = ("config", "score", "contamination", "fpr", "out", "progress")
FPR_VAL_FRACTION = 0.2
"""The held-out share of X used for ``fpr`` when the config holds none out (``data.val_fraction: 0``)."""
Images = np.ndarray | ImageSet | str


def check_contamination(value: Any) -> float:
    """PyOD's range: a share of outliers in (0, 0.5]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 0.5:
        raise AelabError(f"contamination must be a number in (0, 0.5], got {value!r}")
    return float(value)


def check_fpr(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise AelabError(f"fpr must be a number in (0, 1) or None, got {value!r}")
    return float(value)


def check_score_kind(kind: Any) -> str:
    """A score kind a threshold can be set on: ``combined`` ranks within the set scored together,
    so its numbers mean nothing for another set of images."""
    if not isinstance(kind, str):
        raise AelabError(f"score must be a score kind name, got {kind!r}")
    check_kind(kind)
    if kind == "combined":
        others = ", ".join(k for k in KINDS if k != "combined")
        raise AelabError("score 'combined' ranks images within the set scored together, so a threshold on it "
                         f"does not carry over to new images; use one of {others}")
    return kind


def override_key(name: str) -> list[str] | None:
    """``train__epochs`` / ``train.epochs`` -> ["train", "epochs"]; None for a plain parameter name."""
    parts = name.replace("__", ".").split(".")
    return parts if len(parts) > 1 and all(parts) else None


def resolve_config(config: Config | dict[str, Any] | str | Path) -> Config:
    """A Config from a Config, a dict, a YAML path, a Run folder or the name of a shipped preset."""
    if isinstance(config, Config | dict):
        return as_config(config)
    if not isinstance(config, str | Path):
        raise AelabError(f"config must be a preset name, a YAML path, a Run folder or a dict, got "
                         f"{type(config).__name__}")
    path = Path(config)
    if path.exists():
        return as_config(path)
    named = preset(str(config))
    if named.exists():
        return as_config(named)
    names = [p.stem for p in named.parent.glob("*.yaml")]
    raise AelabError(f"config '{config}': no such file and no such preset{closest(str(config), names)}; "
                     f"presets: {', '.join(sorted(names))}")


def as_images(X: Any, where: str = "X") -> np.ndarray | ImageSet | str:
    """X as an ImageSet, a source string or uint8 N×H×W×C (from uint8/float N×H×W×C, N×C×H×W or N×H×W)."""
    if isinstance(X, ImageSet | str):
        return X
    if isinstance(X, Path):
        return str(X)
    arr = np.asarray(X) if not isinstance(X, np.memmap) else X
    return as_uint8_images(arr, where)


class AutoencoderDetector(OutlierMixin, BaseEstimator):
    """An autoencoder anomaly detector fitted on normal images (see the module doc).

    config: preset name (``oneclass``), YAML path, Run folder or dict; ``**overrides`` change its keys.
    score: the ``aelab.anomaly`` score kind (not ``combined``).
    contamination: share of outliers assumed in X, in (0, 0.5]; sets the threshold unless ``fpr`` does.
    fpr: target false-positive rate on held-out normal images (the run's validation split).
    out: the Run folder each fit trains into, replacing the previous fit's (default: a temporary folder, removed
    with the detector; ``save`` keeps a copy). ``from_run`` and ``load`` leave it None, so a refit never
    overwrites the run they read.
    """

    def __init__(self, config: Config | dict[str, Any] | str | Path = "oneclass", score: str = "mse",
                 contamination: float = 0.1, fpr: float | None = None, out: str | Path | None = None,
                 progress: bool = False, **overrides: Any):
        self.config = config
        self.score = score
        self.contamination = contamination
        self.fpr = fpr
        self.out = out
        self.progress = progress
        self.overrides = overrides

    # -- parameters (scikit-learn) ---------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in PARAMS}, **self.overrides}

    def set_params(self, **params: Any) -> AutoencoderDetector:
        for name, value in params.items():
            if name in PARAMS:
                setattr(self, name, value)
            elif override_key(name):
                self.overrides[name] = value
            else:
                raise AelabError(f"unknown parameter {name!r}{closest(name, PARAMS)}; parameters: "
                                 f"{', '.join(PARAMS)}, or a config key as section__key")
        return self

    def check_params(self) -> Config:
        """Every parameter checked (one-line ``AelabError``s) and the config they make."""
        check_contamination(self.contamination)
        check_fpr(self.fpr)
        check_score_kind(self.score)
        raw = resolve_config(self.config).to_dict()
        for name, value in self.overrides.items():
            key = override_key(name)
            if key is None:
                raise AelabError(f"unknown parameter {name!r}{closest(name, PARAMS)}; parameters: "
                                 f"{', '.join(PARAMS)}, or a config key as section__key")
            set_key(raw, key, value, where=repr(name))
        return config_from_dict(raw, source="AutoencoderDetector")

    # -- fitting ---------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> AutoencoderDetector:
        """Train on X (normal images; ``y`` is ignored, as in PyOD), score X, set the threshold."""
        from aelab.data.splits import fit_preprocess
        from aelab.train import train

        cfg = self.check_params()
        images = as_images(X)
        with tempfile.TemporaryDirectory(prefix="aelab-fit-") as tmp:
            raw = cfg.to_dict()
            raw["data"].update(source=_source_for(images, Path(tmp)), labels=None, select_labels=None)
            for name, value in self.overrides.items():  # the user's data.* keys win over X's defaults
                set_key(raw, override_key(name), value, where=repr(name))  # type: ignore[arg-type]
            if self.fpr is not None and not raw["data"]["val_fraction"]:
                raw["data"]["val_fraction"] = FPR_VAL_FRACTION
            cfg = fit_preprocess(config_from_dict(raw, source="AutoencoderDetector"))
            out = Path(self.out) if self.out is not None else self._temp_folder() / cfg.name
            run = train(cfg, out, force=True, progress=self.progress)
            assert run is not None  # one process: this is rank 0
            self._calibrate(run, score(run, run.splits.full, self.score))  # while X's file is there
        return self

    @classmethod
    def from_run(cls, run: Run | str | Path, score: str = "mse", contamination: float = 0.1,
                 fpr: float | None = None) -> AutoencoderDetector:
        """A detector over a Run trained before (``aelab train``), no training: its data's scores set the threshold."""
        run = run if isinstance(run, Run) else load_run(run)
        # out stays None: a refit (or a clone's) trains into a folder of its own, never over this run
        det = cls(config=str(run.path), score=score, contamination=contamination, fpr=fpr)
        det.check_params()
        det._calibrate(run, score_fn(run, run.splits.train, score))
        return det

    def _calibrate(self, run: Run, train_scores: np.ndarray) -> None:
        """Set the threshold from the training scores (contamination) or the held-out split's (fpr)."""
        if self.fpr is None:
            threshold = float(np.quantile(train_scores, 1 - self.contamination))
            rule = {"contamination": self.contamination, "on": "training scores", "n": len(train_scores)}
        else:
            if run.splits.val is None:
                raise AelabError(f"run {run.path} holds no validation split (data.val_fraction 0); fpr needs one, "
                                 f"use contamination")
            held_out = score(run, run.val_data(), self.score)
            threshold = float(np.quantile(held_out, 1 - self.fpr))
            rule = {"fpr": self.fpr, "on": "held-out validation split", "n": len(held_out)}
        self._set_fitted(run, train_scores, threshold, rule)

    def _set_fitted(self, run: Run, train_scores: np.ndarray, threshold: float, rule: dict[str, Any]) -> None:
        self.run_ = run
        self.decision_scores_ = np.asarray(train_scores, dtype=np.float64)
        self.threshold_ = threshold
        self.threshold_rule_ = rule
        self.labels_ = (self.decision_scores_ > threshold).astype(int)
        self.score_range_ = (float(self.decision_scores_.min()), float(self.decision_scores_.max()))

    def _temp_folder(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="aelab-detector-"))
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        return folder

    def _check_fitted(self) -> Run:
        if not hasattr(self, "run_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this AutoencoderDetector is not fitted yet; call fit(X) or load(path) first")
        return self.run_

    # -- using it --------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """One float64 score per image, higher = more anomalous (the fitted ``score`` kind)."""
        return score(self._check_fitted(), as_images(X), self.score)

    def predict(self, X: Any) -> np.ndarray:
        """1 (anomalous: score above ``threshold_``) or 0 per image."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_

    def predict_proba(self, X: Any) -> np.ndarray:
        """N×2 [P(normal), P(anomalous)], PyOD's ``linear`` method: the score min-max scaled on the
        training scores (min -> 0, max -> 1), clipped to [0, 1]. A ranking, not a calibrated probability."""
        return self.proba_of(self.decision_function(X))

    def proba_of(self, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        lo, hi = self.score_range_
        p = np.clip((np.asarray(scores, dtype=np.float64) - lo) / max(hi - lo, np.finfo(float).tiny), 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)

    # -- files -----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """The Run folder with ``detector.json`` (threshold, score kind, parameters) and the training scores:
        copied to ``path`` (created; an existing non-empty folder is refused) unless it is the run's own."""
        run = self._check_fitted()
        path = Path(path)
        if path.resolve() == run.path.resolve():
            self._write_files(path)
            return path
        if state(path) not in ("absent", "empty"):
            raise RunError(f"{path} is not empty; save a detector into a new folder")
        make_folder(path)  # checks the parent exists (only the last level is created)
        temp = path.parent / f".{path.name}.saving"
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(run.path, temp, ignore=shutil.ignore_patterns(DETECTOR, DETECTOR_SCORES, ".*.tmp"))
        self._write_files(temp)
        temp.rename(path)  # onto the empty folder, whole or absent: a half-copied folder never carries the final name
        return path

    def _write_files(self, folder: Path) -> None:
        save_tensors(folder / DETECTOR_SCORES, {"scores": _as_tensor(self.decision_scores_)},
                     metadata={"format": FORMAT})
        write_json(folder / DETECTOR, {
            "format": FORMAT, "version": VERSION, "score": self.score, "threshold": self.threshold_,
            "rule": self.threshold_rule_, "score_min": self.score_range_[0], "score_max": self.score_range_[1],
            "n_train": len(self.decision_scores_), "n_flagged": int(self.labels_.sum()),
            "params": _json_params(self.get_params())})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> AutoencoderDetector:
        """A detector saved with ``save`` (or a Run folder given a threshold by ``from_run(...).save``)."""
        run = load_run(path, device=device)
        info = read_detector(run.path)
        params = {k: v for k, v in info.get("params", {}).items() if k in PARAMS or override_key(k)}
        det = cls(**{**params, "config": str(run.path), "out": None, "score": info["score"]})  # refits elsewhere
        scores_file = run.path / DETECTOR_SCORES
        scores = load_tensors(scores_file)["scores"].numpy() if scores_file.exists() else np.array(
            [info["score_min"], info["score_max"]])
        det._set_fitted(run, scores, float(info["threshold"]), info.get("rule", {}))
        det.score_range_ = (float(info["score_min"]), float(info["score_max"]))
        return det


score_fn = score  # the module function, where a parameter named ``score`` hides it


def read_detector(path: Path) -> dict[str, Any]:
    """``RUN/detector.json``, checked; a run without one is a one-line RunError saying how to give it one."""
    file = Path(path) / DETECTOR
    if not file.exists():
        raise RunError(f"run {path} has no threshold ({DETECTOR}); give it one with `aelab threshold {path} "
                       f"--contamination 0.1` (or fit an aelab.AutoencoderDetector)")
    info = read_summary(file)
    if info.get("format") != FORMAT:
        raise RunError(f"{file}: not an aelab detector file (format {info.get('format')!r})")
    for key, kind in (("threshold", float), ("score_min", float), ("score_max", float), ("score", str)):
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float if kind is float else str):
            raise RunError(f"{file}: '{key}' is missing or not a {'number' if kind is float else 'string'}")
    if info["score"] not in KINDS:
        raise RunError(f"{file}: unknown score kind '{info['score']}'")
    return info


@dataclass
class Predictions:
    """What ``aelab predict`` wrote and counted."""

    run: str
    data: str
    score: str
    threshold: float
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    csv: str | None = None
    id_base: int = 0
    """What ``ids`` (and the CSV's ``ID`` column) count from."""

    def numbers(self) -> dict[str, Any]:
        n_anom = int(self.labels.sum())
        return {"run": self.run, "data": self.data, "score": self.score, "threshold": self.threshold,
                "n": len(self.labels), "n_anomalous": n_anom, "n_normal": len(self.labels) - n_anom,
                "csv": self.csv, "id_base": self.id_base}


def predict_source(run: str | Path, data: str | np.ndarray | ImageSet, out: str | Path | None = None,
                   batch_size: int | None = None, id_base: int = 0) -> Predictions:
    """Score ``data`` with a saved detector and label it by the saved threshold; ``out``: CSV ``ID,score,label``
    with the ids counted from ``id_base`` (0: rows of the data; 1: the first image is 1)."""
    from aelab.data.ids import check_base, from_rows

    id_base = check_base(id_base)
    det = AutoencoderDetector.load(run)
    images = det.run_.check_images(det.run_.data(data) if isinstance(data, str) else as_images(data, "data"))
    scores = score(det.run_, images, det.score, batch_size=batch_size)
    labels = (scores > det.threshold_).astype(int)
    ids = from_rows(images.ids if isinstance(images, ImageSet) else np.arange(len(scores)), id_base)
    csv = None
    if out is not None:
        write_scores_csv(out, scores, ids, labels=labels)
        csv = str(out)
    name = images.name if isinstance(images, ImageSet) else f"array of {len(scores)} images"
    return Predictions(str(det.run_.path), name, det.score, det.threshold_, ids, scores, labels, csv, id_base)


def _source_for(images: np.ndarray | ImageSet | str, tmp: Path) -> str:
    """A source string training can load: a string as given, arrays and ImageSets through a .npy."""
    if isinstance(images, str):
        return images
    arr = images.batch() if isinstance(images, ImageSet) else np.ascontiguousarray(images)
    return f"npy:{write_npy(tmp / 'train-images.npy', arr)}"


def _as_tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters JSON holds as they are (paths as text; a Config object is not repeated here)."""
    plain = str | int | float | bool | dict | list | type(None)
    return {k: str(v) if isinstance(v, Path) else v for k, v in params.items() if isinstance(v, plain | Path)}
