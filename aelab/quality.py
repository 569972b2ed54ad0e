"""Sample quality that works offline: a Fréchet distance in aelab's own feature space, and sharpness.

The feature space (``FEATURE_SPEC``, version 1) is a small convolutional
autoencoder that aelab trains itself, once per data set:

* architecture: conv family, channels [16, 32, 64], kernel 4, stride 2, ReLU,
  a 32-element Linear code, Tanh output, images in [-1, 1];
* data: the run's data source, label file, ``select_labels`` and ``preprocess``
  (so it sees images of the run's output shape), a 10% validation split, seed 0;
* training: Adam, lr 0.002, batch 64, 4 epochs but at most 200 steps, seed 0.

Its features for an image are the 112 spatial means of its three ReLU feature
maps (16 + 32 + 64 channels: local edges and textures, which blur removes) followed by its
32-element code (global content): 144 numbers. Only the data settings above
enter the feature net, never the evaluated run's model, seed or range, so two runs
on the same data get the same feature net and comparable distances (compare them
at the same sample count ``n``: Fréchet distances shrink as ``n`` grows).

The net is a Run folder of its own, ``RUN/quality/features-<hash>/``; the
hash covers the data settings and the spec, and a sibling run folder's copy with
the same hash is reused instead of training again.

Sharpness is the mean gradient magnitude of the luma (ITU-R 601) of images in
[0, 1], from forward differences: sqrt(dx² + dy²) averaged over pixels.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from aelab.errors import AelabError
from aelab.io import write_json
from aelab.runfolder import SUMMARY

if TYPE_CHECKING:
    from aelab.run import Run

FEATURE_SPEC: dict[str, Any] = {
    "version": 1,
    "model": {"type": "conv", "channels": [16, 32, 64], "kernel": 4, "latent_dim": 32, "activation": "relu"},
    "train": {"epochs": 4, "max_steps": 200, "batch_size": 64, "lr": 0.002, "optimizer": "adam"},
    "seed": 0,
    "val_fraction": 0.1,
    "range": [-1.0, 1.0],
}
FEATURES = "144 = spatial means of the 16/32/64 ReLU feature maps + the 32-element code"
QUALITY_JSON = "quality.json"
_LUMA = torch.tensor([0.299, 0.587, 0.114])


# -- numbers -------------------------------------------------------------------------

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N×D) and ``b`` (M×D):
    |mu_a - mu_b|² + tr(C_a + C_b - 2 (C_a C_b)^½)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise AelabError(f"a Fréchet distance needs at least 2 images per side, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # fewer images than features make the product singular: handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():  # singular product: nudge both covariances (the usual FID fix)
            eps = 1e-6 * np.eye(len(cov_a))
            root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root), 0.0))


def sharpness(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean gradient magnitude per image: uint8 N×H×W×C (or float N×C×H×W in [0, 1])."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float() / 255.0
    x = torch.einsum("nchw,c->nhw", x, _LUMA.to(x)) if x.shape[1] == 3 else x[:, 0]
    dx = x[:, :-1, 1:] - x[:, :-1, :-1]
    dy = x[:, 1:, :-1] - x[:, :-1, :-1]
    return torch.sqrt(dx * dx + dy * dy).flatten(1).mean(1).numpy()


# -- the feature net -------------------------------------------------------------------

def feature_config(run: Run) -> dict[str, Any]:
    """The aelab config of the feature net for ``run``'s data."""
    d = run.config.data
    spec = copy.deepcopy(FEATURE_SPEC)
    return {
        "name": "quality-features",
        "seed": spec["seed"],
        "data": {"source": d.source, "labels": d.labels, "select_labels": d.select_labels,
                 "preprocess": copy.deepcopy(d.preprocess), "val_fraction": spec["val_fraction"],
                 "range": spec["range"]},
        "model": spec["model"],
        "train": {**spec["train"], "device": "cpu"},
    }


def feature_hash(run: Run) -> str:
    d = run.config.data
    key = {"spec": FEATURE_SPEC, "source": d.source, "labels": d.labels, "select_labels": d.select_labels,
           "preprocess": d.preprocess}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def feature_run(run: Run, progress: bool = False) -> Run:
    """The feature net for ``run``'s data: cached in the run folder, copied from a sibling
    run that already has it, or trained (seconds on a CPU)."""
    from aelab.run import load_run
    from aelab.train import train

    name = f"features-{feature_hash(run)}"
    home = run.path / "quality" / name
    if (home / SUMMARY).exists():
        return load_run(home)
    for other in sorted(run.path.parent.glob(f"*/quality/{name}/summary.json")):
        tmp = home.with_name(f".{name}.copy")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(other.parent, tmp)
        if home.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.replace(home)
        return load_run(home)
    home.parent.mkdir(exist_ok=True)  # RUN/quality/: train creates only the last level of its folder
    return train(feature_config(run), home, force=True, progress=progress)


