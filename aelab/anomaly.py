"""Anomaly detection by reconstruction: per-image scores, ranking metrics, heat maps.

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

``analyse`` returns an ``AnomalyResult``; ``heatmaps`` computes the error maps its
figures need (drawn by ``aelab.figures.anomaly``), ``record`` writes ``RUN/anomaly.json``.
One module (about 480 lines) on purpose: the score kinds, the ranking metrics they are judged
by and the result that carries both are one analysis, read and changed together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from aelab import distributed
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, closest
from aelab.io import atomic_write, write_json
from aelab.tables import to_pandas

if TYPE_CHECKING:
    from aelab.run import Run

KINDS = ("mse", "l2", "l1", "ssim", "elbo", "latent", "knn", "combined", "normalised")
MIXES = ("combined", "normalised")
"""The kinds made of other kinds' scores (``components_for``)."""
COMBINED_WEIGHTS = {"mse": 0.5, "latent": 0.5}
ANOMALY_JSON = "anomaly.json"
MAX_FPR = 0.05
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
    gauss = latent_gaussian(run) if "latent" in kinds else None
    refs = None
    if "knn" in kinds:
        from aelab.scorenorm import reference_codes

        refs = reference_codes(run)
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


def batch_scores(run: Run, x: torch.Tensor, kinds: Sequence[str],
                 gauss: tuple[torch.Tensor, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None, *,
                 refs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-image scores of one model-range batch (call under ``torch.inference_mode``);
    ``gauss``: ``latent_gaussian(run)`` for ``latent``; ``refs``: ``scorenorm.reference_codes(run)``
    for ``knn``; ``model`` replaces the run's model (a quantised copy)."""
    model, pre = run.model if model is None else model, run.preprocess
    if model.variational:
        mean, logvar = model.encode_stats(x)
        code = mean
    else:
        code = model.encode(x)
    recon = model.decode(code).float()
    x = x.float()
    out: dict[str, torch.Tensor] = {}
    if {"mse", "l2", "l1"} & set(kinds):
        diff = (recon - x).flatten(1).mul_(1.0 / (pre.hi - pre.lo))
        if "l1" in kinds:
            out["l1"] = diff.abs().mean(1)
        sq = diff.square_()
        if "mse" in kinds:
            out["mse"] = sq.mean(1)
        if "l2" in kinds:
            out["l2"] = sq.sum(1).sqrt_()
    if "ssim" in kinds:
        from aelab.metrics import ssim

        try:
            out["ssim"] = 1.0 - ssim(pre.to_unit(recon), pre.to_unit(x))
        except ValueError as exc:
            raise AelabError(f"score kind 'ssim': {exc}") from None
    if "elbo" in kinds:
        from aelab.models.vae import kl_divergence

        out["elbo"] = per_image_loss(recon, x, run.config.train.loss) + \
            model.params.beta * kl_divergence(mean.float(), logvar.float()) / math.prod(model.input_shape)
    if "latent" in kinds:
        if gauss is None:
            raise AelabError("score kind 'latent' needs the Gaussian fitted to the training codes")
        mu, whiten = gauss
        out["latent"] = ((code.flatten(1).float() - mu) @ whiten).square_().sum(1).sqrt_()
    if "knn" in kinds:
        from aelab.scorenorm import knn_distance

        if refs is None:
            raise AelabError("score kind 'knn' needs the training codes (scorenorm.reference_codes)")

        out["knn"] = knn_distance(code, refs)
    return out


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose Linear layers run in int8 (dynamic quantisation, CPU only).

    The fcn's time is almost all in two 12288×1024 matrix products; int8 kernels
    (VNNI) do them 1.4-2× faster, and the reconstructions move by about 1e-3
    of the range (benchmarks/score_speed.py measures the effect on the ranking)."""
    import warnings

    if next(model.parameters()).device.type != "cpu":
        raise AelabError("int8 scoring runs on the CPU only; load the run with device='cpu'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager-mode API is deprecated in favour of torchao, still works
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def per_image_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """The training reconstruction loss, one mean per image (model-range units, like training)."""
    if kind == "l1":
        return (recon - target).abs().flatten(1).mean(1)
    if kind == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none").flatten(1).mean(1)
    return (recon - target).square().flatten(1).mean(1)


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


# -- the latent Gaussian ---------------------------------------------------------

def latent_gaussian(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and whitening matrix W of ``code_stats(run)``, float32 on the run's device:
    ``|(z - mean) @ W|`` is the Mahalanobis distance (W = L⁻ᵀ of the covariance's Cholesky factor)."""
    from aelab.codestats import code_stats

    stats = code_stats(run)
    return (torch.from_numpy(stats.mean_).float().to(run.device),
            torch.from_numpy(stats.whitening()).float().to(run.device))


# -- metrics ----------------------------------------------------------------------

def anomaly_labels(labels: np.ndarray, normal: Sequence[int] | None = None) -> np.ndarray:
    """Boolean "is anomalous" per image: label not in ``normal``, or label 1 of 0/1 labels."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels
    if normal is not None:
        return ~np.isin(labels, list(normal))
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
        raise AelabError(f"labels hold the values {shown}; anomaly metrics need 0 (normal) / 1 (anomalous) labels, "
                         f"or the normal classes named (see `aelab oneclass`)")
    return labels == 1


def metrics(scores: np.ndarray, labels: np.ndarray, max_fpr: float = MAX_FPR) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision), the best-F1 threshold and TPR at ``max_fpr`` FPR.

    ``labels``: True / 1 = anomalous. An image is called anomalous when its score
    is >= the threshold. With only one class present, the metrics that need both
    are None and ``undefined`` says why."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = anomaly_labels(np.asarray(labels).ravel())
    if len(s) != len(y):
        raise AelabError(f"{len(y)} labels for {len(s)} scores")
    if not len(s):
        raise AelabError("no scores to measure")
    if not np.isfinite(s).all():
        raise AelabError(f"{int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    out: dict[str, Any] = {"n": len(s), "n_anomalous": n_pos, "n_normal": n_neg,
                           "score_mean_normal": float(s[~y].mean()) if n_neg else None,
                           "score_mean_anomalous": float(s[y].mean()) if n_pos else None,
                           "roc_auc": None, "pr_auc": None, "best_f1": None, "threshold": None,
                           "precision": None, "recall": None, f"tpr_at_{round(max_fpr * 100):g}pct_fpr": None}
    if n_pos == 0 or n_neg == 0:
        which = "normal" if n_pos == 0 else "anomalous"
        why = f"the labels hold only {which} images, and these metrics compare normal with anomalous ones"
        out["undefined"] = {k: why for k, v in out.items() if v is None and k not in ("score_mean_normal",
                                                                                    "score_mean_anomalous")}
        return out
    tps, fps, thresholds = _counts(s, y)
    tpr, fpr = tps / n_pos, fps / n_neg
    precision = tps / (tps + fps)
    f1 = np.divide(2 * precision * tpr, precision + tpr, out=np.zeros_like(tpr), where=(precision + tpr) > 0)
    best = int(np.argmax(f1))
    ok = fpr <= max_fpr
    out.update({
        "roc_auc": float(np.trapezoid(np.r_[0.0, tpr], np.r_[0.0, fpr])),
        "pr_auc": float(np.sum(np.diff(np.r_[0.0, tpr]) * precision)),
        "best_f1": float(f1[best]), "threshold": float(thresholds[best]),
        "precision": float(precision[best]), "recall": float(tpr[best]),
        f"tpr_at_{round(max_fpr * 100):g}pct_fpr": float(tpr[ok].max()) if ok.any() else 0.0,
    })
    return out


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y = anomaly_labels(labels)
    tps, fps, thresholds = _counts(np.asarray(scores, dtype=np.float64), y)
    return np.r_[0.0, fps / max(len(y) - y.sum(), 1)], np.r_[0.0, tps / max(y.sum(), 1)], np.r_[np.inf, thresholds]


def _counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when calling every score >= t anomalous, per distinct t (descending)."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    return tps, (last + 1) - tps, s[last]


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


# -- error maps for the figures -------------------------------------------------------

@dataclass
class HeatMaps:
    """A few images with their reconstructions and per-pixel errors, for ``figures.anomaly.heatmap_figure``."""

    name: str
    """``worst`` or ``sample``: the file the figure goes to."""
    title: str
    tags: list[str]
    inputs: np.ndarray
    """uint8 N×H×W×C after the run's preprocessing."""
    recons: np.ndarray
    errors: np.ndarray
    """float N×H×W squared error, channel mean, [0, 1] pixel units."""
    masks: np.ndarray | None = None
    """bool N×H×W true defects on the same grid (``aelab.pixel``), outlined on the heat maps."""


def error_maps(run: Run, images: ImageSet | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, reconstructions, per-pixel squared error) for a few images: uint8 N×H×W×C twice
    (after the run's preprocessing) and float N×H×W (channel mean, [0, 1] pixel units)."""
    x = run.to_model(images)
    recon = run.reconstruct_tensor(x)
    err = ((recon - x) / (run.preprocess.hi - run.preprocess.lo)).square().mean(1)
    return run.preprocess.inverse(x), run.preprocess.inverse(recon), err.numpy()


def heatmaps(run: Run, result: AnomalyResult, top_k: int = 8, sample: int = 8,
             masks: np.ndarray | None = None) -> list[HeatMaps]:
    """Error maps of the ``top_k`` highest scores and of a seeded random ``sample`` (seed 0); ``masks``
    (bool N×h×w on the model's grid, one per scored image) go with them."""
    scores, images, ids, anomalous = result.scores, result.images, result.ids, result.anomalous
    picks = {"worst": np.argsort(-scores, kind="stable")[:max(top_k, 0)],
             "sample": np.sort(np.random.default_rng(0).choice(len(scores), min(max(sample, 0), len(scores)),
                                                               replace=False))}
    out = []
    for name, pos in picks.items():
        if not len(pos):
            continue
        subset = images.subset(pos) if isinstance(images, ImageSet) else np.asarray(images[pos])
        title = (f"{run.name}: the {len(pos)} highest {result.kind} scores" if name == "worst"
                 else f"{run.name}: {len(pos)} images drawn at random")
        tags = [f"id {ids[p]}\n{scores[p]:.4g}" + ("" if anomalous is None else
                                                   (" anom." if anomalous[p] else " normal")) for p in pos]
        out.append(HeatMaps(name, title, tags, *error_maps(run, subset), masks=None if masks is None else masks[pos]))
    return out


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
