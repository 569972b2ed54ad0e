"""The one-class protocol: train on the images of one class, score everything else as anomalous.

For each normal class ``c`` a model is trained on the training images labelled
``c`` only; then every test image is scored, and the test images whose label is
not ``c`` are the anomalies. ROC AUC per class, and its mean over classes, is
the number the literature reports (Ruff et al. 2018 for MNIST / CIFAR-10).

Test images: sources with their own test split (``npz`` with ``x_train``/``x_test``,
an IDX folder with ``t10k`` files) use it. Sources without one (``builtin:digits``,
``builtin:lfw``, ``builtin:faces``) are split per class with a seeded draw:
``test_fraction`` of every class goes to the test set (``split_seed``), and both
halves are written as ``.npy`` files under ``OUT/data/`` so that every Run folder
names the exact images it was trained on and can be scored again later.

A ``minmax: fit`` preprocessing step is fitted on each class's own training
images before training; the fitted ``[lo, hi]`` is in the Run's ``config.yaml``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aelab.config import Config, as_config
from aelab.data.imageset import ImageSet
from aelab.data.splits import fit_preprocess, load_for
from aelab.errors import AelabError
from aelab.io import write_json, write_npy
from aelab.runfolder import RUN, SCORES, TEMP_FILES, FolderKind, make_folder, open_folder
from aelab.tables import to_pandas

SUMMARY = "oneclass.json"
DATA_FOLDER = FolderKind("one-class data folder", (), ("train-images.npy", "train-labels.npy", "test-images.npy",
                                                       "test-labels.npy", TEMP_FILES))
ONECLASS_FOLDER = FolderKind("one-class folder", (SUMMARY, "data/", "class-*/"), (SUMMARY, TEMP_FILES),
                             (("data", DATA_FOLDER), ("class-*", RUN)))
"""OUT of a one-class study: ``oneclass.json``, ``data/`` (the per-class split) and a Run per class."""


class OneClassResult(dict):
    """``oneclass()``'s result: the JSON mapping it writes to ``OUT/oneclass.json`` (``rows``,
    ``mean_roc_auc``, ...), with the per-class rows as ``table`` and ``to_pandas()``."""

    @property
    def table(self) -> list[dict[str, Any]]:
        return self["rows"]

    def to_pandas(self) -> Any:
        return to_pandas(self["rows"])


def parse_normal(value: str | int | Sequence[int] | None) -> list[int] | None:
    """``3``, ``"0,1,2"``, ``"0-9"`` or ``"all"`` (None) -> class labels."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return None
    if isinstance(value, int | np.integer):
        return [int(value)]
    if isinstance(value, str):
        from aelab.data.ids import parse_ids

        try:
            return parse_ids(value)
        except AelabError as exc:
            raise AelabError(f"--normal '{value}': {exc}") from None
    return [int(v) for v in value]