class FeatureExtractor:
    """Images (uint8 N×H×W×C of the run's output shape) -> float64 N×144 features."""

    def __init__(self, net: Run):
        self.net = net
        encoder = net.model.encoder
        self.layers = list(encoder)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        lo, hi = FEATURE_SPEC["range"]
        want = tuple(self.net.model.input_shape)
        got = (images.shape[3], images.shape[1], images.shape[2])
        if got != want:
            raise AelabError(f"feature net takes images of {want} (C×H×W), got {got}")
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2)
            x = x.float() * ((hi - lo) / 255.0) + lo
            parts = []
            for layer in self.layers:
                x = layer(x)
                if isinstance(layer, nn.ReLU) and x.ndim == 4:
                    parts.append(x.mean((2, 3)))
            parts.append(x.flatten(1))
            out.append(torch.cat(parts, 1).double())
        return torch.cat(out).numpy()


# -- the evaluation ------------------------------------------------------------------

def generation_quality(run: Run, n: int = 1000, seed: int = 0, write: bool = True,
                       progress: bool = False) -> dict[str, Any]:
    """Fréchet distances and sharpness of ``n`` samples (``aelab.generate.sample``, the prior
    for a VAE, a Gaussian fit for other models) against up to ``n`` held-out images.

    Also, as yardsticks: reconstructions of the held-out images, and as many training images
    (real against real: the distance two real samples of that size have). Writes ``RUN/quality.json``."""
    from aelab.generate import sample

    if n < 2:
        raise AelabError(f"--quality needs at least 2 images, got n={n}")
    held = run.splits.held_out
    held = held.subset(np.arange(min(n, len(held))))
    m = len(held)
    if m < 2:
        raise AelabError(f"run {run.path} has {m} held-out image(s); a Fréchet distance needs at least 2")
    real = run.preprocess.inverse(run.to_model(held))
    recon = run.reconstruct(held)
    train = run.splits.train
    reference = run.preprocess.inverse(run.to_model(train.subset(np.arange(min(m, len(train))))))
    drawn = sample(run, m, seed=seed)
    extract = FeatureExtractor(feature_run(run, progress))
    f_real = extract(real)
    result: dict[str, Any] = {
        "run": str(run.path),
        "n": m,
        "held_out": "val" if run.splits.val is not None else "train",
        "seed": seed,
        "generated_from": drawn.prior.describe(),
        "fd_generated": frechet_distance(extract(drawn.images), f_real),
        "fd_reconstructed": frechet_distance(extract(recon), f_real),
        "fd_train_vs_held_out": frechet_distance(extract(reference), f_real) if len(reference) >= 2 else None,
        "sharpness_real": float(sharpness(real).mean()),
        "sharpness_generated": float(sharpness(drawn.images).mean()),
        "sharpness_reconstructed": float(sharpness(recon).mean()),
    }
    result["sharpness_ratio_generated"] = result["sharpness_generated"] / max(result["sharpness_real"], 1e-12)
    result["sharpness_ratio_reconstructed"] = result["sharpness_reconstructed"] / max(result["sharpness_real"], 1e-12)
    result["feature_net"] = {"path": str(Path("quality") / f"features-{feature_hash(run)}"), "hash": feature_hash(run),
                             "features": FEATURES, "spec": FEATURE_SPEC}
    if write:
        write_json(run.path / QUALITY_JSON, result)
    return result


def quality_rows(q: dict[str, Any]) -> list[dict[str, Any]]:
    """``generation_quality``'s numbers as table rows: generated, reconstructed and real images."""
    return [
        {"images": f"generated ({q['generated_from']})", "FD to held-out": q["fd_generated"],
         "sharpness": q["sharpness_generated"], "sharpness / real": q["sharpness_ratio_generated"]},
        {"images": "reconstructed held-out", "FD to held-out": q["fd_reconstructed"],
         "sharpness": q["sharpness_reconstructed"], "sharpness / real": q["sharpness_ratio_reconstructed"]},
        {"images": "real (training images)", "FD to held-out": q["fd_train_vs_held_out"],
         "sharpness": q["sharpness_real"], "sharpness / real": 1.0},
    ]
