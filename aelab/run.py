"""A Run: the folder that holds a trained model and everything to use it again.

Layout (the contract every analysis relies on)::

    config.yaml        the fully resolved config
    model.safetensors  the weights (never pickled; loading runs no code)
    metrics.jsonl      one JSON object per iteration, and one per epoch with val_* keys
    summary.json       final metrics, shapes, parameter count, timings -- written last,
                       so a folder without it is an unfinished run
    figures/           loss.png and whatever later analyses draw

``Run`` is the Python handle: ``encode``, ``decode`` and ``reconstruct`` take
and give numpy arrays (uint8 images N×H×W×C, float32 codes N×latent_shape)
and work in batches, so a whole data set can be passed at once.

Same input, same bytes: ``encode`` and ``reconstruct`` call the model on blocks of
exactly ``ROWS`` rows, ``decode`` on blocks of ``DECODE_ROWS`` (the last one padded
with zeros), so each row meets the same kernels with the same shapes whatever the
request size. oneDNN and
MKL choose their algorithm and the split of a sum among threads from the batch
size and the thread count; without a fixed block a row decoded among 5 differs
from the same row decoded among 64 in the last bits, which flips uint8 rounding.

About 430 lines: Run, its checks of the folder it opens, and the one batch and fixed-block
path every encode and decode goes through belong together.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aelab.config import Config, load_config
from aelab.data.batches import READ_AHEAD, model_batches
from aelab.data.imageset import ImageSet
from aelab.data.sources import as_uint8_images
from aelab.data.splits import Splits, load_for, make_splits
from aelab.data.transforms import Preprocess
from aelab.errors import AelabError, RunError
from aelab.io import load_tensors
from aelab.limits import check_model_fits
from aelab.metrics import reconstruction_metrics
from aelab.models import Autoencoder, create_model
from aelab.models.base import memory_format_for
from aelab.runfolder import BEST_WEIGHTS, CHECKPOINT, CONFIG, FIGURES, METRICS, SUMMARY, WEIGHTS  # noqa: F401 -- re-exported for callers

WEIGHT_CHOICES = {"last": WEIGHTS, "best": BEST_WEIGHTS}
"""Which weights of a run to use: those training ended with, or the best epoch's (train.keep_best)."""

Images = np.ndarray | ImageSet

ROWS = 32
"""Rows in every model call of ``Run.encode`` / ``encode_stats`` / ``reconstruct`` (the default of
``Run.rows``). Part of what fixes their bytes: another value may change their last bits. In bulk
(scoring a test set) the conv VAE encodes as fast as in blocks of 512 and the deep fcn about 1.4×
slower, since its 50 MB first layer is read once per block (docs/generation.md, "Same seed, same
bytes")."""

DECODE_ROWS = 8
"""Rows in every model call of ``Run.decode`` (the default of ``Run.decode_rows``), smaller than
``ROWS`` because the explorer decodes one code per slider move and edits a few: a lone code pays
for a whole block. Measured with ``benchmarks/decode_rows.py`` (docs/generation.md)."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AelabError(f"train.device '{name}' asked for, but this machine has no CUDA device")
    return torch.device(name)


_cudnn_lock = threading.Lock()
_cudnn_users = 0
_cudnn_saved: tuple[bool, bool] = (False, False)


@contextmanager
def fixed_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN with benchmarking off and deterministic algorithms only, for the block.

    Training turns benchmarking on (it times algorithms and keeps the fastest, which may
    differ from one process to the next), and the heuristic choice may be an algorithm
    that sums in a nondeterministic order (a transposed convolution is a convolution's
    backward pass). Counted, so threads decoding at once restore the flags only when
    the last leaves. On the CPU nothing changes: oneDNN's choices are fixed by shape and
    thread count, which ``ROWS`` fixes."""
    global _cudnn_users, _cudnn_saved
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    with _cudnn_lock:
        if _cudnn_users == 0:
            _cudnn_saved = (cudnn.benchmark, cudnn.deterministic)
            cudnn.benchmark, cudnn.deterministic = False, True
        _cudnn_users += 1
    try:
        yield
    finally:
        with _cudnn_lock:
            _cudnn_users -= 1
            if _cudnn_users == 0:
                cudnn.benchmark, cudnn.deterministic = _cudnn_saved


