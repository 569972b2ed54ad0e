"""Anomaly detection by reconstruction: per-image scores over a data set, the result, its record.

A model trained on normal images reconstructs normal images well and anomalies
badly, so how badly an image comes back ranks it. Every score is "higher = more
anomalous" and is computed per batch with tensor ops while the images stream
through the model (a memory-mapped ``npy:`` file stays on disk).

Score kinds (``KINDS``); pixel errors are measured with the model range mapped
to [0, 1], so numbers read the same for ``range: [-1, 1]`` and ``[0, 1]``:

``mse``       mean squared error per image
``l2``        L2 norm of the error image (what the course sample code ranked by)
``l1``        mean absolute error
``ssim``      1 - SSIM (Gaussian window, as in ``aelab.metrics``)
``elbo``      negative ELBO of a VAE, on the training loss's scale: the per-element
              reconstruction loss (``train.loss``) of the decoded posterior mean
              plus ``beta * KL / D`` (D elements per image)
``latent``    Mahalanobis distance of the code under the Gaussian fitted to the codes
              of (up to 20,000) training images: ``aelab.codestats.code_stats(run)``,
              the same fit ``aelab sample`` draws from; cached in the run folder
``knn``       mean distance of the code to its 5 nearest training codes, in the
              whitened space where ``latent`` is Euclidean (``aelab.scorenorm``)
``combined``  ``COMBINED_WEIGHTS`` mix of the rank-normalised ``mse`` and ``latent``
              scores. Ranks are taken over the images scored together, so this kind
              ranks a set; score a whole test set at once (sharded scoring should
              gather ``components`` first and call ``combine``).
``normalised`` the mean of the ``ssim``, ``latent`` and ``knn`` scores, each z-scored
              with its mean and std on the run's held-out normal images
              (``heldout_stats``, ``aelab.scorenorm``); per image, like the single kinds

``analyse`` returns an ``AnomalyResult``, with the ranking metrics of ``aelab.rankmetrics`` when
the data has labels; ``record`` writes ``RUN/anomaly.json``. The per-batch kernels are in
``aelab.scorekernels``, the error maps the figures draw (``heatmaps``) in ``aelab.errormaps``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aelab import distributed
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, closest
from aelab.io import atomic_write, write_json
from aelab.rankmetrics import anomaly_labels, metrics
from aelab.scorekernels import batch_scores, latent_gaussian, quantized
from aelab.tables import to_pandas

if TYPE_CHECKING:
    from aelab.run import Run

KINDS = ("mse", "l2", "l1", "ssim", "elbo", "latent", "knn", "combined", "normalised")
MIXES = ("combined", "normalised")
"""The kinds made of other kinds' scores (``components_for``)."""
COMBINED_WEIGHTS = {"mse": 0.5, "latent": 0.5}
ANOMALY_JSON = "anomaly.json"
Images = np.ndarray | ImageSet | str | None


# -- scoring ---------------------------------------------------------------------

