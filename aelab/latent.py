"""Latent edits, traversal and interpolation: change a code, decode, measure what changed.

Functions of a ``Run`` returning typed results (``EditResult``, ``TraversalResult``,
``InterpolationResult``): images as uint8 arrays, codes, and the numbers; each has a
``to_dict()`` with JSON-safe numbers for ``--json`` and the explorer. Drawing them is
``aelab.figures.latent``'s job, and the edit language (``0*=2``, ``3=2,1000=8``) is in
``aelab.edits``. Everything decodes many codes in one batch (a traversal grid is one decode
call), and per-run statistics of the codes are cached on the ``Run`` so repeated calls (the
web explorer) are instant.

Over the usual ~350 lines because it is one thing: every function here builds codes around one
image's code from the same ranges and the same cached code statistics, decodes them in one batch,
and measures the change the same way (``_change``); splitting it would scatter those shared parts.
About a third is the result types; the code statistics are fitted by ``aelab.codestats``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.data.imageset import ImageSet
from aelab.edits import NUMBER, Edit, apply_edits, parse_edit
from aelab.errors import AelabError, DataError
from aelab.io import json_safe

if TYPE_CHECKING:
    from aelab.run import Run

RANGE_KINDS = ("prior", "data", "minmax")
PRIOR_QUANTILE = 0.975  # "prior" range: the central 95% of N(0, 1), i.e. ±1.96


# -- results ----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class EditedCode:
    """One edit of an ``EditResult``: the edited code, its decode, and how far it moved from the
    plain reconstruction (pixels in [0, 1]; ``psnr`` is inf when nothing changed)."""

    edit: str
    elements: list[int]
    """Flat indices the edit touches."""
    code: np.ndarray
    """float32 latent_shape."""
    image: np.ndarray
    """uint8 H×W×C."""
    mean_abs_change: float
    psnr: float
    diff: np.ndarray
    """Per-pixel mean |edited - reconstruction| over channels, float32 H×W."""

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"edit": self.edit, "elements": list(self.elements), "code": self.code.reshape(-1).tolist(),
                          "mean_abs_change": self.mean_abs_change, "psnr": self.psnr})


@dataclass(frozen=True, eq=False)
class EditResult:
    """``edit()``: the image as the model sees it, its code and reconstruction, and each edit."""

    original: np.ndarray
    code: np.ndarray
    recon: np.ndarray
    edited: tuple[EditedCode, ...]
    sample: bool = False
    """The code is a seeded posterior draw (VAE), not the mean."""

    def to_dict(self) -> dict[str, Any]:
        """Codes before and after, and the change per edit (no images)."""
        return {"code": json_safe(self.code.reshape(-1).tolist()), "sample": self.sample,
                "edits": [e.to_dict() for e in self.edited]}


@dataclass(frozen=True, eq=False)
class TraversalResult:
    """``traverse()``: a row per element, a column per value, the others at the image's code."""

    original: np.ndarray
    recon: np.ndarray
    code: np.ndarray
    dims: list[int]
    images: np.ndarray
    """uint8 rows × steps × H×W×C."""
    values: np.ndarray
    """rows × steps, the element's value in each cell."""
    low: np.ndarray
    high: np.ndarray
    effect: np.ndarray
    """Per row, the measured mean |output change| of the element at its two ends (Δ)."""
    position: np.ndarray
    """Per row, the column nearest the image's own value."""
    range: str
    steps: int
    ranked: bool
    """The rows are the elements with the largest Δ (not chosen by hand)."""
    factors: list[dict[str, Any]] | None = None
    """Per row, the generating factor the element tracks most (``factor``, Pearson ``r``) and the two it tracks
    most (``strongest``: factor and r each), when asked."""

    def to_dict(self) -> dict[str, Any]:
        flat = self.code.reshape(-1)
        out = {"dims": list(self.dims), "ranked_by_effect": self.ranked, "range": self.range, "steps": self.steps,
               "elements": [{"element": int(d), "code_value": float(flat[d]), "low": float(lo), "high": float(hi),
                             "output_change": float(e)}
                            for d, lo, hi, e in zip(self.dims, self.low, self.high, self.effect, strict=True)]}
        if self.factors is not None:
            out["factors"] = [dict(f) for f in self.factors]
        return json_safe(out)