def in_fixed_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
                  memory_format: torch.memory_format = torch.contiguous_format,
                  rows: int = ROWS) -> torch.Tensor:
    """``fn(x)`` computed ``rows`` rows at a time, every call exactly ``rows`` rows (float, on the CPU).

    Each block is copied into a fresh zero-padded buffer in ``memory_format``, so shape,
    layout and alignment are the same for every row; a row's result then depends on
    nothing but the row (checked in tests/test_determinism.py)."""
    outs = []
    with torch.inference_mode(), fixed_kernels(device):
        for start in range(0, len(x), rows):
            part = x[start:start + rows]
            size = (rows, *part.shape[1:])
            fmt = memory_format if part.ndim == 4 else torch.contiguous_format
            block = torch.empty(size, dtype=part.dtype, device=device, memory_format=fmt).zero_()
            block[:len(part)] = part
            outs.append(fn(block)[:len(part)].float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def load_weights(model: Autoencoder, path: Path) -> None:
    """Load safetensors weights into ``model``, naming any mismatch with its config."""
    try:
        state = load_tensors(path)
    except FileNotFoundError:
        raise RunError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: not a readable safetensors file ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        detail = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file but {tuple(expected[wrong[0]].shape)} "
                  f"in the model" if wrong else f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}")
        raise RunError(f"{path}: weights do not match the run's config ({detail})")
    model.load_state_dict(state)


def as_trained(config: Config, weights_file: Path) -> Config:
    """The config the weights were trained with. Until aelab recorded the config in the weights' metadata
    (2026-12-01), a max-pool convolution padded 'same' whatever ``model.padding`` said; a run from then
    is rebuilt that way, so its weights load and compute as they did when it was trained."""
    model = config.model
    if getattr(model, "downsample", None) != "maxpool" or getattr(model, "padding", None) is None:
        return config
    from aelab.checkpoint import read_weights_metadata

    try:
        read_weights_metadata(weights_file)
    except RunError:  # no config recorded (or unreadable: load_weights then says so)
        return config.model_copy(update={"model": model.model_copy(update={"padding": None})})
    return config


MAX_SIDE = 1 << 20  # no image dimension is larger: a bigger number in summary.json is damage, not data


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json as a dict, or a one-line RunError naming the file."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(summary, dict):
        raise RunError(f"{path}: expected a JSON object, found a {type(summary).__name__}")
    return summary


def _shape(summary: dict[str, Any], key: str, path: Path) -> tuple[int, int, int]:
    """A 3-element shape from summary.json, checked: the model is built from it."""
    if key not in summary:
        raise RunError(f"{path}: key '{key}' is missing; the run folder is damaged (train it again)")
    value = summary[key]
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in value)):
        shown = json.dumps(value)
        raise RunError(f"{path}: key '{key}' must be 3 positive integers up to {MAX_SIDE}, found "
                       f"{shown if len(shown) <= 60 else shown[:57] + '...'}")
    return tuple(value)  # type: ignore[return-value]


