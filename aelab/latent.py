"""Latent editing, traversal and interpolation: change a code, decode, look.

The course exercise is "take one image's code, change two elements, decode,
say what changed". Here an edit is a small language over *flat* element
indices (whatever the code's shape), so ``z[0][0] *= 2`` becomes ``0*=2`` and
``latent[:, 3], latent[:, 1000] = 2, 8`` becomes ``3=2,1000=8``:

=============  ==============================================
``0*=2``       multiply element 0 by 2
``2+=5``       add 5 to element 2 (also ``-=``, ``/=``)
``3=2,1000=8`` set two elements (several ops, comma-separated)
``all+=0.5``   every element
``-1+=20``     negative indices count from the end
``10:20*=0``   a range, end exclusive, as in Python slices
=============  ==============================================

Everything decodes many codes in one batch (a traversal grid is one decode
call), and per-run statistics of the codes are cached on the ``Run`` so
repeated calls (the web explorer) are instant.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, DataError

if TYPE_CHECKING:
    from aelab.run import Run

OPS = ("*=", "/=", "+=", "-=", "=")
RANGE_KINDS = ("prior", "data", "minmax")
PRIOR_QUANTILE = 0.975  # "prior" range: the central 95% of N(0, 1), i.e. ±1.96
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_OP_RE = re.compile(rf"^(?P<target>all|-?\d+|-?\d*:-?\d*)(?P<op>\*=|/=|\+=|-=|=)(?P<value>{_NUMBER})$")


# -- the edit language ----------------------------------------------------------

@dataclass
class Op:
    """One operation: ``indices`` (flat, resolved against the code size) ``op`` ``value``."""

    text: str
    op: str
    value: float
    indices: np.ndarray


@dataclass
class Edit:
    """A parsed edit: its text, the code size it was checked against, and its ops in order."""

    text: str
    ops: list[Op] = field(default_factory=list)
    size: int = 0

    def __str__(self) -> str:
        return self.text

    @property
    def elements(self) -> np.ndarray:
        """Every flat index the edit touches (sorted, unique)."""
        return np.unique(np.concatenate([o.indices for o in self.ops])) if self.ops else np.empty(0, np.int64)


def _index(token: str, size: int, text: str) -> int:
    i = int(token)
    if not -size <= i < size:
        raise AelabError(f"edit '{text}': index {i} is outside the code of {size} elements "
                         f"(use 0..{size - 1}, or -{size}..-1 from the end)")
    return i % size


def _targets(target: str, size: int, text: str) -> np.ndarray:
    if target == "all":
        return np.arange(size, dtype=np.int64)
    if ":" not in target:
        return np.array([_index(target, size, text)], dtype=np.int64)
    lo_s, hi_s = target.split(":")
    lo = _index(lo_s, size, text) if lo_s else 0
    # the end of a range is exclusive, so `size` itself is a valid end
    hi = size if hi_s in ("", str(size)) else _index(hi_s, size, text)
    if hi <= lo:
        raise AelabError(f"edit '{text}': range {target} is empty in a code of {size} elements")
    return np.arange(lo, hi, dtype=np.int64)


def parse_edit(text: str, size: int) -> Edit:
    """Parse ``"0*=2"``, ``"3=2,1000=8"``, ``"all+=0.5"``, ``"-1+=20"``, ``"10:20*=0"`` for a code of ``size``."""
    if isinstance(text, Edit):
        return text if text.size == size else parse_edit(text.text, size)
    raw = str(text).strip()
    if not raw:
        raise AelabError(f"edit is empty; write e.g. '0*=2' or '3=2,1000=8' (code of {size} elements)")
    ops = []
    for part in raw.split(","):
        part = part.replace(" ", "")
        m = _OP_RE.match(part)
        if not m:
            raise AelabError(f"edit '{raw}': cannot read '{part}'; write INDEX OP NUMBER with OP one of "
                             f"{' '.join(OPS)}, INDEX a number, a range a:b or 'all' (code of {size} elements)")
        value = float(m["value"])
        if not math.isfinite(value):
            raise AelabError(f"edit '{raw}': {m['value']} is too large for a float32 code (code of {size} elements)")
        if m["op"] == "/=" and value == 0:
            raise AelabError(f"edit '{raw}': division by zero in '{part}'")
        ops.append(Op(part, m["op"], value, _targets(m["target"], size, raw)))
    return Edit(raw, ops, size)


def apply_edits(codes: np.ndarray, edit: Edit | str) -> np.ndarray:
    """A copy of ``codes`` (N×latent_shape, or one code) with ``edit`` applied to every code.

    Ops apply left to right, so ``0*=2,0+=1`` doubles then adds."""
    arr = np.asarray(codes, dtype=np.float32)
    single = arr.ndim == 1
    batch = arr[None] if single else arr
    flat = batch.reshape(len(batch), -1).copy()
    parsed = parse_edit(edit, flat.shape[1])
    for o in parsed.ops:
        cols = flat[:, o.indices]
        v = np.float32(o.value)
        if o.op == "=":
            cols = np.full_like(cols, v)
        elif o.op == "+=":
            cols = cols + v
        elif o.op == "-=":
            cols = cols - v
        elif o.op == "*=":
            cols = cols * v
        else:
            cols = cols / v
        flat[:, o.indices] = cols
    out = flat.reshape(batch.shape)
    return out[0] if single else out


# -- images in, codes out --------------------------------------------------------

def load_image_file(path: str | Path, run: Run) -> np.ndarray:
    """A user's image file as a uint8 1×H×W×C batch at the run's image size (PIL resize)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    h, w, c = run.image_shape
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.array(im, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return (arr[..., None] if arr.ndim == 2 else arr)[None]


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

def edit(run: Run, image: np.ndarray | ImageSet, edits: list[str], sample: bool = False,
         seed: int = 0) -> dict[str, Any]:
    """Encode one image, apply each edit to its code, decode all at once.

    Returns ``{"original", "code", "recon", "edited": [{"edit", "code", "image", "mean_abs_change",
    "psnr", "diff"}]}``: images uint8 H×W×C, codes float32 latent_shape, ``mean_abs_change`` and
    ``psnr`` of the edited against the plain reconstruction (pixels in [0, 1]), ``diff`` the
    per-pixel mean absolute change over channels."""
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
    return {"original": _seen(run, img), "code": code, "recon": recon, "sample": sample,
            "edited": [{"edit": p.text, "elements": p.elements.tolist(), "code": c, "image": o,
                        "mean_abs_change": float(m), "psnr": float(s), "diff": d}
                       for p, c, o, m, s, d in zip(parsed, codes[1:], outs, mae, psnr, diff, strict=True)]}


def edit_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON part of ``edit()``: codes before and after, and the change per edit (no images)."""
    return {"code": result["code"].reshape(-1).tolist(), "sample": result["sample"],
            "edits": [{"edit": e["edit"], "elements": e["elements"], "code": e["code"].reshape(-1).tolist(),
                       "mean_abs_change": e["mean_abs_change"], "psnr": e["psnr"]} for e in result["edited"]]}


def edit_figure(run: Run, image: np.ndarray | ImageSet, edits: list[str], path: str | Path,
                title: str | None = None, sample: bool = False, seed: int = 0) -> dict[str, Any]:
    """One row per edit: original, reconstruction, edited reconstruction, |edited - reconstruction|."""
    result = edit(run, image, edits, sample=sample, seed=seed)
    draw_edits(result, path, title or f"{run.name}: latent edits ({run.latent_size}-element code"
                                      f"{', sampled' if sample else ''})")
    return {"figure": str(path), **edit_numbers(result)}


def edit_command(run_path: str | Path, image_id: int, edits: list[str], out: str | Path = "edit.png",
                 data: str | None = None, sample: bool = False) -> str:
    """The equivalent ``aelab edit ...`` command line (the web page's "copy as command").

    With no edits it writes ``all+=0``, which changes nothing, so the line still runs and shows the
    plain reconstruction."""
    if isinstance(edits, str):
        edits = [edits]
    edits = list(edits) or ["all+=0"]
    parts = ["aelab", "edit", str(run_path), "--id", str(int(image_id))]
    for e in edits:
        parts += ["--edit", str(e)]
    if data:
        parts += ["--data", data]
    if sample:
        parts.append("--sample")
    parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in parts)


# -- ranges and effects ----------------------------------------------------------------

def _stats_cache(run: Run) -> dict[Any, Any]:
    return run.cache


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
    cache = _stats_cache(run)
    key = ("codes", _data_key(images))
    if key in cache:
        return cache[key]
    codes = run.encode(images).reshape(len(images), -1)
    if codes.size <= _CACHED_CODES:
        cache[key] = codes
    return codes


def code_stats(run: Run, data: str | ImageSet | None = None) -> dict[str, np.ndarray]:
    """Mean, std (ddof 1), min and max of every code element (flat) over ``data`` (default: the run's
    validation split): the fields of ``aelab.codestats.CodeStats`` fitted to those codes, cached on the Run."""
    from aelab.codestats import CodeStats

    images = _stats_data(run, data)
    cache = _stats_cache(run)
    key = ("stats", _data_key(images))
    if key not in cache:
        cache[key] = CodeStats.fit(data_codes(run, images))
    s = cache[key]
    return {"mean": s.mean_, "std": s.std_, "min": s.min_, "max": s.max_, "n": s.n_}


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
    m = re.fullmatch(rf"\s*({_NUMBER})\s*:\s*({_NUMBER})\s*", text)
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
             range: Any = "data", steps: int = 9, data: str | ImageSet | None = None) -> dict[str, Any]:  # noqa: A002
    """Sweep chosen elements one at a time from low to high, the others at the image's code.

    ``dims`` picks elements; else the ``top`` (default 8) with the largest measured effect.
    Returns ``images`` (rows × steps × H×W×C uint8), ``values`` (rows × steps), ``dims``,
    ``low``/``high`` per row, ``effect`` per row, ``position`` (the column nearest the image's
    own value), plus ``original``, ``recon`` and ``code``."""
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
    return {"original": _seen(run, img), "recon": recon, "code": code, "dims": chosen, "images": grid,
            "values": values, "low": lo[d], "high": hi[d], "effect": effects[d], "position": position,
            "range": range if isinstance(range, str) else f"{float(np.min(lo)):g}:{float(np.max(hi)):g}",
            "steps": steps, "ranked": dims is None}


def traverse_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON part of ``traverse()``."""
    flat = result["code"].reshape(-1)
    return {"dims": result["dims"], "ranked_by_effect": result["ranked"], "range": result["range"],
            "steps": result["steps"],
            "elements": [{"element": int(d), "code_value": float(flat[d]), "low": float(lo), "high": float(hi),
                          "output_change": float(e)}
                         for d, lo, hi, e in zip(result["dims"], result["low"], result["high"], result["effect"],
                                                 strict=True)]}


def factor_table(run: Run, data: str | ImageSet | None = None) -> list[dict[str, Any]]:
    """Per code element, the generating factor it correlates with most (Pearson r over ``data``).

    Needs data that carries its factors (``builtin:faces``); default: the run's validation split."""
    images = _stats_data(run, data)
    factors = images.get_factors()
    if not factors:
        raise DataError(f"{images.name or 'data'}: carries no generating factors; factor correlations need "
                        f"builtin:faces (or data with factors)")
    cache = _stats_cache(run)
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


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every column of ``a`` and every column of ``b`` (0 where one is constant)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.sqrt(np.square(a).sum(0)), np.sqrt(np.square(b).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(np.clip(r, -1.0, 1.0))


def traverse_figure(run: Run, image: np.ndarray | ImageSet, path: str | Path, dims: Any = None,
                    top: int | None = 8, range: Any = "data", steps: int = 9, factors: bool = False,  # noqa: A002
                    data: str | ImageSet | None = None, title: str | None = None) -> dict[str, Any]:
    """Draw the traversal grid (row labels: element, its range, with ``factors`` the factor it
    tracks); returns ``traverse_numbers`` plus ``figure`` and, with ``factors``, ``factors``."""
    result = traverse(run, image, dims=dims, top=None if dims is not None else top, range=range, steps=steps,
                      data=data)
    table = None
    if factors:
        full = factor_table(run, data)
        table = [{k: full[d][k] for k in ("element", "factor", "r")} for d in result["dims"]]
    draw_traversal(result, path, title or f"{run.name}: latent traversal ({result['range']} range)", table)
    out = {"figure": str(path), **traverse_numbers(result)}
    if table is not None:
        out["factors"] = table
    return out


# -- interpolation --------------------------------------------------------------------------

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


def interpolate(run: Run, image_a: np.ndarray | ImageSet, image_b: np.ndarray | ImageSet, steps: int = 10,
                mode: str = "linear") -> np.ndarray:
    """``steps`` decoded images from image_a's code to image_b's (uint8 steps×H×W×C); the first
    and last are the two reconstructions."""
    return _interpolate(run, image_a, image_b, steps, mode)["images"]


def _interpolate(run: Run, image_a: Any, image_b: Any, steps: int, mode: str) -> dict[str, Any]:
    if int(steps) < 2:
        raise AelabError(f"steps must be at least 2, got {steps}")
    a, b = _one_image(run, image_a, "image a"), _one_image(run, image_b, "image b")
    za, zb = run.encode(np.concatenate([a, b])).reshape(2, -1)
    t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)
    images = decode_unique(run, _path(za, zb, t, mode))
    return {"images": images, "t": t, "originals": (_seen(run, a), _seen(run, b)), "mode": mode}


def interpolate_figure(run: Run, image_a: np.ndarray | ImageSet, image_b: np.ndarray | ImageSet,
                       path: str | Path, steps: int = 10, mode: str = "linear",
                       title: str | None = None) -> dict[str, Any]:
    """Original A, the decoded path (reconstruction of A ... reconstruction of B), original B."""
    res = _interpolate(run, image_a, image_b, steps, mode)
    images = res["images"]
    step_change, _ = _change(images[1:], images[:-1])
    draw_interpolation(res, path, title or f"{run.name}: {mode} interpolation in the code")
    return {"figure": str(path), "mode": mode, "steps": len(images), "t": res["t"].tolist(),
            "step_change": step_change.tolist()}


# -- drawing (matplotlib is imported only here, so the API loads fast) -------------------------

def _mosaic(rows: np.ndarray, pad: int, vpad: int | None = None) -> np.ndarray:
    """rows × cols × H×W×C uint8 -> one RGB picture with white gaps (fast: one imshow, not one per cell)."""
    r, c, h, w, ch = rows.shape
    vpad = pad if vpad is None else vpad
    out = np.full((r * (h + vpad) - vpad, c * (w + pad) - pad, 3), 255, np.uint8)
    cells = rows if ch == 3 else np.repeat(rows[..., :1], 3, axis=-1)
    for i in np.arange(r):
        y = i * (h + vpad)
        block = cells[i].transpose(1, 0, 2, 3)  # H × cols × W × 3
        strip = np.full((h, c, w + pad, 3), 255, np.uint8)
        strip[:, :, :w] = block
        out[y:y + h] = strip.reshape(h, c * (w + pad), 3)[:, :out.shape[1]]
    return out


def _colour_map(values: np.ndarray, vmax: float, cmap: str = "magma") -> np.ndarray:
    """float H×W (0..vmax) -> uint8 H×W×3 through a matplotlib colour map."""
    import matplotlib

    return (matplotlib.colormaps[cmap](np.clip(values / vmax, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def draw_edits(result: dict[str, Any], path: str | Path, title: str) -> Path:
    """The edit figure: per edit a row of original, reconstruction, edited, and the colour-mapped
    absolute difference (mean over channels, [0, 1] pixels) with its own colour scale.

    Drawn as one picture with text on top (one imshow, not 32 axes), so it takes a fraction of a
    second: the edit is meant to be interactive."""
    from aelab.figures.base import plt, save

    rows = result["edited"]
    h, w = result["recon"].shape[:2]
    n = len(rows)
    bar_w, gap, head = max(3, w // 10), max(6, w // 5), max(24, (h * 3) // 8)
    cells = np.empty((n, 4, h, w, 3), np.uint8)
    three = (lambda im: np.repeat(im, 3, axis=-1)) if result["recon"].shape[-1] == 1 else (lambda im: im)
    cells[:, 0] = three(result["original"])
    cells[:, 1] = three(result["recon"])
    vmax = [max(float(e["diff"].max()), 1e-6) for e in rows]
    for i, e in enumerate(rows):
        cells[i, 2] = three(e["image"])
        cells[i, 3] = _colour_map(e["diff"], vmax[i])
    picture = _mosaic(cells, gap, head)
    x_bar = picture.shape[1] + max(2, gap // 3)
    picture = np.pad(picture, ((head, 0), (0, x_bar + bar_w - picture.shape[1]), (0, 0)), constant_values=255)
    ramp = _colour_map(np.linspace(1.0, 0.0, h)[:, None].repeat(bar_w, 1), 1.0)
    for i in range(n):
        y = head + i * (h + head)
        picture[y:y + h, x_bar:x_bar + bar_w] = ramp
    scale = 0.019  # inches per pixel: a 64-pixel image is 1.2 in wide
    fig = plt.figure(figsize=(picture.shape[1] * scale + 0.5, picture.shape[0] * scale + 0.35))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    for i, e in enumerate(rows):
        y = head + i * (h + head)
        psnr = "∞" if not math.isfinite(e["psnr"]) else f"{e['psnr']:.1f} dB"
        heads = ["original", "reconstruction", f"edited: {e['edit']}",
                 f"|{e['edit']} − recon|\nmean {e['mean_abs_change']:.3f}, {psnr}"]
        for j, text in enumerate(heads):
            ax.text(j * (w + gap) + w / 2, y - 3, text, ha="center", va="bottom", fontsize=6.5,
                    fontweight="bold" if j == 2 else None)
        ax.text(x_bar + bar_w + 2, y, f"{vmax[i]:.2g}", ha="left", va="top", fontsize=6)
        ax.text(x_bar + bar_w + 2, y + h, "0", ha="left", va="bottom", fontsize=6)
    fig.suptitle(title, fontsize=9, y=1.0, va="bottom")
    return save(fig, path, dpi=100)


def _value_text(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 10 else f"{v:.0f}"


def draw_traversal(result: dict[str, Any], path: str | Path, title: str,
                   factors: list[dict[str, Any]] | None = None) -> Path:
    """The traversal grid as one picture: a row per element, a column per step; every cell is
    labelled with its value and the cell nearest the image's own value is boxed. The original and
    its reconstruction sit on the left."""
    from matplotlib.patches import Rectangle

    from aelab.figures.base import plt, save, show_image

    grid = result["images"]
    n_rows, steps, h, w = grid.shape[:4]
    values = result["values"]
    shared = bool(np.allclose(values, values[:1]))
    gap_x, gap_y = max(2, w // 16), (max(2, w // 16) if shared else max(12, h // 4))
    picture = _mosaic(grid, gap_x, gap_y)
    # Lay out in inches: original and reconstruction on the left, the grid, row labels on the right.
    grid_w = steps * 0.78
    grid_h = grid_w * picture.shape[0] / picture.shape[1]
    left, right, top, bottom, thumb = 1.15, 2.1 if factors else 1.0, 0.95 if shared else 0.75, 0.2, 0.9
    body_h = max(grid_h, 2 * thumb + 0.45)
    fig_w, fig_h = left + grid_w + right, top + body_h + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))

    def box(x: float, y_top: float, w_in: float, h_in: float) -> list[float]:
        return [x / fig_w, (fig_h - y_top - h_in) / fig_h, w_in / fig_w, h_in / fig_h]

    show_image(fig.add_axes(box(0.1, top + 0.2, thumb, thumb)), result["original"], "original")
    show_image(fig.add_axes(box(0.1, top + thumb + 0.45, thumb, thumb)), result["recon"], "reconstruction")
    ax = fig.add_axes(box(left, top, grid_w, grid_h))
    ax.imshow(picture, interpolation="nearest", aspect="auto")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.yaxis.tick_right()
    centres_y = np.arange(n_rows) * (h + gap_y) + h / 2
    centres_x = np.arange(steps) * (w + gap_x) + w / 2
    labels = []
    for i, d in enumerate(result["dims"]):
        label = f"z[{d}]"
        if factors:
            f = factors[i]
            label += f"\n{f['factor']} (r={f['r']:+.2f})"
        label += f"\nΔ {result['effect'][i]:.3g}"
        labels.append(label)
    ax.set_yticks(centres_y, labels, fontsize=7)
    ax.tick_params(length=0)
    if shared:
        ax.set_xticks(centres_x, [_value_text(v) for v in values[0]], fontsize=7)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
        for i in np.arange(n_rows):
            for j in np.arange(steps):
                ax.text(centres_x[j], centres_y[i] + h / 2 + gap_y / 2, _value_text(values[i, j]), ha="center",
                        va="center", fontsize=6, color="0.25")
    for i, j in enumerate(result["position"]):
        ax.add_patch(Rectangle((centres_x[j] - w / 2 - 0.5, centres_y[i] - h / 2 - 0.5), w, h, fill=False,
                               edgecolor="tab:orange", linewidth=1.2))
    how = "ranked by measured output change Δ" if result["ranked"] else "Δ: measured output change"
    fig.suptitle(f"{title}\none element per row, the others at the image's code; {how}; "
                 f"orange box: nearest the image's own value", fontsize=9)
    return save(fig, path, dpi=100)


def draw_interpolation(res: dict[str, Any], path: str | Path, title: str) -> Path:
    """Original A, the decoded path from A's code to B's, original B, in one row."""
    from aelab.figures.base import plt, save

    images = res["images"]
    a, b = res["originals"]
    row = np.stack([a, *images, b])[None]
    h, w = row.shape[2:4]
    gap = max(2, w // 16)
    picture = _mosaic(row, gap)
    picture[:, w + gap // 2 - 1:w + gap // 2 + 1] = 120  # separators around the decoded path
    x_end = (len(row[0]) - 1) * (w + gap) - gap // 2
    picture[:, x_end - 1:x_end + 1] = 120
    fig, ax = plt.subplots(figsize=(0.8 * len(row[0]) + 0.4, 1.6))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    names = ["A", *(f"t={t:.2f}" for t in res["t"]), "B"]
    ax.set_xticks(np.arange(len(names)) * (w + gap) + w / 2, names, fontsize=7)
    ax.set_title(f"{title}: original A, decoded codes (ends: the two reconstructions), original B", fontsize=9)
    return save(fig, path, dpi=100)


# -- the demo's section ---------------------------------------------------------------------------

def demo_section(demo: Any) -> list[str]:
    """``aelab demo``: per model an edit figure (the assignment's two edits and two measured ones on
    one face), a traversal grid with the factor each element tracks, and an interpolation."""
    from aelab.io import json_safe, write_json

    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for key, run in demo.runs.items():
        pool = run.splits.full
        face = pool.by_ids([0])
        stats = code_stats(run)
        top = top_elements(run, run.encode(face)[0], 2)
        edits = ["0*=2", "2+=5", f"{top[0]}+={2 * stats['std'][top[0]]:.2g}",
                 f"{top[1]}-={2 * stats['std'][top[1]]:.2g}"]
        e = edit_figure(run, face, edits, run.figures / "latent_edits.png",
                        title=f"{run.name}: latent edits of face id 0 ({run.latent_size}-element code)")
        kind = "prior" if run.variational else "data"
        t = traverse_figure(run, face, run.figures / "latent_traversal.png", top=6 if demo.quick else 8,
                            range=kind, factors=bool(pool.factors),
                            title=f"{run.name}: latent traversal of face id 0 ({kind} range)")
        i = interpolate_figure(run, face, pool.by_ids([17]), run.figures / "latent_interpolation.png", steps=8)
        numbers[key] = {"edits": [{k: x[k] for k in ("edit", "mean_abs_change", "psnr")} for x in e["edits"]],
                        "traversal": t["elements"], "factors": t.get("factors", []),
                        "figures": [e["figure"], t["figure"], i["figure"]]}
        write_json(run.path / "latent.json", json_safe({"edit": e, "traversal": t, "interpolation": i}))
        changes = ", ".join(f"{x['edit']} {x['mean_abs_change']:.3f}" for x in e["edits"])
        lines.append(f"latent edits ({key}): {e['figure']}  (mean |change| per edit: {changes})")
        tracked = "; ".join(f"z[{f['element']}] ~ {f['factor']} (r={f['r']:+.2f})" for f in t.get("factors", [])[:3])
        lines.append(f"latent traversal ({key}): {t['figure']}" + (f"  ({tracked})" if tracked else ""))
        lines.append(f"latent interpolation ({key}): {i['figure']}")
    demo.result["latent"] = numbers
    return lines
