"""The checkpoint file and the training log, as ``--resume``, the Run, sweeps and the report read them.

A checkpoint is ONE safetensors file (``runfolder.CHECKPOINT``): weights, optimiser
moments and RNG states as tensors, and the JSON meta (epoch, step, config, param
groups, schedule state) in its metadata, so a kill can never pair new weights
with an old step. ``aelab.train`` writes it through ``aelab.io`` (temp, fsync,
rename, fsync of the folder) and checks on resume that its parts belong together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aelab.errors import RunError

if TYPE_CHECKING:
    import torch

# The checkpoint is one safetensors file (runfolder.CHECKPOINT); runfolder.CHECKPOINT_META is the second
# file of the older two-file format, kept only to refuse such folders on --resume.
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "aelab-checkpoint", "2"
_META_KEYS = ("epoch", "step", "elapsed_s", "images_seen", "world_size", "param_groups", "optim_scalars", "config")


def read_checkpoint(path: Path, tensors: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint's meta (from the safetensors metadata) and, with ``tensors``, its tensors.
    Anything unreadable, truncated or not an aelab checkpoint of this version is a RunError naming the file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            found = {k: fh.get_tensor(k) for k in fh.keys()} if tensors else {}  # noqa: SIM118 -- not a dict
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # safetensors has its own error types for truncated or corrupt files
        raise RunError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                       f"the run cannot be resumed, retrain it with --force") from None
    if header.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not an aelab checkpoint (no '{CHECKPOINT_FORMAT}' format in its metadata)")
    if header.get("version") != CHECKPOINT_VERSION:
        raise RunError(f"{path}: checkpoint format version {header.get('version')}; this aelab reads version "
                       f"{CHECKPOINT_VERSION}; retrain with --force")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError):
        raise RunError(f"{path}: the checkpoint's metadata is not valid JSON") from None
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise RunError(f"{path}: the checkpoint's metadata lacks {', '.join(missing)}")
    return meta, found


def weights_metadata(config: dict[str, Any], input_shape: Any, image_shape: Any, **extra: str) -> dict[str, str]:
    """The metadata of ``model.safetensors`` / ``best.safetensors``: the resolved config and shapes as JSON,
    so the file alone rebuilds its model (``create_model(config["model"], input_shape)``, docs/export.md)."""
    import aelab

    return {"format": "pt", "aelab": aelab.__version__, "config": json.dumps(config),
            "input_shape": json.dumps(list(input_shape)), "image_shape": json.dumps(list(image_shape)), **extra}


def read_weights_metadata(path: Path) -> dict[str, Any]:
    """``config``, ``input_shape`` and ``image_shape`` from a weights file's metadata; a RunError naming
    the file when they are absent (weights written before they were recorded: use the run's config.yaml)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
    except FileNotFoundError:
        raise RunError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors' own error types for truncated or corrupt files
        raise RunError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else exc!r})"
                       ) from None
    if "config" not in header:
        raise RunError(f"{path}: its metadata holds no config (written before aelab recorded it there); "
                       f"use the run folder's config.yaml and summary.json")
    try:
        return {k: json.loads(header[k]) for k in ("config", "input_shape", "image_shape")}
    except (KeyError, json.JSONDecodeError):
        raise RunError(f"{path}: the config in its metadata is not valid JSON") from None


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl. A torn last line (a kill in the middle of writing it) is
    dropped; a bad line anywhere else is a RunError naming the file and line."""
    return [rec for _, rec in log_lines(path)]


def metrics_log(path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl`` in today's terms (``read_log``, then ``logunits.upgrade_log`` with the run's
    config as a dict): the one reader for the Run, the sweep's curves and the report."""
    from aelab.logunits import upgrade_log

    return upgrade_log(read_log(Path(path)), config)


def log_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError
        except ValueError:
            if i == len(lines) - 1:
                break
            raise RunError(f"{path}: line {i + 1} is not a log record") from None
        records.append((line, rec))
    return records
