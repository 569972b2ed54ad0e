"""Reconstruction metrics, per image, on images in [0, 1] (PSNR data range 1).

PSNR and SSIM come from torchmetrics (SSIM: Gaussian window, sigma 1.5, of
size 11 or the largest odd size that fits small images such as 8×8 digits).
Every function takes float N×C×H×W tensors and returns one value per image,
so callers can average, rank or score as they need.

torchmetrics is imported by ``ssim`` when it first runs: importing it pulls in its audio metrics and
scipy.signal (about 1.4 s), which a command that never measures SSIM should not wait for.
"""

from __future__ import annotations

import torch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).flatten(1).mean(1)


def psnr_from_mse(err: torch.Tensor) -> torch.Tensor:
    """10·log10(1 / MSE); a perfect reconstruction is capped at 100 dB."""
    return (10.0 * torch.log10(1.0 / err.clamp_min(1e-10))).clamp_max(100.0)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return psnr_from_mse(mse(pred, target))


SSIM_MIN_SIDE = 3  # the smallest odd Gaussian window ``ssim`` accepts; smaller images cannot be measured


def ssim_window(height: int, width: int) -> int:
    side = min(11, height, width)
    return side if side % 2 else side - 1


SSIM_CHUNK = 32  # images per SSIM call: its padded window statistics cost ~3 MB per 64×64×3 image


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (Wang et al. 2004), channels averaged; computed in chunks to bound memory."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    k = ssim_window(*pred.shape[-2:])
    if k < SSIM_MIN_SIDE:
        raise ValueError(f"images of {tuple(pred.shape[-2:])} are too small for SSIM")
    parts = [structural_similarity_index_measure(
        pred[i:i + SSIM_CHUNK].float(), target[i:i + SSIM_CHUNK].float(), gaussian_kernel=True, sigma=1.5 * k / 11,
        kernel_size=k, data_range=1.0, reduction="none") for i in range(0, len(pred), SSIM_CHUNK)]
    return torch.cat(parts) if parts else pred.new_zeros(0)


def reconstruction_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR and SSIM of ``pred`` against ``target`` (both in [0, 1])."""
    err = mse(pred, target)
    return {"mse": err, "psnr": psnr_from_mse(err), "ssim": ssim(pred, target)}