@dataclass(frozen=True, eq=False)
class InterpolationResult:
    """``interpolate()``: decodes along the code path from A to B (the ends are the two reconstructions)."""

    images: np.ndarray
    """uint8 steps × H×W×C."""
    codes: np.ndarray
    """Flat float32 steps × latent_size."""
    t: np.ndarray
    originals: tuple[np.ndarray, np.ndarray]
    """A and B as the model sees them."""
    mode: str
    step_change: np.ndarray
    """Mean |change| ([0, 1] pixels) from each decode to the next."""

    @property
    def steps(self) -> int:
        return len(self.images)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"mode": self.mode, "steps": self.steps, "t": self.t.tolist(),
                          "step_change": self.step_change.tolist()})


# -- images in, codes out --------------------------------------------------------

def _one_image(run: Run, image: np.ndarray | ImageSet, where: str = "image") -> np.ndarray:
    """uint8 1×H×W×C from an H×W×C image, a 1-image batch or a 1-image ImageSet."""
    if isinstance(image, ImageSet):
        if len(image) != 1:
            raise AelabError(f"{where}: expected one image, got a set of {len(image)}")
        image = image.batch()
    arr = run.check_images(np.asarray(image), where)
    if len(arr) != 1:
        raise AelabError(f"{where}: expected one image, got a batch of {len(arr)}")
    return np.ascontiguousarray(arr)


def _seen(run: Run, image: np.ndarray) -> np.ndarray:
    """The image as the model sees it (after cropping/resizing), uint8 H×W×C, for figures."""
    return run.preprocess.inverse(run.to_model(image))[0]


def _code(run: Run, image: np.ndarray, sample: bool = False, seed: int = 0) -> np.ndarray:
    """The image's code (latent_shape): the mean, or for ``sample`` a seeded posterior draw (VAE)."""
    if not sample:
        return run.encode(image)[0]
    if not run.variational:
        raise AelabError(f"--sample needs a variational run; {run.path} is a {run.model.family} model "
                         f"whose code is already deterministic")
    mean, logvar = run.encode_stats(image)
    noise = np.random.default_rng(seed).standard_normal(mean.shape[1:]).astype(np.float32)
    return (mean[0] + np.exp(0.5 * logvar[0]) * noise).astype(np.float32)


def decode_unique(run: Run, codes: np.ndarray) -> np.ndarray:
    """Decode N codes in one batch, each distinct code once, so equal codes give identical images
    (an edit that changes nothing returns the plain reconstruction bit for bit)."""
    flat = np.ascontiguousarray(np.asarray(codes, np.float32).reshape(len(codes), -1))
    uniq, inverse = np.unique(flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel(),
                              return_inverse=True)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(flat))[::-1]
    return run.decode(flat[first])[inverse.ravel()]


