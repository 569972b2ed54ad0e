"""What the explorer server holds: each run loaded once, its images, and cached codes.

Every model call for a run happens under that run's lock, so requests that
arrive together take turns instead of fighting over the CPU's threads. While
a user drags a slider the page sends a numbered stream of decodes; a decode
that is overtaken by a newer one from the same client before its turn comes
is answered as superseded without running the model (``Latest``), so no
stale frame is ever computed behind the current one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aelab.data.files import ImageFileError, read_image_file
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, closest
from aelab.run import Run, load_run
from aelab.serve.limits import MAX_CODE_VALUE, MAX_NAME
from aelab.serve.splits import LABELS, ServedImages, SplitError

SLIDERS_ALL = 64
"""Codes up to this many elements get a slider for every element."""
RANK_CHUNK = 256
"""Elements measured per step of the background effect ranking."""


class ServeError(AelabError):
    """A bad request, answered with ``status`` and the message as ``detail``."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


def read_upload(raw: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Uploaded file bytes -> uint8 H×W×C of the run's source shape, read exactly as ``aelab edit
    --image`` reads a file (``aelab.data.files.read_image_file``: bomb and format checks, centre
    crop, resize); its errors become a ``ServeError`` with their status (413, 415, 400)."""
    try:
        return read_image_file(raw, shape, "upload")
    except ImageFileError as exc:
        raise ServeError(str(exc), exc.status) from None


def usable_ranges(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` with empty ranges widened: an element that never varies in the data
    (a dead ReLU unit, say) gets a range as wide as a typical element's, centred on its value,
    so its slider still moves."""
    width = high - low
    live = width > 1e-6
    typical = float(np.median(width[live])) if live.any() else 2.0
    mid = (low + high) / 2
    return (np.where(live, low, mid - typical / 2).astype(np.float32),
            np.where(live, high, mid + typical / 2).astype(np.float32))


@dataclass
class Encoded:
    """One image as the run sees it: model-range input, its code and reconstruction."""

    image: torch.Tensor
    """Model input in the model range, C×H×W."""
    code: np.ndarray
    """Flat float32 code."""
    recon: torch.Tensor
    """Decoded code in the model range, C×H×W."""


class Latest:
    """The newest decode sequence number seen from each client."""

    def __init__(self, clients: int = 256):
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._clients = clients

    def offer(self, client: str, seq: int) -> None:
        with self._lock:
            if seq > self._seen.get(client, -(2**63)):
                self._seen[client] = seq
            self._seen.move_to_end(client)
            while len(self._seen) > self._clients:
                self._seen.popitem(last=False)

    def overtaken(self, client: str, seq: int) -> bool:
        with self._lock:
            return self._seen.get(client, seq) > seq


class LoadedRun:
    """A run, its images and caches; every model call goes through ``lock``."""

    def __init__(self, key: str, run: Run, images: ServedImages, label: str, top: int = 16,
                 range_kind: str = "data", cache: int = 512):
        self.key, self.run, self.images, self.label = key, run, images, label
        self.data = images.get(None)
        """The default split: slider ranges, the effect ranking and the element facts come from it."""
        self.range_kind = range_kind
        self.data_label = self.data.name if images.data else f"{self.data.name} ({LABELS[images.default]} split)"
        self.lock = threading.Lock()
        self.latest = Latest()
        self._cache: OrderedDict[tuple[str, int], Encoded] = OrderedDict()
        self._cache_size = cache
        self._cache_lock = threading.Lock()
        self._ranges: tuple[np.ndarray, np.ndarray] | None = None
        self.top_n = top
        self._effect_order: list[int] | None = None
        self._ranking_thread: threading.Thread | None = None
        self.ranking_error: str | None = None
        self._stop = threading.Event()
        self.effects = np.full(run.latent_size, np.nan)
        """Per element, the mean |output change| at its slider's two ends from the data's mean code
        (``latent.element_effects``); NaN until measured (``element_effects`` here, or the ranking)."""

    # -- what the page needs to know ---------------------------------------------
    def info(self) -> dict[str, Any]:
        run = self.run
        c, h, w = run.model.input_shape
        low, high = self.ranges()
        sliders, order = self.ranking()
        return {"name": self.key, "path": self.label, "config_name": run.name, "family": run.model.family,
                "variational": run.variational, "latent_shape": list(run.latent_shape),
                "latent_size": run.latent_size, "image_shape": [h, w, c], "n_images": len(self.data),
                "data": self.data_label, "psnr": run.summary.get("psnr"),
                "split": self.images.default, "splits": self.images.describe(),
                "low": low.tolist(), "high": high.tolist(), "range": self.range_kind, "sliders": sliders,
                "slider_order": order, "ranking_error": self.ranking_error}

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-element slider range (computed once): by default the data's mean ± 2σ; ``range_kind``
        as ``latent.data_ranges`` takes it (data, prior, minmax, LOW:HIGH); see ``usable_ranges``."""
        if self._ranges is None:
            from aelab.latent import data_ranges

            with self.lock:
                if self._ranges is None:
                    low, high = data_ranges(self.run, self.data, self.range_kind)
                    self._ranges = usable_ranges(np.asarray(low, np.float32).ravel(),
                                                 np.asarray(high, np.float32).ravel())
        return self._ranges

    # -- images ----------------------------------------------------------------
    def split(self, split: str | None) -> str:
        """The split's name (None: the default); an unknown one is a 404."""
        try:
            return self.images.name(split)
        except SplitError as exc:
            raise ServeError(f"run '{self.key}': {exc}", exc.status) from None

    def position(self, image_id: int, split: str | None = None) -> int:
        """Where image ``image_id`` is in ``split``; a 404 naming the split that has it when this one does not."""
        try:
            return self.images.position(self.split(split), image_id)
        except SplitError as exc:
            raise ServeError(f"run '{self.key}': {exc}", exc.status) from None

    def subset(self, ids: list[int], split: str | None = None) -> ImageSet:
        try:
            return self.images.by_ids(self.split(split), ids)
        except SplitError as exc:
            raise ServeError(f"run '{self.key}': {exc}", exc.status) from None

    def page(self, offset: int, limit: int, split: str | None = None) -> list[tuple[int, np.ndarray]]:
        """(id, model-view uint8 image) for positions offset..offset+limit of the split."""
        data = self.images.get(self.split(split))
        positions = np.arange(offset, min(offset + limit, len(data)))
        if not len(positions):
            return []
        subset = data.subset(positions)
        with self.lock:
            view = self.run.preprocess.inverse(self.run.to_model(subset))
        return list(zip(subset.ids.tolist(), view, strict=True))

    def encode_id(self, image_id: int, split: str | None = None) -> Encoded:
        key = (self.split(split), image_id)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        enc = self.encode_images(self.subset([image_id], split))
        with self._cache_lock:
            self._cache[key] = enc
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return enc

    def encode_images(self, images: ImageSet | np.ndarray) -> Encoded:
        """Encode one image (an ImageSet of one, or uint8 H×W×C of the run's source shape)."""
        run = self.run
        images = run.check_images(images, "upload")
        with self.lock:
            x = run.to_model(images)
            # Run.encode's fixed row blocks: the same code `aelab edit --image` gets for this image.
            code = run.encode(images).reshape(1, -1)
            # The same call /api/decode makes, so an unedited code decodes to exactly these pixels.
            recon = self.decode(code)
        return Encoded(x[0], code[0], recon[0])

    # -- codes -----------------------------------------------------------------
    def check_code(self, code: list[float] | np.ndarray, what: str = "code") -> np.ndarray:
        arr = np.asarray(code, dtype=np.float64).ravel()
        n = self.run.latent_size
        if arr.size != n:
            raise ServeError(f"{what} has {arr.size} elements; run '{self.key}' decodes codes of {n} elements "
                             f"(shape {tuple(self.run.latent_shape)})", 422)
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ServeError(f"{what} element {int(bad[0])} is {arr[bad[0]]}; values must be finite numbers", 422)
        if np.abs(arr).max(initial=0) > MAX_CODE_VALUE:
            i = int(np.abs(arr).argmax())
            raise ServeError(f"{what} element {i} is {arr[i]:g}; values beyond ±{MAX_CODE_VALUE:g} are refused", 422)
        return arr.astype(np.float32)

    def decode(self, codes: np.ndarray) -> torch.Tensor:
        """Flat codes N×latent_size -> model-range images N×C×H×W (one batched call)."""
        return self.run.decode_tensor(codes.reshape(len(codes), -1))

    def to_uint8(self, x: torch.Tensor) -> np.ndarray:
        return self.run.preprocess.inverse(x)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return self.run.preprocess.to_unit(x)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` flat codes: the prior for a VAE, otherwise the Gaussian fitted to the training codes
        (``aelab.codestats.code_stats``, the one ``aelab sample`` and the latent anomaly score use)."""
        from aelab.generate import latent_prior

        with self.lock:
            prior = latent_prior(self.run)
        return prior.sample(n, seed).reshape(n, -1).astype(np.float32)

    def ranking(self) -> tuple[list[int], str]:
        """The elements to show sliders for, and how they were chosen.

        Codes of at most ``SLIDERS_ALL`` elements show every element ("all"). Larger
        codes show the ``top`` elements whose sweep over their range moves the decode
        of the data's mean code most ("effect"), measured once per run in a background
        thread (it decodes two codes per element); until that is done, the elements
        with the widest range in the data stand in ("spread")."""
        size = self.run.latent_size
        if size <= SLIDERS_ALL:
            return list(range(size)), "all"
        if self._effect_order is not None:
            return self._effect_order, "effect"
        self.start_ranking()
        low, high = self.ranges()
        order = np.lexsort((np.arange(size), -(high - low).astype(np.float64)))
        return [int(i) for i in order[:self.top_n]], "spread"

    def start_ranking(self) -> None:
        with self._cache_lock:
            if self._ranking_thread is not None or self.run.latent_size <= SLIDERS_ALL:
                return
            # Not a daemon: a process exiting while torch works in a daemon thread aborts.
            self._ranking_thread = threading.Thread(target=self._measure_effects, daemon=False,
                                                    name=f"aelab-serve-rank-{self.key}")
        self._ranking_thread.start()

    def _measure_effects(self) -> None:
        from aelab.latent import code_stats, element_effects, largest_effects

        try:
            low, high = self.ranges()
            mean = np.asarray(code_stats(self.run, self.data)["mean"], dtype=np.float32)
            n = self.run.latent_size
            effects = self.effects  # filled in place: GET /api/elements reads what is measured so far
            # In chunks, so shutting down stops it soon; not under self.lock, so decodes go on meanwhile.
            for start in range(0, n, RANK_CHUNK):
                if self._stop.is_set():
                    return
                dims = np.arange(start, min(n, start + RANK_CHUNK))
                effects[dims] = element_effects(self.run, mean, (low, high), dims=dims.tolist())[dims]
            self._effect_order = largest_effects(effects, self.top_n)
        except Exception as exc:  # keep serving with the spread order; say why in /api/runs
            self.ranking_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Ask the background ranking to stop (the server is shutting down)."""
        self._stop.set()

    def wait_ranking(self, timeout: float = 60.0) -> bool:
        """Block until the effect ranking is measured (for tests and benchmarks)."""
        self.start_ranking()
        if self._ranking_thread is not None:
            self._ranking_thread.join(timeout)
        return self._effect_order is not None


class ServeState:
    """The runs named on the command line, by key; nothing else is reachable."""

    def __init__(self, runs: list[LoadedRun]):
        if not runs:
            raise AelabError("no run to serve: name at least one run folder")
        self.runs: dict[str, LoadedRun] = {r.key: r for r in runs}

    def close(self) -> None:
        for run in self.runs.values():
            run.stop()

    def get(self, key: str | None) -> LoadedRun:
        if key is None:
            return next(iter(self.runs.values()))
        if key not in self.runs:
            if len(key) > MAX_NAME:  # from a form field or ?run=: not echoed, not compared at length
                raise ServeError(f"no run with a {len(key)}-character name; served runs: {', '.join(self.runs)}", 404)
            raise ServeError(f"no run '{key}'{closest(key, self.runs)}; served runs: {', '.join(self.runs)}", 404)
        return self.runs[key]


def load_state(run_paths: list[str | Path | Run], data: str | None = None, top: int = 16,
               range_kind: str = "data") -> ServeState:
    """Load each run once, with its images: ``data``, or else the run's splits (``ServedImages``: the
    validation split first; ids stay rows of the source, as ``aelab edit --id`` reads them)."""
    loaded: list[LoadedRun] = []
    keys: set[str] = set()
    for item in run_paths:
        run = item if isinstance(item, Run) else load_run(item)
        label = str(item.path if isinstance(item, Run) else item)
        base = run.path.name or run.name
        key, i = base, 2
        while key in keys:
            key, i = f"{base}-{i}", i + 1
        keys.add(key)
        one = LoadedRun(key, run, ServedImages(run, data), label, top, range_kind)
        one.ranges()  # a range kind the run cannot have (prior for a plain AE) fails here, at start
        loaded.append(one)
    return ServeState(loaded)