class Run:
    """A trained model with its config, preprocessing and data, loaded from a folder.

    ``weights``: ``last`` (the weights training ended with) or ``best`` (the best epoch's, kept by
    ``train.keep_best``)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", rows: int = ROWS,
                 weights: str = "last", decode_rows: int = DECODE_ROWS):
        self.path = Path(path)
        if weights not in WEIGHT_CHOICES:
            raise AelabError(f"weights '{weights}': must be last or best")
        self.weights = weights
        self.weights_file = self.path / WEIGHT_CHOICES[weights]
        """The file the model's weights came from (what caches of computed results are keyed on)."""
        if not self.path.is_dir():
            raise RunError(f"run folder not found: {self.path}")
        if not (self.path / SUMMARY).exists():
            state = "was interrupted or is still training" if (self.path / CHECKPOINT).exists() else \
                "has no summary.json"
            raise RunError(f"{self.path}: not a finished run ({state}); finish it with `aelab train "
                           f"{self.path / CONFIG} --out {self.path} --resume`")
        self.config: Config = as_trained(load_config(self.path / CONFIG), self.weights_file)
        self.summary: dict[str, Any] = read_summary(self.path / SUMMARY)
        self.device = torch.device(device)
        for name, value in (("rows", rows), ("decode_rows", decode_rows)):
            if value != 1 and (value < 8 or value % 8):
                # A block of 5 rows on 2 threads gave a row different bits at different positions in the
                # block (tests/test_determinism.py); multiples of 8 split evenly into the kernels' tiles.
                raise AelabError(f"{name} must be 1 or a multiple of 8, got {value}")
        self.rows = rows
        """Rows per model call of ``encode`` and ``reconstruct`` (see ``ROWS``): the same value gives
        the same bytes; a larger one trades the cost of encoding a few images for bulk throughput."""
        self.decode_rows = decode_rows
        """Rows per model call of ``decode`` (see ``DECODE_ROWS``), with the same trade."""
        self.read_ahead = READ_AHEAD if self.device.type == "cuda" else 0
        """Batches ``batches`` reads ahead in a background thread (0: synchronous reads, pages still
        released); the bytes do not depend on it. On the CPU the thread only competes with the model
        for the cores when the file is in the page cache (scoring measured slower with it on 2 cores),
        so 0; on CUDA it pins and copies on a side stream while the GPU computes."""
        self.preprocess = Preprocess(self.config.data.preprocess, self.config.data.range)
        self.image_shape: tuple[int, int, int] = _shape(self.summary, "image_shape", self.path / SUMMARY)
        input_shape = _shape(self.summary, "input_shape", self.path / SUMMARY)
        expected = self.preprocess.output_shape(self.image_shape)
        if tuple(expected) != input_shape:
            raise RunError(f"{self.path / SUMMARY}: 'input_shape' {list(input_shape)} does not follow from "
                           f"'image_shape' {list(self.image_shape)} and the config's preprocessing "
                           f"({list(expected)})")
        check_model_fits(self.config.model, input_shape, self.device, training=False)
        self.model: Autoencoder = create_model(self.config.model, input_shape)
        if weights == "best" and not (self.path / BEST_WEIGHTS).exists():
            raise RunError(f"{self.path}: no best weights ({BEST_WEIGHTS}); train with train.keep_best set "
                           f"(e.g. val_mse) to keep them, or use the last weights")
        load_weights(self.model, self.weights_file)
        self.memory_format = memory_format_for(self.model)
        self.model.to(self.device, memory_format=self.memory_format).eval()
        self.cache: dict[Any, Any] = {}
        """What analyses computed from this Run's weights and data (code statistics, codes, the weights'
        hash), keyed by a tuple whose first item names the analysis; the one place they keep state."""

    def __repr__(self) -> str:
        which = ", best weights" if self.weights == "best" else ""
        return f"Run('{self.path}', {self.model.family}, latent {self.latent_shape}{which})"

    # -- what it is ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.model.latent_shape

    @property
    def latent_size(self) -> int:
        return self.model.latent_size

    @property
    def variational(self) -> bool:
        return self.model.variational

    @property
    def figures(self) -> Path:
        (self.path / FIGURES).mkdir(exist_ok=True)
        return self.path / FIGURES

    def metrics_log(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl (iterations, then epoch records with val_* keys), in today's terms
        (``logunits.upgrade_log``: an older log gets ``mse_01`` where it follows exactly)."""
        from aelab.checkpoint import metrics_log

        return metrics_log(self.path / METRICS, self.config.to_dict())

    # -- data ------------------------------------------------------------------
    @cached_property
    def splits(self) -> Splits:
        """The run's own data, split exactly as in training."""
        return make_splits(self.config.data, self.config.seed)

    def data(self, source: str | ImageSet | None = None, labels: str | None = None) -> ImageSet:
        """``source`` loaded as the run loads data; without one, the run's whole
        source, so ids are rows of the user's data whichever split they fell in."""
        if source is None:
            return self.splits.full
        return load_for(self.config.data, source, labels)

    def val_data(self) -> ImageSet:
        """The held-out validation split (the training split when there is none)."""
        return self.splits.held_out

    def check_images(self, images: Images, where: str = "images") -> Images:
        """Coerce to uint8 N×H×W×C and check the run can take them (shape after preprocessing)."""
        if not isinstance(images, ImageSet):
            arr = np.asarray(images) if not isinstance(images, np.memmap) else images
            if arr.ndim == len(self.image_shape) and arr.shape[-1] == self.image_shape[-1]:
                arr = arr[None]
            images = as_uint8_images(arr, where)
        shape = images.shape if isinstance(images, ImageSet) else images.shape[1:]
        got = self.preprocess.output_shape(tuple(shape))
        want = tuple(self.model.input_shape)
        if got != want:
            raise AelabError(f"{where}: images of {'×'.join(map(str, shape))} (H×W×C) become {got} after "
                             f"preprocessing, but run {self.path} expects {want} (C×H×W), from "
                             f"{'×'.join(map(str, self.image_shape))} images")
        return images

    def batches(self, images: Images, batch_size: int | None = None) -> Iterator[torch.Tensor]:
        """Model-range tensors on the run's device, ``batch_size`` images at a time, through the
        Trainer's path (``batches.model_batches``): a memory-mapped file's pages are released after
        each batch, so scoring a file larger than memory keeps only the batches in flight resident.
        ``self.read_ahead`` batches are read ahead in a thread (0: in this thread)."""
        images = self.check_images(images)
        return model_batches(images, batch_size or self.config.train.eval_batch_size, self.preprocess, self.device,
                             self.memory_format, depth=self.read_ahead)

    def _map(self, images: Images, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` over the preprocessed images in blocks of ``self.rows`` (see the module doc)."""
        outs = [in_fixed_rows(fn, x, self.device, self.memory_format, self.rows) for x in self.batches(images)]
        return torch.cat(outs) if outs else torch.empty(0)

    # -- the model ---------------------------------------------------------------
    def to_model(self, images: Images) -> torch.Tensor:
        """Images preprocessed to the model's input (float N×C×H×W in the model range)."""
        with torch.inference_mode():
            outs = [x.float().cpu() for x in self.batches(images)]
        return torch.cat(outs) if outs else torch.empty(0)

    def encode(self, images: Images) -> np.ndarray:
        """Deterministic codes (the posterior mean for a VAE), float32 N×latent_shape."""
        return self._map(images, self.model.encode).numpy()

    def encode_stats(self, images: Images) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log-variance (VAE only)."""
        if not self.variational:
            raise AelabError(f"run {self.path} is a {self.model.family} model, not variational")
        both = self._map(images, lambda x: torch.stack(self.model.encode_stats(x), 1))
        return both[:, 0].numpy(), both[:, 1].numpy()

    def decode_tensor(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Codes -> model-range images (float N×C×H×W on the CPU); each code's image is the
        same bytes however many codes are decoded with it (blocks of ``self.decode_rows``)."""
        z = torch.as_tensor(np.asarray(codes, dtype=np.float32)) if not torch.is_tensor(codes) else codes.float()
        if z.ndim == len(self.latent_shape):
            z = z[None]
        if tuple(z.shape[1:]) != tuple(self.latent_shape):
            if z.ndim == 2 and z.shape[1] == self.latent_size:
                z = z.reshape(len(z), *self.latent_shape)
            else:
                raise AelabError(f"codes of shape {tuple(z.shape[1:])} given; run {self.path} decodes "
                                 f"{self.latent_shape} ({self.latent_size} elements)")
        if not torch.isfinite(z).all():
            raise AelabError("codes contain NaN or infinite values")
        return in_fixed_rows(self.model.decode, z, self.device, self.memory_format, self.decode_rows)

    def decode(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Codes (N×latent_shape, or N×latent_size flat) -> uint8 images N×H×W×C."""
        return self.preprocess.inverse(self.decode_tensor(codes))

    def reconstruct(self, images: Images) -> np.ndarray:
        """Encode and decode: uint8 images of the model's output shape."""
        return self.preprocess.inverse(self._map(images, lambda x: roundtrip(self.model, x)))

    def reconstruct_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Model-range input (float N×C×H×W, e.g. from ``to_model``) -> its reconstruction, float on
        the CPU, in one model call: for figures and error maps of a few images, where the pixels
        are drawn, not compared across requests (``reconstruct`` fixes the bytes)."""
        with torch.inference_mode():
            return roundtrip(self.model, x.to(self.device)).float().cpu()

    def evaluate(self, images: Images | str | None = None) -> dict[str, float]:
        """Mean MSE, PSNR and SSIM (images in [0, 1]) over ``images`` (default: validation split)."""
        data = self.val_data() if images is None else self.data(images) if isinstance(images, str) else images
        return evaluate_model(self.model, self.preprocess, self.batches(data))



def roundtrip(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """``decode(encode(x))``: the deterministic reconstruction (a VAE's posterior mean, not a sample).
    The one place it is written, so every reconstruction -- ``Run``'s, the Trainer's validation,
    figures, error maps -- is the same computation."""
    return model.decode(model.encode(x))


def evaluate_model(model: Autoencoder, pre: Preprocess, batches: Iterator[torch.Tensor]) -> dict[str, float]:
    """Mean per-image MSE/PSNR/SSIM of ``model``'s reconstructions of ``batches``."""
    totals: dict[str, float] = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    n = 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for x in batches:
            recon = roundtrip(model, x)
            per = reconstruction_metrics(pre.to_unit(recon.float()), pre.to_unit(x.float()))
            for k in totals:
                totals[k] += float(per[k].sum())
            n += len(x)
    model.train(was_training)
    return {**{k: v / max(n, 1) for k, v in totals.items()}, "n": n}


@dataclass
class Reconstructions:
    """Images beside their reconstructions, as the model sees them (uint8 N×H×W×C), with per-image
    metrics on [0, 1] pixels: what a reconstruction figure or table is drawn from."""

    ids: np.ndarray
    originals: np.ndarray
    reconstructions: np.ndarray
    mse: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray

    def numbers(self) -> dict[str, Any]:
        """The JSON part: ids and per-image metrics, and the mean PSNR."""
        return {"ids": self.ids.tolist(), "psnr": self.psnr.tolist(), "ssim": self.ssim.tolist(),
                "mse": self.mse.tolist(), "mean_psnr": float(np.mean(self.psnr)) if len(self.psnr) else None}


def reconstructions(run: Run, images: ImageSet) -> Reconstructions:
    """Encode and decode ``images`` once, keeping both sides and the per-image MSE/PSNR/SSIM."""
    x = run.to_model(images)
    recon = run._map(images, lambda t: roundtrip(run.model, t))  # fixed rows: same bytes as reconstruct
    per = reconstruction_metrics(run.preprocess.to_unit(recon), run.preprocess.to_unit(x))
    return Reconstructions(np.asarray(images.ids), run.preprocess.inverse(x), run.preprocess.inverse(recon),
                           per["mse"].numpy(), per["psnr"].numpy(), per["ssim"].numpy())


def load_run(path: str | Path, device: str | torch.device = "cpu", rows: int = ROWS, weights: str = "last",
             decode_rows: int = DECODE_ROWS) -> Run:
    """Open a finished Run folder (safe: config YAML and safetensors only) with its ``last`` or ``best`` weights.
    ``rows``: see ``ROWS``; ``decode_rows``: see ``DECODE_ROWS``."""
    return Run(path, device, rows, weights, decode_rows)