def _unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def _change(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image mean |a - b| and PSNR (images in [0, 1], data range 1; inf when equal)."""
    d = _unit(a) - _unit(b)
    axes = tuple(range(1, d.ndim))
    mae = np.abs(d).mean(axis=axes)
    mse = np.square(d).mean(axis=axes)
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, -10.0 * np.log10(np.maximum(mse, 1e-30)), np.inf)
    return mae, psnr


# -- edits -------------------------------------------------------------------------

def edit(run: Run, image: np.ndarray | ImageSet, edits: list[str | Edit] | str | Edit, sample: bool = False,
         seed: int = 0) -> EditResult:
    """Encode one image, apply each edit to its code, decode all at once (one batch).

    The changes are measured against the plain reconstruction, not the original, so they show
    what the edit did rather than what the autoencoder loses anyway."""
    if isinstance(edits, str | Edit):
        edits = [edits]
    if not edits:
        raise AelabError("no edit given; pass at least one, e.g. '0*=2'")
    img = _one_image(run, image)
    code = _code(run, img, sample, seed)
    parsed = [parse_edit(e, run.latent_size) for e in edits]
    codes = np.stack([code, *(apply_edits(code[None], p)[0] for p in parsed)])
    images = decode_unique(run, codes)
    recon, outs = images[0], images[1:]
    mae, psnr = _change(outs, np.broadcast_to(recon, outs.shape))
    diff = np.abs(_unit(outs) - _unit(recon)[None]).mean(-1)
    return EditResult(original=_seen(run, img), code=code, recon=recon, sample=sample,
                      edited=tuple(EditedCode(p.text, p.elements.tolist(), c, o, float(m), float(s), d)
                                   for p, c, o, m, s, d in zip(parsed, codes[1:], outs, mae, psnr, diff, strict=True)))


# -- ranges and effects ----------------------------------------------------------------

def _data_key(data: ImageSet) -> tuple[Any, ...]:
    import hashlib

    return (data.name, len(data), hashlib.blake2b(np.ascontiguousarray(data.ids).tobytes(), digest_size=8).digest())


def _stats_data(run: Run, data: str | ImageSet | None) -> ImageSet:
    """``data`` as an ImageSet; by default the run's held-out validation split (the training split
    when there is none): small, and what the model has not fitted."""
    if isinstance(data, ImageSet):
        return data
    if data is not None:
        return run.data(data)
    return run.splits.held_out


_CACHED_CODES = 50_000_000  # float32 elements (200 MB): larger code sets are encoded again when needed


def data_codes(run: Run, images: ImageSet) -> np.ndarray:
    """Flat codes (N×latent_size float32) of ``images``, kept on the Run unless they are huge, so
    ranges and factor correlations over the same data encode it once."""
    cache = run.cache
    key = ("codes", _data_key(images))
    if key in cache:
        return cache[key]
    codes = run.encode(images).reshape(len(images), -1)
    if codes.size <= _CACHED_CODES:
        cache[key] = codes
    return codes


def code_stats(run: Run, data: str | ImageSet | None = None) -> dict[str, np.ndarray]:
    """Mean, std (ddof 1), min and max of every code element (flat) over ``data`` (default: the run's
    validation split): ``aelab.codestats.moments``, cached on the Run."""
    images = _stats_data(run, data)
    key = ("stats", _data_key(images))
    if key not in run.cache:
        from aelab.codestats import moments

        run.cache[key] = moments(data_codes(run, images))
    return run.cache[key]


def data_ranges(run: Run, data: str | ImageSet | None = None, kind: str | tuple[float, float] = "data"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-element (low, high), float32 latent_size each.

    ``prior``: the central 95% of N(0, 1) (VAE); ``data``: mean ± 2 std over the data;
    ``minmax``: observed min and max; ``"-3:3"`` or ``(-3, 3)``: the same numbers for every element."""
    n = run.latent_size
    if isinstance(kind, tuple | list):
        lo, hi = float(kind[0]), float(kind[1])
    elif kind == "prior":
        if not run.variational:
            raise AelabError(f"range 'prior' needs a VAE; {run.path} is a {run.model.family} model without a "
                             f"prior (use data, minmax or numbers like -3:3)")
        hi = float(_normal_quantile(PRIOR_QUANTILE))
        lo = -hi
    elif kind in ("data", "minmax"):
        s = code_stats(run, data)
        low, high = (s["mean"] - 2 * s["std"], s["mean"] + 2 * s["std"]) if kind == "data" else (s["min"], s["max"])
        return low.astype(np.float32), high.astype(np.float32)
    else:
        lo, hi = _explicit_range(str(kind))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise AelabError(f"range {lo:g}:{hi:g} is empty or not finite; the low end must be below the high end")
    return np.full(n, lo, np.float32), np.full(n, hi, np.float32)


def _explicit_range(text: str) -> tuple[float, float]:
    m = re.fullmatch(rf"\s*({NUMBER})\s*:\s*({NUMBER})\s*", text)
    if not m:
        raise AelabError(f"range '{text}': use one of {', '.join(RANGE_KINDS)} or two numbers like -3:3")
    return float(m[1]), float(m[2])


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _as_ranges(run: Run, ranges: Any, data: str | ImageSet | None = None) -> tuple[np.ndarray, np.ndarray]:
    if ranges is None:
        return data_ranges(run, data, "data")
    if isinstance(ranges, str):
        return data_ranges(run, data, ranges)
    lo, hi = ranges
    n = run.latent_size
    return (np.broadcast_to(np.asarray(lo, np.float32), (n,)).copy(),
            np.broadcast_to(np.asarray(hi, np.float32), (n,)).copy())