def check_kind(kind: str, run: Run | None = None) -> str:
    """The kind, or a one-line error naming the valid ones (and why ``elbo`` needs a VAE)."""
    if kind not in KINDS:
        raise AelabError(f"unknown score kind '{kind}'{closest(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    if kind == "elbo" and run is not None and not run.variational:
        raise AelabError(f"score kind 'elbo' needs a VAE; run {run.path} is a {run.model.family} model "
                         f"(use mse, l2, l1, ssim, latent, knn, combined or normalised)")
    return kind


def components_for(kind: str) -> tuple[str, ...]:
    """The per-image scores ``kind`` is made of (``combined`` mixes two, ``normalised`` three)."""
    from aelab.scorenorm import NORMALISED_PARTS

    return {"combined": tuple(COMBINED_WEIGHTS), "normalised": NORMALISED_PARTS}.get(kind, (kind,))


def score(run: Run, images: Images = None, kind: str = "mse", *, batch_size: int | None = None,
          progress: bool = False, int8: bool = False) -> np.ndarray:
    """One float64 score per image, higher = more anomalous.

    ``images``: uint8 N×H×W×C array (or one image), an ImageSet, a source string,
    or None for the run's own source (all of it, so ids are rows of that data).
    ``int8``: run the Linear layers with dynamic int8 quantisation (see ``quantized``)."""
    check_kind(kind, run)
    parts = components(run, images, components_for(kind), batch_size=batch_size, progress=progress, int8=int8)
    if kind == "normalised":
        from aelab.scorenorm import zmean

        return zmean(parts, heldout_stats(run))
    return combine(parts) if kind == "combined" else parts[kind]


def components(run: Run, images: Images, kinds: Iterable[str], *, batch_size: int | None = None,
               progress: bool = False, int8: bool = False) -> dict[str, np.ndarray]:
    """Several per-image scores from one pass over the data (``combined`` and ``normalised`` excluded)."""
    kinds = tuple(dict.fromkeys(check_kind(k, run) for k in kinds))
    for mix in set(MIXES) & set(kinds):
        raise AelabError(f"'{mix}' is made from the {', '.join(components_for(mix))} components; ask for those, "
                         f"then mix them (combine() / scorenorm.zmean())")
    data = resolve_images(run, images)
    refs = None
    if "knn" in kinds:  # first: encoding the training subsample once serves the fit and the references
        from aelab.scorenorm import reference_codes

        refs = reference_codes(run)
    gauss = latent_gaussian(run) if "latent" in kinds else None
    model = quantized(run.model) if int8 else run.model
    # Under torchrun each process scores its contiguous shard and every process gets all scores, in id order.
    d = distributed.joined()
    data = distributed.shard_of(data, d)
    n = len(data)
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    bar = _progress(progress and d.main, n)
    with torch.inference_mode(), bar or _null():
        task = bar.add_task("scoring", total=n) if bar else None
        for x in run.batches(data, batch_size):
            for k, v in batch_scores(run, x, kinds, gauss, model, refs=refs).items():
                outs[k].append(v.double().cpu())
            if bar:
                bar.update(task, advance=len(x))
    result = {k: distributed.all_gather_rows(torch.cat(v).numpy() if v else np.empty(0), d)
              for k, v in outs.items()}
    for k, v in result.items():
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise AelabError(f"score '{k}' is not finite for {bad.size} image(s) (first: position {bad[0]}); "
                             f"the run {run.path} may have diverged")
    return result


def heldout_stats(run: Run) -> dict[str, tuple[float, float]]:
    """Mean and std (ddof 0) of each ``normalised`` component over the run's held-out normal images
    (its validation split, or its training split when there is none); kept in ``run.cache``."""
    key = ("normalised_stats",)
    if key not in run.cache:
        images = run.splits.held_out
        if len(images) < 2:
            raise AelabError(f"score kind 'normalised' needs at least 2 held-out images; run {run.path} has "
                             f"{len(images)}")
        parts = components(run, images, components_for("normalised"))
        run.cache[key] = {k: (float(v.mean()), float(v.std())) for k, v in parts.items()}
    return run.cache[key]


def combine(parts: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted sum of rank-normalised scores (ranks in (0, 1], ties share their mean rank)."""
    weights = weights or COMBINED_WEIGHTS
    missing = [k for k in weights if k not in parts]
    if missing:
        raise AelabError(f"combine: missing component score(s) {', '.join(missing)}")
    total = sum(weights.values())
    return sum(w / total * rank_normalise(parts[k]) for k, w in weights.items())


def rank_normalise(x: np.ndarray) -> np.ndarray:
    """Average ranks divided by N: 1/N for the lowest score, 1 for the highest."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    stops = np.r_[starts[1:], len(x)]
    mean_rank = (starts + stops + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, stops - starts)
    return ranks / max(len(x), 1)


def resolve_images(run: Run, images: Images, labels: str | None = None) -> ImageSet | np.ndarray:
    """A source string or None becomes the ImageSet the run would load; arrays are checked."""
    if images is None or isinstance(images, str):
        images = run.data(images, labels)
    return run.check_images(images)


# -- files ------------------------------------------------------------------------

def write_scores_csv(path: str | Path, scores: np.ndarray, ids: np.ndarray | None = None,
                     labels: np.ndarray | None = None) -> Path:
    """The course's submission format: header ``ID,score``, one row per image (ids 0..N-1 by default;
    ``analyse`` passes them in the base the user counts from); with ``labels`` (0/1 per image,
    ``aelab predict``) a third column ``label``."""
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.arange(len(scores)) if ids is None else np.asarray(ids)
    if len(ids) != len(scores) or (labels is not None and len(labels) != len(scores)):
        raise AelabError(f"{len(ids)} ids and {'no' if labels is None else len(labels)} labels "
                         f"for {len(scores)} scores")
    if labels is None:
        rows = "".join(f"{int(i)},{s:.9g}\n" for i, s in zip(ids.tolist(), scores.tolist(), strict=True))
        atomic_write(path, "ID,score\n" + rows)
    else:
        rows = "".join(f"{int(i)},{s:.9g},{int(y)}\n" for i, s, y in zip(ids.tolist(), scores.tolist(),
                                                                          np.asarray(labels).tolist(), strict=True))
        atomic_write(path, "ID,score,label\n" + rows)
    return Path(path)


# -- the whole job ----------------------------------------------------------------

@dataclass
class AnomalyResult:
    """The scores of a data set and, with labels, how well they rank the anomalies."""

    run: str
    data: str
    kind: str
    scores: np.ndarray = field(repr=False)
    """float64, one per image, higher = more anomalous."""
    ids: np.ndarray = field(repr=False)
    """Each image's id, counted from ``id_base`` (as the CSV and the heat maps show them)."""
    images: ImageSet | np.ndarray = field(repr=False)
    """What was scored (for ``heatmaps``)."""
    anomalous: np.ndarray | None = field(default=None, repr=False)
    """Boolean per image, when labels were given or carried by the data."""
    metrics: dict[str, Any] | None = None
    wall_time_s: float = 0.0
    precision: str = "fp32"
    csv: str | None = None
    figures: dict[str, str] = field(default_factory=dict)
    record: str | None = None
    pixel: dict[str, Any] | None = None
    """Pixel-level AUROC and PRO where defect masks exist (``aelab.pixel``)."""
    id_base: int = 0

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per image: ``ID``, ``score`` and, with labels, ``anomalous`` (the CSV's rows and more)."""
        rows = [{"ID": int(i), "score": float(s)} for i, s in zip(self.ids.tolist(), self.scores.tolist(), strict=True)]
        if self.anomalous is not None:
            for row, a in zip(rows, self.anomalous.tolist(), strict=True):
                row["anomalous"] = bool(a)
        return rows

    def to_pandas(self) -> Any:
        return to_pandas(self.table)

    def numbers(self) -> dict[str, Any]:
        """The JSON view: everything but the arrays."""
        out: dict[str, Any] = {"run": self.run, "data": self.data, "kind": self.kind, "n": self.n,
                               "wall_time_s": round(self.wall_time_s, 3),
                               "images_per_s": round(self.n / max(self.wall_time_s, 1e-9), 1),
                               "precision": self.precision, "id_base": self.id_base}
        if self.kind == "combined":
            out["weights"] = dict(COMBINED_WEIGHTS)
        if self.kind == "normalised":
            out["parts"] = list(components_for("normalised"))
        for key in ("csv", "metrics", "pixel", "record"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.figures:
            out["figures"] = dict(self.figures)
        return out


def analyse(run: Run, data: ImageSet | np.ndarray | str | None = None, kind: str = "mse", *,
            labels: str | np.ndarray | None = None, normal: Sequence[int] | None = None,
            csv: str | Path | None = None, batch_size: int | None = None, progress: bool = False,
            int8: bool = False, id_base: int = 0) -> AnomalyResult:
    """Score ``data``, write the CSV, and measure against labels when there are any.

    ``labels``: a ``.npy`` path or an array (1 / True = anomalous); by default the
    data's own labels (``builtin:faces`` with ``anomaly_fraction``, ``builtin:lfw``).
    ``normal``: the labels that count as normal, for multi-class labels. ``id_base``: what the ids in
    the CSV and the figures count from (0: rows; 1: the first image is 1)."""
    from aelab.data.ids import check_base, from_rows

    id_base = check_base(id_base)
    check_kind(kind, run)
    from_source = isinstance(labels, str | Path) and isinstance(data, str)
    images = resolve_images(run, data, str(labels) if from_source else None)  # the loader checks the length
    y = None
    if labels is not None and not from_source:
        y = _label_array(labels, len(images))
    elif isinstance(images, ImageSet) and images.labels is not None:
        y = images.get_labels()
    started = time.perf_counter()
    scores = score(run, images, kind, batch_size=batch_size, progress=progress, int8=int8)
    elapsed = time.perf_counter() - started
    ids = from_rows(images.ids if isinstance(images, ImageSet) else np.arange(len(images)), id_base)
    anomalous = anomaly_labels(y, normal) if y is not None else None
    return AnomalyResult(
        run=str(run.path), data=_describe(data, images), kind=kind, scores=scores, ids=ids, images=images,
        anomalous=anomalous, metrics=metrics(scores, anomalous) if anomalous is not None else None,
        wall_time_s=elapsed, precision="int8" if int8 else "fp32",
        csv=str(write_scores_csv(csv, scores, ids)) if csv is not None else None, id_base=id_base)


def record(run: Run, result: AnomalyResult) -> Path:
    """Write ``RUN/anomaly.json`` (the numbers, figure paths relative to the run) for the report."""
    path = run.path / ANOMALY_JSON
    result.record = str(path)
    write_json(path, {**result.numbers(), "figures": {k: _relative(v, run.path) for k, v in result.figures.items()}})
    return path


def _label_array(labels: str | Path | np.ndarray, n: int) -> np.ndarray:
    """Labels given apart from a source (an array, or a .npy path): one per image."""
    where = "labels"
    if isinstance(labels, str | Path):
        from aelab.data.sources import _as_labels, _np_load

        where = str(labels)
        labels = _np_load(Path(labels), mmap=False)
        return _as_labels(labels, n, where)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise AelabError(f"{where}: {len(y) if y.ndim == 1 else y.shape} labels for {n} images")
    return y


def _describe(data: Any, images: ImageSet | np.ndarray) -> str:
    if isinstance(images, ImageSet):
        return images.name or "images"
    return f"array of {len(images)} images" if data is not None else "images"


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _progress(enabled: bool, total: int):
    if not enabled or total < 2048:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=True)


def _null():
    from contextlib import nullcontext

    return nullcontext()
