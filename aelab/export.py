"""A Run's model as ONNX or TorchScript files, to use without aelab.

Parts (``PARTS``), each with a dynamic batch axis:

``encoder``      float N×C×H×W in the model range -> code N×latent_shape (a VAE's posterior mean)
``decoder``      code -> float N×C×H×W in the model range
``autoencoder``  float N×C×H×W -> its reconstruction
``scorer``       uint8 N×H×W×C images -> one float score per image: the run's preprocessing
                 (``Preprocess``), the model and the score (``aelab.scorekernels.batch_scores``) traced into one
                 graph, so it equals ``run.score(images, kind)`` up to float rounding

The graphs are traced from the very code aelab runs (``Preprocess.__call__``, ``batch_scores``), so
nothing here restates the arithmetic. ONNX goes through torch's TorchScript-based exporter
(``dynamo=False``): it needs only ``onnx``, traces these plain feed-forward modules exactly, and
takes ``dynamic_axes``; the newer torch.export exporter needs onnxscript besides and gained us
nothing for graphs without control flow. ``export.json`` beside the files says what each takes and gives.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from aelab.anomaly import check_kind
from aelab.errors import AelabError, closest
from aelab.io import atomic_write, write_json
from aelab.run import roundtrip
from aelab.runfolder import make_folder
from aelab.scorekernels import batch_scores, latent_gaussian

if TYPE_CHECKING:
    from aelab.run import Run

PARTS = ("encoder", "decoder", "autoencoder", "scorer")
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
SCORER_KINDS = ("mse", "l2", "l1", "elbo", "latent")
"""Kinds the scorer part can hold: ``ssim`` runs in chunks of images (a loop on the batch size, which a
traced graph fixes) and ``combined`` ranks within the set scored together."""
OPSET = 17
INSTALL = "pip install 'aelab[export]'  (onnx and onnxruntime)"
EXPORT_JSON = "export.json"


class Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class Decoder(Encoder):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


class Roundtrip(Encoder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return roundtrip(self.model, x)


class Scorer(nn.Module):
    """uint8 N×H×W×C -> float32 N scores: ``Preprocess`` then ``batch_scores``, as ``aelab.anomaly.score`` runs them."""

    def __init__(self, run: Run, kind: str):
        super().__init__()
        self.run, self.kind = run, kind
        self.model = run.model  # registered, so tracing sees its parameters
        self.gauss = latent_gaussian(run) if kind == "latent" else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.run.preprocess(images)
        return batch_scores(self.run, x, (self.kind,), self.gauss, self.model)[self.kind].float()


@dataclass
class Exported:
    """What ``export`` wrote: one file per part, and what each takes and gives."""

    run: str
    format: str
    out: str
    files: dict[str, str] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    score: str = "mse"

    def numbers(self) -> dict[str, Any]:
        return {"run": self.run, "format": self.format, "out": self.out, "score": self.score, "files": self.files,
                "parts": self.parts}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise AelabError(f"unknown export format '{fmt}'{closest(fmt, FORMATS)}; formats: {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise AelabError(f"ONNX export needs the onnx package: {INSTALL}") from None
    return fmt


def check_parts(parts: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    names = PARTS if parts is None else (parts,) if isinstance(parts, str) else tuple(parts)
    for p in names:
        if p not in PARTS:
            raise AelabError(f"unknown part '{p}'{closest(p, PARTS)}; parts: {', '.join(PARTS)}")
    return names


def check_score(run: Run, kind: str) -> str:
    check_kind(kind, run)
    if kind not in SCORER_KINDS:
        raise AelabError(f"score '{kind}' ranks images within the set scored together and cannot be exported per "
                         f"image; scorer kinds: {', '.join(SCORER_KINDS)}")
    return kind


def module_and_example(run: Run, part: str, kind: str = "mse") -> tuple[nn.Module, torch.Tensor, dict[str, Any]]:
    """The module to trace for ``part``, an example input of two rows, and what it takes and gives."""
    c, h, w = run.model.input_shape
    lo, hi = run.preprocess.lo, run.preprocess.hi
    model_in = {"name": "images", "dtype": "float32", "shape": ["N", c, h, w], "range": [lo, hi]}
    code = {"name": "code", "dtype": "float32", "shape": ["N", *run.latent_shape]}
    if part == "encoder":
        return Encoder(run.model), torch.full((2, c, h, w), (lo + hi) / 2), {"input": model_in, "output": code}
    if part == "decoder":
        return Decoder(run.model), torch.zeros(2, *run.latent_shape), {
            "input": code, "output": {**model_in, "name": "reconstruction"}}
    if part == "autoencoder":
        return Roundtrip(run.model), torch.full((2, c, h, w), (lo + hi) / 2), {
            "input": model_in, "output": {**model_in, "name": "reconstruction"}}
    ih, iw, ic = run.image_shape
    images = torch.randint(0, 256, (2, ih, iw, ic), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return Scorer(run, kind), images, {
        "input": {"name": "images", "dtype": "uint8", "shape": ["N", ih, iw, ic], "layout": "NHWC",
                  "preprocess": run.preprocess.spec()},
        "output": {"name": "score", "dtype": "float32", "shape": ["N"], "kind": kind,
                   "meaning": "higher = more anomalous"}}


def export(run: Run, out: str | Path, fmt: str = "onnx", parts: str | list[str] | None = None,
           kind: str = "mse") -> Exported:
    """Write ``out/<part>.onnx`` (or ``.pt``) for each part (default: all) and ``out/export.json``."""
    check_format(fmt)
    names = check_parts(parts)
    if "scorer" in names:
        check_score(run, kind)
    if fmt == "onnx" and "scorer" in names and _antialiased(run):
        raise AelabError("the scorer cannot be written as ONNX: the run's preprocessing shrinks images with an "
                         "antialiased resize, which ONNX's exporter lacks; export --format torchscript, or "
                         "--part autoencoder and preprocess outside")
    folder = make_folder(out)
    result = Exported(str(run.path), fmt, str(folder), score=kind)
    model = run.model
    was_format = run.memory_format
    model.to(memory_format=torch.contiguous_format)  # a plain layout traces to a plain graph
    try:
        for part in names:
            module, example, io_spec = module_and_example(run, part, kind)
            example = example.to(run.device)  # traced where the run's model lives
            module.eval()
            data = _onnx_bytes(module, example, io_spec) if fmt == "onnx" else _torchscript_bytes(module, example)
            path = folder / f"{part}{FORMATS[fmt]}"
            atomic_write(path, data)
            result.files[part] = str(path)
            result.parts[part] = io_spec
    finally:
        model.to(memory_format=was_format)
    write_json(folder / EXPORT_JSON, {**result.numbers(), "opset": OPSET if fmt == "onnx" else None})
    return result


def _antialiased(run: Run) -> bool:
    """Whether the run's preprocessing shrinks with ``Resize`` (antialiased), walking the shapes step by step."""
    from aelab.data.transforms import Resize

    h, w, c = run.image_shape
    shape = (c, h, w)
    for step in run.preprocess.steps:
        if isinstance(step, Resize) and (shape[1] > step.height or shape[2] > step.width):
            return True
        shape = step.shape(shape)
    return False


def _onnx_bytes(module: nn.Module, example: torch.Tensor, spec: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    name_in, name_out = spec["input"]["name"], spec["output"]["name"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer notes
        try:
            torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[name_in],
                              output_names=[name_out], dynamic_axes={name_in: {0: "N"}, name_out: {0: "N"}})
        except torch.onnx.errors.UnsupportedOperatorError as exc:
            raise AelabError(f"the {type(module).__name__.lower()} cannot be written as ONNX opset {OPSET} "
                             f"({str(exc).splitlines()[0]}); export --format torchscript") from None
    return buf.getvalue()


def _torchscript_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, buf)
    return buf.getvalue()


def model_from_weights(path: str | Path) -> nn.Module:
    """The model rebuilt from a weights file alone (its metadata's config and input shape), in eval mode."""
    from aelab.checkpoint import read_weights_metadata
    from aelab.io import load_tensors
    from aelab.models import create_model

    meta = read_weights_metadata(Path(path))
    model = create_model(meta["config"]["model"], tuple(meta["input_shape"]))
    model.load_state_dict(load_tensors(path))
    return model.eval()
