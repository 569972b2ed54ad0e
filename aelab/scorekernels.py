"""The per-batch anomaly score kernels: one model-range batch in, one score per image out.

What ``aelab.anomaly.score`` runs on every batch while the images stream through the model, and
what ``aelab.export`` traces into the uint8-in scorer; the score kinds themselves are described in
``aelab.anomaly``. Pixel errors are measured with the model range mapped to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from aelab.errors import AelabError

if TYPE_CHECKING:
    from aelab.run import Run

def batch_scores(run: Run, x: torch.Tensor, kinds: Sequence[str],
                 gauss: tuple[torch.Tensor, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None, *,
                 refs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-image scores of one model-range batch (call under ``torch.inference_mode``);
    ``gauss``: ``latent_gaussian(run)`` for ``latent``; ``refs``: ``scorenorm.reference_codes(run)``
    for ``knn``; ``model`` replaces the run's model (a quantised copy)."""
    model, pre = run.model if model is None else model, run.preprocess
    if model.variational:
        mean, logvar = model.encode_stats(x)
        code = mean
    else:
        code = model.encode(x)
    recon = model.decode(code).float()
    x = x.float()
    out: dict[str, torch.Tensor] = {}
    if {"mse", "l2", "l1"} & set(kinds):
        diff = (recon - x).flatten(1).mul_(1.0 / (pre.hi - pre.lo))
        if "l1" in kinds:
            out["l1"] = diff.abs().mean(1)
        sq = diff.square_()
        if "mse" in kinds:
            out["mse"] = sq.mean(1)
        if "l2" in kinds:
            out["l2"] = sq.sum(1).sqrt_()
    if "ssim" in kinds:
        from aelab.metrics import ssim

        try:
            out["ssim"] = 1.0 - ssim(pre.to_unit(recon), pre.to_unit(x))
        except ValueError as exc:
            raise AelabError(f"score kind 'ssim': {exc}") from None
    if "elbo" in kinds:
        from aelab.models.vae import kl_divergence

        out["elbo"] = per_image_loss(recon, x, run.config.train.loss) + \
            model.params.beta * kl_divergence(mean.float(), logvar.float()) / math.prod(model.input_shape)
    if "latent" in kinds and gauss is None:
        raise AelabError("score kind 'latent' needs the Gaussian fitted to the training codes")
    if "knn" in kinds and refs is None:
        raise AelabError("score kind 'knn' needs the training codes (scorenorm.reference_codes)")
    if {"latent", "knn"} & set(kinds):
        from aelab.scorenorm import nearest_mean, whitened

        # one whitening for both: latent's Gaussian is the one the reference codes are whitened by
        white = whitened(code, *(gauss if gauss is not None else refs[:2]))
        if "latent" in kinds:
            out["latent"] = white.square().sum(1).sqrt_()
        if "knn" in kinds:
            out["knn"] = nearest_mean(white, refs[2])
    return out


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose Linear layers run in int8 (dynamic quantisation, CPU only).

    The fcn's time is almost all in two 12288×1024 matrix products; int8 kernels
    (VNNI) do them 1.4-2× faster, and the reconstructions move by about 1e-3
    of the range (benchmarks/score_speed.py measures the effect on the ranking)."""
    import warnings

    if next(model.parameters()).device.type != "cpu":
        raise AelabError("int8 scoring runs on the CPU only; load the run with device='cpu'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager-mode API is deprecated in favour of torchao, still works
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def per_image_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """The training reconstruction loss, one mean per image (model-range units, like training)."""
    if kind == "l1":
        return (recon - target).abs().flatten(1).mean(1)
    if kind == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none").flatten(1).mean(1)
    return (recon - target).square().flatten(1).mean(1)


def latent_gaussian(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and whitening matrix W of ``code_stats(run)``, float32 on the run's device:
    ``|(z - mean) @ W|`` is the Mahalanobis distance (W = L⁻ᵀ of the covariance's Cholesky factor)."""
    from aelab.codestats import code_stats

    stats = code_stats(run)
    return (torch.from_numpy(stats.mean_).float().to(run.device),
            torch.tensor(stats.whitening(), dtype=torch.float32, device=run.device))  # read-only: copied