def element_effects(run: Run, code: np.ndarray, ranges: Any = None, data: str | ImageSet | None = None,
                    dims: list[int] | None = None, chunk: int = 4096) -> np.ndarray:
    """How much the output moves when each element alone goes to its low and its high end.

    Per element: the mean absolute pixel change ([0, 1] pixels) of the two decoded extremes
    against the plain decode, averaged. Measured by decoding 2 × latent_size perturbed codes in
    batches of ``chunk`` codes, not guessed from the weights. With ``dims``, only those elements
    are measured (the result still has one entry per element, NaN for the others)."""
    import torch

    lo, hi = _as_ranges(run, ranges, data)
    z = np.asarray(code, np.float32).reshape(-1)
    n = z.size
    if n != run.latent_size:
        raise AelabError(f"code of {n} elements given; run {run.path} has {run.latent_size}")
    todo = np.arange(n) if dims is None else np.asarray(dims, dtype=np.int64)
    base = run.preprocess.to_unit(run.decode_tensor(z[None]))
    effects = np.full(n, np.nan, np.float64)
    half = max(1, chunk // 2)
    for start in range(0, len(todo), half):
        idx = todo[start:start + half]
        codes = np.repeat(z[None], 2 * len(idx), axis=0)
        rows = np.arange(len(idx))
        codes[rows, idx] = lo[idx]
        codes[len(idx) + rows, idx] = hi[idx]
        out = run.preprocess.to_unit(run.decode_tensor(codes))
        change = (out - base).abs().flatten(1).mean(1).to(torch.float64).numpy()
        effects[idx] = 0.5 * (change[:len(idx)] + change[len(idx):])
    return effects


def largest_effects(effects: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` largest effects, largest first; ties go to the lower index."""
    order = np.lexsort((np.arange(len(effects)), -np.asarray(effects)))
    return [int(i) for i in order[:max(0, min(int(n), len(effects)))]]


def top_elements(run: Run, code: np.ndarray, n: int, ranges: Any = None,
                 data: str | ImageSet | None = None) -> list[int]:
    """The ``n`` elements whose sweep moves the decoded image most, largest first (ties: lower index)."""
    return largest_effects(element_effects(run, code, ranges, data), n)


# -- traversal ------------------------------------------------------------------------------

def _check_dims(run: Run, dims: Any) -> list[int]:
    if isinstance(dims, str):
        from aelab.data.ids import parse_ids

        dims = parse_ids(dims)
    out = []
    for d in dims:
        d = int(d)
        if not -run.latent_size <= d < run.latent_size:
            raise AelabError(f"element {d} is outside the code of {run.latent_size} elements "
                             f"(use 0..{run.latent_size - 1})")
        out.append(d % run.latent_size)
    if not out:
        raise AelabError("no element to traverse; give dims like 0,1,2 or top N")
    return list(dict.fromkeys(out))


def traverse(run: Run, image: np.ndarray | ImageSet, dims: Any = None, top: int | None = None,
             range: Any = "data", steps: int = 9, data: str | ImageSet | None = None,  # noqa: A002
             factors: bool = False) -> TraversalResult:
    """Sweep chosen elements one at a time from low to high, the others at the image's code.

    ``dims`` picks elements; else the ``top`` (default 8) with the largest measured effect.
    ``range``: as ``data_ranges`` takes it; ``data``: where ranges and factor correlations come
    from (default: the run's validation split). ``factors``: name the generating factor each row's
    element tracks (``factor_table``; data with factors, e.g. builtin:faces)."""
    if int(steps) < 2:
        raise AelabError(f"steps must be at least 2, got {steps}")
    steps = int(steps)
    img = _one_image(run, image)
    code = _code(run, img)
    flat = code.reshape(-1)
    lo, hi = _as_ranges(run, range, data)
    if dims is not None and top is not None:
        raise AelabError("give either dims or top, not both")
    if dims is not None:
        chosen = _check_dims(run, dims)
        effects = element_effects(run, flat, (lo, hi), dims=chosen)
    else:
        effects = element_effects(run, flat, (lo, hi))
        k = 8 if top is None else int(top)
        if k < 1:
            raise AelabError(f"top must be at least 1, got {k}")
        chosen = largest_effects(effects, k)
    d = np.asarray(chosen)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    values = lo[d, None] + (hi[d] - lo[d])[:, None] * t[None, :]
    codes = np.repeat(flat[None], len(d) * steps, axis=0)
    codes[np.arange(len(codes)), np.repeat(d, steps)] = values.reshape(-1)
    images = run.decode(np.concatenate([flat[None], codes]))
    recon, grid = images[0], images[1:].reshape(len(d), steps, *images.shape[1:])
    position = np.abs(values - flat[d, None]).argmin(1)
    table = None
    if factors:
        full = factor_table(run, data)
        table = [{**{k: full[e][k] for k in ("element", "factor", "r")}, "strongest": strongest(full[e]["all"])}
                 for e in chosen]
    return TraversalResult(
        original=_seen(run, img), recon=recon, code=code, dims=chosen, images=grid, values=values, low=lo[d],
        high=hi[d], effect=effects[d], position=position,
        range=range if isinstance(range, str) else f"{float(np.min(lo)):g}:{float(np.max(hi)):g}",
        steps=steps, ranked=dims is None, factors=table)


def factor_table(run: Run, data: str | ImageSet | None = None) -> list[dict[str, Any]]:
    """Per code element, the generating factor it correlates with most (Pearson r over ``data``).

    Needs data that carries its factors (``builtin:faces``); default: the run's validation split."""
    images = _stats_data(run, data)
    factors = images.get_factors()
    if not factors:
        raise DataError(f"{images.name or 'data'}: carries no generating factors; factor correlations need "
                        f"builtin:faces (or data with factors)")
    cache = run.cache
    key = ("factors", _data_key(images))
    if key not in cache:
        names = [k for k in factors if k != "anomaly_kind"]
        f = np.stack([np.asarray(factors[k], np.float64) for k in names], 1)
        z = data_codes(run, images).astype(np.float64)
        r = _correlation(z, f)
        best = np.abs(r).argmax(1)
        cache[key] = [{"element": i, "factor": names[b], "r": float(r[i, b]), "abs_r": float(abs(r[i, b])),
                       "all": {n: float(v) for n, v in zip(names, r[i], strict=True)}}
                      for i, b in enumerate(best)]
    return cache[key]


def strongest(r: dict[str, float], n: int = 2) -> list[dict[str, Any]]:
    """The ``n`` factors with the largest |r| (ties: first named), each with its r."""
    order = sorted(r, key=lambda k: -abs(r[k]))
    return [{"factor": k, "r": r[k]} for k in order[:n]]


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every column of ``a`` and every column of ``b`` (0 where one is constant)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.sqrt(np.square(a).sum(0)), np.sqrt(np.square(b).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(np.clip(r, -1.0, 1.0))


# -- interpolation --------------------------------------------------------------------------

def interpolate(run: Run, image_a: np.ndarray | ImageSet, image_b: np.ndarray | ImageSet, steps: int = 10,
                mode: str = "linear") -> InterpolationResult:
    """``steps`` decodes along the path from image_a's code to image_b's (``linear``, or ``slerp``
    along the sphere); the first and last are exactly the two reconstructions."""
    if int(steps) < 2:
        raise AelabError(f"steps must be at least 2, got {steps}")
    a, b = _one_image(run, image_a, "image a"), _one_image(run, image_b, "image b")
    za, zb = run.encode(np.concatenate([a, b])).reshape(2, -1)
    t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)
    codes = _path(za, zb, t, mode)
    images = decode_unique(run, codes)
    step_change, _ = _change(images[1:], images[:-1])
    return InterpolationResult(images=images, codes=codes, t=t, originals=(_seen(run, a), _seen(run, b)), mode=mode,
                               step_change=step_change)


def _path(za: np.ndarray, zb: np.ndarray, t: np.ndarray, mode: str) -> np.ndarray:
    """Codes along the path from za to zb at fractions t (flat, float32); ends are exact."""
    if mode not in ("linear", "slerp"):
        raise AelabError(f"interpolation mode '{mode}': use linear or slerp")
    tt = t[:, None].astype(np.float64)
    a, b = za.astype(np.float64), zb.astype(np.float64)
    if mode == "slerp":
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 0 and nb > 0:
            omega = math.acos(float(np.clip(a @ b / (na * nb), -1.0, 1.0)))
            if math.sin(omega) > 1e-6:
                wa = np.sin((1 - tt) * omega) / math.sin(omega)
                wb = np.sin(tt * omega) / math.sin(omega)
                out = (wa * a + wb * b).astype(np.float32)
                out[t == 0], out[t == 1] = za, zb
                return out
    out = ((1 - tt) * a + tt * b).astype(np.float32)
    out[t == 0], out[t == 1] = za, zb
    return out
