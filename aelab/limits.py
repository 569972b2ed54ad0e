"""Limits checked before work starts: memory estimates and the smallest image a run can use.

A typo such as ``model.latent_dim=1000000000`` or ``builtin:faces?n=100000000000``
must be refused at once with the number it would need, not crash the
allocator (or swap the machine to a halt) after minutes of loading; a set of
1×1 images must be refused before training, not after it when SSIM fails. The
memory estimates are rough on purpose and are compared with the machine's
whole memory (or the container's limit), so only what cannot fit is refused.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from aelab.errors import AelabError, ConfigError, DataError

TRAIN_STATE_FACTOR = 4  # float32 weights + gradients + Adam's two moments
BATCH_FACTOR = 4  # float32 copies of a batch alive in a step: input, corrupted input, reconstruction, its gradient


def human(n: float) -> str:
    """Bytes as people read them: '23 GB', '48 TB' (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 10 else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _cgroup_limit() -> int | None:
    """The container's memory limit (cgroup v2 or v1), when one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def host_memory() -> int:
    """Physical memory of this machine in bytes, capped by the container's limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf: nothing to compare with
        return 1 << 62
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def device_memory(device: Any = None) -> tuple[int, str]:
    """(bytes, 'this machine' or 'this GPU (name)') where tensors on ``device`` live."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.device(device))
            return int(props.total_memory), f"this GPU ({props.name})"
    return host_memory(), "this machine"


def check_fits(need: int, what: str, device: Any = None, error: type[AelabError] = AelabError) -> None:
    """Refuse ``what`` when it needs more than the memory of ``device`` (the host by default)."""
    have, where = device_memory(device)
    if need > have:
        raise error(f"{what} needs ~{human(need)}; {where} has {human(have)}")


def check_array_fits(shape: tuple[int, ...], itemsize: int, where: str, action: str = "reading it") -> None:
    """A data set about to be materialised in memory: N×H×W×C × itemsize bytes."""
    need = math.prod(int(s) for s in shape) * int(itemsize)
    check_fits(need, f"{where}: {action} ({' × '.join(map(str, shape))})", error=DataError)


# -- models -------------------------------------------------------------------------------

def _culprit(params: Any, shape: tuple[int, ...], input_shape: tuple[int, int, int], source: str) -> str:
    """What sizes the largest weight: a config key ('model.latent_dim=1000000000') or the images."""
    side = max(shape)
    if side == math.prod(input_shape):
        return f"{source + ': ' if source else ''}images of {input_shape[1]}×{input_shape[2]} pixels"
    for key, value in params.model_dump().items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and v == side for v in values):
            return f"model.{key}={value}"
    return ""


def check_model_fits(params: Any, input_shape: tuple[int, int, int], device: Any = None,
                     training: bool = True, source: str = "") -> int:
    """Build the model on the meta device (no memory, no random draws), count its parameters and
    refuse it when weights (and, for training, gradients and optimiser state) cannot fit. Returns
    the parameter count."""
    import torch

    from aelab.models import create_model

    with torch.device("meta"):
        model = create_model(params, input_shape)
    named = list(model.named_parameters())
    count = sum(p.numel() for _, p in named)
    if not named:
        return 0
    name, largest = max(named, key=lambda item: item[1].numel())
    need = count * 4 * (TRAIN_STATE_FACTOR if training else 1)
    shape = tuple(largest.shape)
    culprit = _culprit(params, shape, input_shape, source)
    c, h, w = input_shape
    what = (f"{culprit + ': ' if culprit else ''}the {model.family} model ({count:,} parameters for {c}×{h}×{w} "
            f"inputs; largest {name} {'×'.join(map(str, shape))})")
    check_fits(need, f"{what} " + ("with gradients and optimiser state" if training else "to load"), device,
               error=ConfigError)
    return count


def check_batch_fits(batch: int, input_shape: tuple[int, int, int], key: str, device: Any = None,
                     copies: int = BATCH_FACTOR) -> None:
    """``copies`` float32 copies of one batch (see BATCH_FACTOR) must fit too."""
    need = batch * math.prod(input_shape) * 4 * copies
    c, h, w = input_shape
    check_fits(need, f"{key}={batch} batches of {c}×{h}×{w} images (float32)", device, error=ConfigError)


# -- the smallest image -------------------------------------------------------------------------

def check_image_size(input_shape: tuple[int, int, int], params: Any, where: str) -> None:
    """Refuse images too small to measure (SSIM) or for the model family to down-sample."""
    from aelab.metrics import SSIM_MIN_SIDE
    from aelab.models.registry import min_input_side

    _, h, w = input_shape
    model_side = min_input_side(params)
    need = max(SSIM_MIN_SIDE, model_side)
    if min(h, w) < need:
        why = (f"the {params.type} model's down-sampling needs at least {model_side}×{model_side}"
               if model_side >= SSIM_MIN_SIDE else
               f"SSIM, which every run is measured with, needs at least {SSIM_MIN_SIDE}×{SSIM_MIN_SIDE}")
        raise DataError(f"{where}: images of {h}×{w} pixels (after data.preprocess) are too small; {why}")


def check_training(cfg: Any, input_shape: tuple[int, int, int], n_train: int, device: Any = None) -> None:
    """Everything that can be refused before a run folder is made and a model allocated."""
    check_image_size(input_shape, cfg.model, cfg.data.source)
    check_model_fits(cfg.model, input_shape, device, training=True, source=cfg.data.source)
    check_batch_fits(min(cfg.train.batch_size, n_train), input_shape, "train.batch_size", device)
    check_batch_fits(min(cfg.train.eval_batch_size, n_train), input_shape, "train.eval_batch_size", device,
                     copies=2)  # evaluation holds inputs and reconstructions, no gradients