def split_per_class(data: ImageSet, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the (train, test) halves: ``test_fraction`` of every class, drawn with ``seed``."""
    if not 0 < test_fraction < 1:
        raise AelabError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    labels = data.get_labels()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        pos = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(pos) * test_fraction))
        test.append(pos[:k])
        train.append(pos[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def prepare(cfg: Config, source: str, folder: Path, test_fraction: float, split_seed: int
            ) -> tuple[dict[str, Any], ImageSet, list[int], dict[int, str]]:
    """Load the source; return the config's data section for training, the labelled test set,
    the classes present, and their names."""
    full = load_for(cfg.data, source)
    if full.labels is None:
        raise AelabError(f"{full.name}: the one-class protocol needs labelled images (a label per image)")
    names = dict(enumerate(full.class_names)) if full.class_names else {}
    if full.test is not None:
        if full.test.labels is None:
            raise AelabError(f"{full.test.name}: the test split has no labels")
        data = {"source": source, "labels": cfg.data.labels}
        return data, full.test, sorted(np.unique(full.get_labels()).tolist()), names
    train_pos, test_pos = split_per_class(full, test_fraction, split_seed)
    folder.mkdir(exist_ok=True)
    paths = {}
    for part, pos in (("train", train_pos), ("test", test_pos)):
        subset = full.subset(pos)
        paths[part] = (folder / f"{part}-images.npy", folder / f"{part}-labels.npy")
        write_npy(paths[part][0], subset.batch())
        write_npy(paths[part][1], subset.get_labels())
    from aelab.data.sources import load_images

    test = load_images(f"npy:{paths['test'][0]}", labels=str(paths["test"][1]))
    data = {"source": f"npy:{paths['train'][0]}", "labels": str(paths["train"][1])}
    return data, test, sorted(np.unique(full.get_labels()).tolist()), names


def class_config(cfg: Config, data: dict[str, Any], normal: int) -> Config:
    """The config of one class's run: its training images only, ``minmax: fit`` fitted on them."""
    raw = cfg.to_dict()
    raw["name"] = f"{cfg.name}-class{normal}"
    raw["data"].update(data, select_labels=[normal])
    return fit_preprocess(as_config(raw))


def oneclass(config: Config | dict[str, Any] | str | Path, data: str | None = None,
             normal: str | int | Sequence[int] | None = None, *, out: str | Path | None = None, kind: str = "mse",
             overrides: list[str] | None = None, test_fraction: float = 0.5, split_seed: int = 0,
             force: bool = False, progress: bool = False) -> OneClassResult:
    """Run the protocol for each class in ``normal`` (default: every class); one Run per class.

    Returns ``{"rows": [per-class AUROC, PR AUC, sizes, times], "mean_roc_auc", ...}`` and
    writes it to ``OUT/oneclass.json``. A finished class run with the same config is reused."""
    from aelab.anomaly import analyse, check_kind, record
    from aelab.run import SUMMARY as RUN_SUMMARY
    from aelab.run import load_run
    from aelab.train import train

    check_kind(kind)
    cfg = as_config(config, overrides)
    source = data or cfg.data.source
    if not out:
        out = make_folder("runs") / f"oneclass-{cfg.name}"
    out = open_folder(out, ONECLASS_FOLDER).resolve()  # never writes into (or --force replaces) a stranger's folder
    train_data, test, classes, names = prepare(cfg, source, out / "data", test_fraction, split_seed)
    wanted = parse_normal(normal) or classes
    missing = [c for c in wanted if c not in classes]
    if missing:
        raise AelabError(f"--normal {missing[0]}: no image has that label (labels: {', '.join(map(str, classes))})")
    if len(classes) < 2:
        raise AelabError(f"{source}: one class only ({classes[0]}); the protocol needs other classes as anomalies")
    rows = []
    for c in wanted:
        ccfg = class_config(cfg, train_data, c)
        folder = out / f"class-{c}"
        run = None
        if not force and (folder / RUN_SUMMARY).exists():
            old = load_run(folder)
            run = old if old.config.to_dict() == ccfg.to_dict() else None
        if run is None:
            run = train(ccfg, folder, force=True, progress=progress)  # OUT/class-c is ours to replace
        started = time.perf_counter()
        res = analyse(run, test, kind, normal=[c], csv=folder / SCORES, progress=progress)
        record(run, res)
        m = res.metrics
        rows.append({"normal": c, "class": names.get(c, str(c)), "n_train": run.summary["n_train"],
                     "n_test": m["n"], "n_anomalous": m["n_anomalous"], "roc_auc": m["roc_auc"],
                     "pr_auc": m["pr_auc"], "tpr_at_5pct_fpr": m["tpr_at_5pct_fpr"],
                     "train_s": run.summary["wall_time_s"], "score_s": round(time.perf_counter() - started, 3),
                     "run": str(run.path)})
    aucs = [r["roc_auc"] for r in rows]
    result = OneClassResult({"config": cfg.name, "data": source, "kind": kind, "test": test.name,
              "split": "source test split" if train_data["source"] == source else
              f"per-class seeded split (test_fraction {test_fraction}, split_seed {split_seed})",
              "rows": rows, "mean_roc_auc": float(np.mean(aucs)), "mean_train_s": float(np.mean(
                  [r["train_s"] for r in rows])), "out": str(out)})
    write_json(out / SUMMARY, result)
    return result
