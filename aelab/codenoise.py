"""Gaussian noise on codes: noisy-code augmentation of chosen images, and the same noise through two models.

* ``augment``: each chosen image is encoded, Gaussian noise is added to its code
  and the result decoded, ``variants`` times; the result saves as an ``.npz`` that
  loads back as the data source ``npz:FILE``.
* ``compare_noise``: the same noise vectors applied to two models.

The noise stream (what "the same noise" means), seeded by explicit generators (never
the global RNG state). For the image in row ``i`` of the source (its 0-based id,
whatever ``--id-base`` the ids were given in), variant ``v`` and code element ``j``::

    eps[i, v, j] = np.random.default_rng([seed, i]).standard_normal((K, variants))[j, v]

The draw is element-major, so its first ``k`` rows do not depend on ``K``: a
model with a ``k``-element code gets exactly the first ``k`` elements of every
variant's vector, whatever other model it is compared with, and two models
share the first ``min(k_a, k_b)`` elements. Noise depends only on (seed, id),
not on which other ids were chosen or in what order.

Figures of these results are in ``aelab.figures.generate``; the demo's section in
``aelab.demo.generate``. Sampling new codes is ``aelab.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from aelab.codestats import code_stats
from aelab.data.ids import check_base, from_rows, parse_ids
from aelab.data.imageset import ImageSet, SourceFormat
from aelab.errors import AelabError
from aelab.io import write_npy, write_npz
from aelab.tables import to_pandas

if TYPE_CHECKING:
    from aelab.run import Run

Mode = Literal["fixed", "posterior"]
Order = Literal["image", "round"]
MODES = ("fixed", "posterior")
LAYOUTS = ("nhwc", "nchw", "nhw")
DTYPES = ("uint8", "float32", "float64")
ORDERS = ("image", "round")


def code_noise(seed: int, ids: np.ndarray | list[int], variants: int, size: int) -> np.ndarray:
    """Standard normal noise, float32 N×variants×size, from one stream per image id (see the module doc)."""
    ids = np.asarray(ids, dtype=np.int64)
    if seed < 0:
        raise AelabError(f"--seed must be non-negative, got {seed}")
    out = np.empty((len(ids), variants, size), dtype=np.float32)
    for row, i in enumerate(ids.tolist()):  # a generator per id keeps each image's noise independent of the others
        out[row] = np.random.default_rng([seed, i]).standard_normal((size, variants)).T
    return out


def select(run: Run, ids: str | int | list[int] | np.ndarray, data: str | ImageSet | None = None,
           id_base: int = 0) -> ImageSet:
    """Images by id: ids are rows of ``data`` (default: the run's whole data source, before any split),
    counted from ``id_base`` (1 for a homework's list: id 1 is the first image)."""
    images = run.splits.full if data is None else (data if isinstance(data, ImageSet) else run.data(data))
    return images.by_ids(parse_ids(ids), id_base)


@dataclass
class Augmented:
    """Noisy-code variants of some images, grouped per source image (its variants are adjacent)."""

    images: np.ndarray
    """uint8 (N·variants)×H×W×C, decoded variants in the model's output shape."""
    labels: np.ndarray | None
    """The source labels, repeated ``variants`` times (None when the source has none)."""
    source_ids: np.ndarray
    """Each variant's source image id, counted from ``id_base`` (as the user gave the ids)."""
    variant: np.ndarray
    originals: np.ndarray
    """uint8 N×H×W×C: the source images as the model saw them (after preprocessing)."""
    seed: int
    sigma: float | None
    mode: str
    variants: int
    code_size: int
    noise: np.ndarray = field(repr=False)
    """The standard normal draws used, float32 N×variants×code_size."""
    id_base: int = 0
    """What ``source_ids`` count from: 0 (rows of the source) or 1."""
    source_format: SourceFormat = field(default_factory=SourceFormat)
    """How the source stored its images: what ``save`` writes by default."""
    recons: np.ndarray | None = field(default=None, repr=False)
    """uint8 N×H×W×C, the un-noised reconstructions, when asked for (``compare_noise``); not saved."""

    def output(self, layout: str | None = None, dtype: str | None = None,
               order: Order = "image") -> tuple[np.ndarray, np.ndarray, SourceFormat]:
        """(images, row order, format) as written: ``layout`` nhwc | nchw | nhw (one channel), ``dtype``
        uint8 | float32 | float64 (floats in the source's float range, [0, 1]); each defaults to the
        source's own (an integer source gives uint8). ``order`` image: an image's variants together;
        round: variant 0 of every image, then variant 1, ... ``row order`` indexes the per-variant
        arrays (labels, source_ids, variant) the same way."""
        src = self.source_format
        if order not in ORDERS:
            raise AelabError(f"--order '{order}' is not one of {', '.join(ORDERS)}")
        layout = layout or (src.layout if src.layout != "nhw" or self.images.shape[-1] == 1 else "nhwc")
        dtype = dtype or (src.dtype if src.dtype in DTYPES else "float32" if src.is_float else "uint8")
        if layout not in LAYOUTS:
            raise AelabError(f"--layout '{layout}' is not one of {', '.join(LAYOUTS[:2])} (or nhw for one channel)")
        if layout == "nhw" and self.images.shape[-1] != 1:
            raise AelabError(f"--layout nhw drops the channel axis, but the images have {self.images.shape[-1]} "
                             f"channels; use nhwc or nchw")
        if dtype not in DTYPES:
            raise AelabError(f"--dtype '{dtype}' is not one of {', '.join(DTYPES)}")
        rows = np.arange(len(self.images))
        if order == "round":
            rows = rows.reshape(-1, self.variants).T.reshape(-1)
        images = self.images[rows]
        lo, hi = (0.0, 255.0) if dtype == "uint8" else src.range if src.is_float else (0.0, 1.0)
        if dtype != "uint8":
            f = np.dtype(dtype).type
            images = images.astype(dtype) / f(255) * f(hi - lo) + f(lo)
        images = images.transpose(0, 3, 1, 2) if layout == "nchw" else images[..., 0] if layout == "nhw" else images
        return np.ascontiguousarray(images), rows, SourceFormat(layout, dtype, (lo, hi))  # type: ignore[arg-type]

    def arrays(self, layout: str | None = None, dtype: str | None = None, order: Order = "image", *,
               output: tuple[np.ndarray, np.ndarray, SourceFormat] | None = None) -> dict[str, np.ndarray]:
        """What the ``.npz`` holds (see ``output`` for the options; ``output``: its result for these
        options when the caller has it already, so the images are converted once)."""
        images, rows, fmt = self.output(layout, dtype, order) if output is None else output
        out = {"images": images}
        if self.labels is not None:
            out["labels"] = self.labels[rows]
        out.update(source_ids=self.source_ids[rows], variant=self.variant[rows], seed=np.int64(self.seed),
                   sigma=np.float64(np.nan if self.sigma is None else self.sigma), id_base=np.int64(self.id_base),
                   layout=np.array(fmt.layout), order=np.array(order))
        return out

    def save(self, path: str | Path, format: Literal["npz", "npy"] = "npz", *, layout: str | None = None,
             dtype: str | None = None, order: Order = "image",
             output: tuple[np.ndarray, np.ndarray, SourceFormat] | None = None) -> list[Path]:
        """``npz``: one file (``images``, ``labels``, ``source_ids``, ``variant``, ``seed``, ``sigma``,
        ``id_base``, ``layout``, ``order``) that loads back as ``npz:PATH``. ``npy``: ``<stem>_data.npy``,
        ``<stem>_label.npy`` and ``<stem>_ids.npy`` beside ``path`` (or ``aug_*.npy`` inside it, when it
        is a folder). ``layout``, ``dtype`` and ``order`` as in ``output``: by default the source's own
        (``output``: as in ``arrays``)."""
        path = Path(path)
        if format not in ("npz", "npy"):
            raise AelabError(f"--format '{format}' is not npz or npy")
        arrays = self.arrays(layout, dtype, order, output=output)
        if format == "npz":
            return [write_npz(path, arrays)]
        folder, stem = (path, "aug") if path.is_dir() or not path.suffix else (path.parent, path.stem)
        parts = {"data": arrays["images"], "label": arrays.get("labels"), "ids": arrays["source_ids"]}
        return [write_npy(folder / f"{stem}_{k}.npy", v) for k, v in parts.items() if v is not None]


def augment(run: Run, images: ImageSet | np.ndarray | str | list[int], variants: int = 5, sigma: float = 0.5,
            seed: int = 0, mode: Mode = "fixed", *, noise: np.ndarray | None = None, id_base: int = 0) -> Augmented:
    """Encode each image, add Gaussian noise to its code, decode; ``variants`` times per image.

    ``fixed``: code + sigma·eps. ``posterior`` (VAE only): mean + exp(logvar/2)·eps,
    a draw from the model's own posterior (sigma is not used). ``images`` may be
    an id list (``"1-5,226-230"``) into the run's data source, counted from
    ``id_base``; ``source_ids`` are reported in that base. The noise of an image
    depends on its row, whatever the base. ``noise`` (N×variants×≥code size)
    replaces the seeded draw."""
    id_base = check_base(id_base)
    if isinstance(images, str | list):
        images = select(run, images, id_base=id_base)
    if variants < 1:
        raise AelabError(f"--variants must be at least 1, got {variants}")
    if mode not in MODES:
        raise AelabError(f"--mode '{mode}' is not one of {', '.join(MODES)}")
    if mode == "posterior" and not run.variational:
        raise AelabError(f"--mode posterior needs a VAE; run {run.path} is a {run.model.family} model")
    if mode == "fixed" and not sigma >= 0:
        raise AelabError(f"--sigma must be non-negative, got {sigma}")
    images = run.check_images(images)
    n, k = len(images), run.latent_size
    ids = images.ids if isinstance(images, ImageSet) else np.arange(n)
    if noise is None:
        noise = code_noise(seed, ids, variants, k)
    elif noise.shape[:2] != (n, variants) or noise.shape[2] < k:
        raise AelabError(f"noise of shape {noise.shape} given; need {n}×{variants}×(at least {k})")
    eps = noise[..., :k]
    if mode == "posterior":
        mean, logvar = run.encode_stats(images)
        mean, std = mean.reshape(n, 1, k), np.exp(0.5 * logvar.reshape(n, 1, k))
        codes = mean + std * eps
    else:
        codes = run.encode(images).reshape(n, 1, k) + np.float32(sigma) * eps
    decoded = run.decode(codes.reshape(n * variants, k).astype(np.float32))
    labels = images.get_labels() if isinstance(images, ImageSet) else None
    return Augmented(
        images=decoded,
        labels=None if labels is None else np.repeat(labels.astype(np.int64), variants),
        source_ids=np.repeat(from_rows(ids, id_base), variants),
        variant=np.tile(np.arange(variants, dtype=np.int64), n),
        originals=run.preprocess.inverse(run.to_model(images)),
        seed=int(seed), sigma=None if mode == "posterior" else float(sigma), mode=mode, variants=variants,
        code_size=k, noise=noise[..., :k], id_base=id_base,
        source_format=images.source_format if isinstance(images, ImageSet) else SourceFormat())


def variant_stats(aug: Augmented) -> dict[str, float]:
    """MSE/PSNR/SSIM of the variants against their original (images in [0, 1]) and the
    diversity among an image's variants: the mean absolute pixel difference in [0, 1]
    units, averaged over all pairs of variants and then over images."""
    from aelab.metrics import reconstruction_metrics

    v = aug.variants
    unit = torch.from_numpy(aug.images).permute(0, 3, 1, 2).float() / 255.0
    orig = torch.from_numpy(aug.originals).permute(0, 3, 1, 2).float().repeat_interleave(v, 0) / 255.0
    per = reconstruction_metrics(unit, orig)
    stats = {k: float(t.mean()) for k, t in per.items()}
    grouped = unit.reshape(len(aug.originals), v, -1)
    pairs = [(a, b) for a in range(v) for b in range(a + 1, v)]
    stats["diversity"] = float(torch.stack([(grouped[:, a] - grouped[:, b]).abs().mean(1) for a, b in pairs])
                               .mean()) if pairs else 0.0
    return stats


class NoiseComparison(NamedTuple):
    """``compare_noise()``: both runs' variants and the numbers (unpacks as ``a, b, numbers``)."""

    a: Augmented
    b: Augmented
    numbers: dict[str, Any]

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per model: name, family, code size, and the variants' MSE/PSNR/SSIM and diversity."""
        return [{"model": key, **self.numbers[key]} for key in ("a", "b")]

    def to_pandas(self) -> Any:
        return to_pandas(self.table)


def compare_noise(run_a: Run, run_b: Run, images: ImageSet, variants: int = 5, sigma: float = 0.5, seed: int = 0,
                  mode: Mode = "fixed", id_base: int = 0) -> NoiseComparison:
    """``augment`` both runs with one noise draw of max(k_a, k_b) elements per variant.

    Per run the numbers also hold the un-noised reconstructions' PSNR/SSIM (``recon_psnr``, ``recon_ssim``;
    the images in each ``Augmented.recons``) and the code's spread: ``code_std``, the RMS over elements of
    each element's std over the training codes, and ``sigma_in_code_std`` = sigma / code_std, since one
    sigma is a small nudge to a code spread ~8 and a large one to a code spread ~1.5.

    ``mode`` posterior applies to the variational runs; a plain autoencoder always gets code + sigma·eps.
    ``id_base``: what the reported ids count from (``images`` is already chosen)."""
    from aelab.run import reconstructions

    run_b.check_images(images, "images for run B")
    ids = images.ids
    k = max(run_a.latent_size, run_b.latent_size)
    noise = code_noise(seed, ids, variants, k)
    augs = [augment(r, images, variants, sigma, seed, mode if r.variational else "fixed", noise=noise,
                    id_base=id_base) for r in (run_a, run_b)]
    shared = min(run_a.latent_size, run_b.latent_size)
    result: dict[str, Any] = {
        "ids": from_rows(ids, id_base).tolist(), "id_base": id_base, "variants": variants, "sigma": float(sigma),
        "seed": int(seed), "mode": mode,
        "noise": f"per image one stream default_rng([seed, row]) (row = id - id base) of {k}×{variants} "
                 f"standard normals "
                 f"(element-major); each model uses the first k elements of its code size, "
                 f"so the first {shared} are shared",
        "shared_elements": shared,
    }
    for key, run, aug in (("a", run_a, augs[0]), ("b", run_b, augs[1])):
        codes = run.encode(images).reshape(len(images), -1)
        rec = reconstructions(run, images)
        aug.recons = rec.reconstructions
        spread = float(np.sqrt(np.mean(code_stats(run).std_.astype(np.float64) ** 2)))
        result[key] = {"run": str(run.path), "name": run.name, "family": run.model.family,
                       "code_size": run.latent_size, "mode": aug.mode,
                       "code_rms": float(np.sqrt(np.mean(codes.astype(np.float64) ** 2))),
                       "code_std": spread, "sigma_in_code_std": float(sigma) / spread if spread > 0 else None,
                       "recon_psnr": float(rec.psnr.mean()), "recon_ssim": float(rec.ssim.mean()),
                       **variant_stats(aug)}
    return NoiseComparison(augs[0], augs[1], result)
