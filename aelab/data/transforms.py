"""Batched preprocessing: uint8 N×H×W×C batches in, model-range float N×C×H×W out.

The steps are declared in the config (``data.preprocess``) and applied to a
whole batch at once with tensor ops; there is never a Python loop per image.
``Preprocess.inverse`` maps model outputs back to uint8 images (crops and
resizes are not undone: outputs have the model's shape).

Step forms::

    - crop: [top, left, height, width]     # the course's crop(x, 10, 0, 28, 64)
    - center_crop: 48                      # or [h, w]
    - resize: 32                           # or [h, w]; bilinear with antialiasing
    - grayscale                            # ITU-R 601 luma, 1 channel
    - gcn_l1                               # per-image global contrast normalisation (L1)
    - minmax: fit                          # or [lo, hi]; fitted on the training images by fit_steps
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aelab.errors import ConfigError, DataError, closest

Shape = tuple[int, int, int]  # (C, H, W)


def _pair(value: Any, step: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int) and v > 0 for v in value)):
        raise ConfigError(f"data.preprocess step '{step}': expected a positive size or [height, width], got {value!r}")
    return int(value[0]), int(value[1])


class Step:
    """One preprocessing step: ``apply`` on float N×C×H×W in [0, 1], ``shape`` on (C, H, W)."""

    name = ""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shape(self, shape: Shape) -> Shape:
        return shape

    def spec(self) -> Any:
        raise NotImplementedError


class Crop(Step):
    name = "crop"

    def __init__(self, value: Any):
        if (not isinstance(value, list | tuple) or len(value) != 4
                or not all(isinstance(v, int) and v >= 0 for v in value) or value[2] == 0 or value[3] == 0):
            raise ConfigError(f"data.preprocess step 'crop': expected [top, left, height, width], got {value!r}")
        self.top, self.left, self.height, self.width = value

    def shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        if self.top + self.height > h or self.left + self.width > w:
            raise DataError(f"data.preprocess crop {[self.top, self.left, self.height, self.width]} does not fit "
                            f"an image of {h}×{w}")
        return c, self.height, self.width

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.top:self.top + self.height, self.left:self.left + self.width]

    def spec(self) -> Any:
        return {"crop": [self.top, self.left, self.height, self.width]}


class CenterCrop(Step):
    name = "center_crop"

    def __init__(self, value: Any):
        self.height, self.width = _pair(value, self.name)

    def shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        if self.height > h or self.width > w:
            raise DataError(f"data.preprocess center_crop {[self.height, self.width]} is larger than {h}×{w}")
        return c, self.height, self.width

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return x[..., top:top + self.height, left:left + self.width]

    def spec(self) -> Any:
        return {"center_crop": [self.height, self.width]}


class Resize(Step):
    name = "resize"

    def __init__(self, value: Any):
        self.height, self.width = _pair(value, self.name)

    def shape(self, shape: Shape) -> Shape:
        return shape[0], self.height, self.width

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.height, self.width):
            return x
        shrinking = x.shape[-2] > self.height or x.shape[-1] > self.width
        return F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False,
                             antialias=shrinking).clamp_(0.0, 1.0)

    def spec(self) -> Any:
        return {"resize": [self.height, self.width]}


class Grayscale(Step):
    name = "grayscale"
    _weights = torch.tensor([0.299, 0.587, 0.114])

    def __init__(self, value: Any = None):
        if value not in (None, True):
            raise ConfigError(f"data.preprocess step 'grayscale' takes no value, got {value!r}")

    def shape(self, shape: Shape) -> Shape:
        return 1, shape[1], shape[2]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        return torch.einsum("nchw,c->nhw", x, self._weights.to(x)).unsqueeze(1)

    def spec(self) -> Any:
        return "grayscale"


STEPS: dict[str, Callable[[Any], Step]] = {s.name: s for s in (Crop, CenterCrop, Resize, Grayscale)}


class GcnL1(Step):
    """Per-image global contrast normalisation with the L1 norm: subtract the image's mean, divide
    by its mean absolute deviation. The usual preprocessing of the one-class MNIST / CIFAR-10
    protocol (Ruff et al., 2018); values leave [0, 1], so follow it with ``minmax``."""

    name = "gcn_l1"

    def __init__(self, value: Any = None):
        if value not in (None, True):
            raise ConfigError(f"data.preprocess step 'gcn_l1' takes no value, got {value!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean((1, 2, 3), keepdim=True)
        return centred / centred.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-6)

    def spec(self) -> Any:
        return "gcn_l1"


class MinMax(Step):
    """``(x - lo) / (hi - lo)`` with ``lo``/``hi`` fitted on the (normal) training images.

    ``minmax: fit`` (or a bare ``minmax``) asks for fitting: ``fit_steps`` computes the
    minimum and maximum over the training batches after the steps before it and writes
    them back as ``minmax: [lo, hi]``, so the resolved config of a Run reproduces the
    scaling. Images outside the fitted range map outside [0, 1] (not clamped)."""

    name = "minmax"

    def __init__(self, value: Any = None):
        self.lo = self.hi = None
        if value in (None, True, "fit"):
            return
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
                or not value[1] > value[0]):
            raise ConfigError(f"data.preprocess step 'minmax': expected 'fit' or [lo, hi] with hi > lo, got {value!r}")
        self.lo, self.hi = float(value[0]), float(value[1])

    @property
    def fitted(self) -> bool:
        return self.lo is not None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise ConfigError("data.preprocess step 'minmax: fit' has no fitted values; training fits it on the "
                              "training split (aelab.data.splits.fit_preprocess), or write minmax: [lo, hi]")
        return (x - self.lo) * (1.0 / (self.hi - self.lo))

    def spec(self) -> Any:
        return {"minmax": [self.lo, self.hi] if self.fitted else "fit"}


STEPS.update({s.name: s for s in (GcnL1, MinMax)})


def fit_steps(steps: Sequence[str | dict[str, Any] | Step], batches: Callable[[], Iterable[np.ndarray]]) -> list[Any]:
    """The step specs with every ``minmax: fit`` replaced by its fitted ``[lo, hi]``.

    ``batches()`` yields the uint8 N×H×W×C training batches; it is called once per
    step that needs fitting (each sees the data through the already-fitted steps before it)."""
    parsed = [s if isinstance(s, Step) else parse_step(s) for s in steps]
    for i, step in enumerate(parsed):
        if isinstance(step, MinMax) and not step.fitted:
            before = Preprocess(parsed[:i], (0.0, 1.0))
            lo, hi = math.inf, -math.inf
            for batch in batches():
                x = before(batch)
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
            if not math.isfinite(lo):
                raise DataError("data.preprocess step 'minmax: fit': no training images to fit on")
            parsed[i] = MinMax([lo, hi if hi > lo else lo + 1.0])
    return [s.spec() for s in parsed]


def parse_step(item: str | dict[str, Any]) -> Step:
    if isinstance(item, str):
        name, value = item, None
    elif isinstance(item, dict) and len(item) == 1:
        name, value = next(iter(item.items()))
    else:
        raise ConfigError(f"data.preprocess: each step is a name or a one-key mapping, got {item!r}")
    if name not in STEPS:
        raise ConfigError(f"data.preprocess: unknown step '{name}'{closest(name, STEPS)}; "
                          f"steps: {', '.join(STEPS)}")
    return STEPS[name](value)


class Preprocess:
    """The declared steps plus the scaling to the model range, for whole batches."""

    def __init__(self, steps: Sequence[str | dict[str, Any] | Step] = (), value_range: Sequence[float] = (-1.0, 1.0)):
        self.steps = [s if isinstance(s, Step) else parse_step(s) for s in steps]
        self.lo, self.hi = float(value_range[0]), float(value_range[1])

    def output_shape(self, image_shape: tuple[int, int, int]) -> Shape:
        """Model input (C, H, W) for source images of (H, W, C)."""
        h, w, c = image_shape
        shape: Shape = (c, h, w)
        for step in self.steps:
            shape = step.shape(shape)
        return shape

    def __call__(self, batch: np.ndarray | torch.Tensor, device: torch.device | str | None = None, *,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """uint8 N×H×W×C -> float32 N×C×H×W in the model range (on ``device``), laid out as asked.

        The uint8 batch already has channels_last's memory order, so asking for that layout (conv
        models) costs no reordering copy; the scaling works in place on the one float copy.
        """
        if isinstance(batch, np.ndarray) and not batch.flags.writeable:
            batch = np.array(batch)  # a read-only memory map: torch wants writable memory (a small copy per batch)
        x = torch.as_tensor(batch)
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise DataError(f"expected a uint8 batch N×H×W×C, got {x.dtype} {tuple(x.shape)}")
        if device is not None:
            x = x.to(device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()  # keeps the channels-last strides
        x = x.mul_(1.0 / 255.0) if not self.steps else x.div_(255.0)  # each path's arithmetic as before: same weights
        for step in self.steps:
            x = step.apply(x)
        if (self.lo, self.hi) != (0.0, 1.0):
            x = x.mul_(self.hi - self.lo).add_(self.lo) if not self.steps else x * (self.hi - self.lo) + self.lo
        return x.contiguous(memory_format=memory_format)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model range -> [0, 1] (where metrics are computed), clamped."""
        return ((x - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)

    def inverse(self, x: torch.Tensor) -> np.ndarray:
        """Model-range float N×C×H×W -> uint8 N×H×W×C numpy images."""
        unit = self.to_unit(x.detach().float())
        return unit.mul(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def spec(self) -> list[Any]:
        return [s.spec() for s in self.steps]
