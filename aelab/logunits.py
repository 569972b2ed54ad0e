"""What each number a training run logs measures, in which unit, and older logs read in today's terms.

Two scales meet in a run's numbers. The training objective (``loss``, ``train_loss``) is computed on
images in ``data.range`` with ``train.loss`` and, for a VAE, adds β·KL/D; the reconstruction metrics
(``mse_01``, ``train_mse_01``, ``val_mse``, the summary's ``mse``) are per pixel value on images mapped
to [0, 1]. With ``data.range`` [-1, 1] an MSE on the range is 4× the same MSE on [0, 1], so the two
never share an axis or a column without their units: figures and tables take their labels from here.
"""

from __future__ import annotations

from typing import Any

MSE_01 = "MSE per pixel on [0, 1]"

# summary.json's loss and metric keys; written into every summary as `units`
SUMMARY_UNITS = {
    "final_train_loss": "training objective: train.loss on images in data.range (+ beta*KL/D for a VAE), "
                        "mean over the last epoch",
    "final_train_mse_01": f"reconstruction {MSE_01}, training images (noised input, sampled code), "
                          "mean over the last epoch",
    "final_train_kl": "KL divergence per image in nats (VAE), mean over the last epoch",
    "mse": f"reconstruction {MSE_01}, the evaluated_on split, after training",
    "psnr": "dB, data range 1, the evaluated_on split",
    "ssim": "structural similarity on [0, 1] images (1: identical), the evaluated_on split",
}

# metrics.jsonl's keys (step records, then epoch records)
LOG_UNITS = {
    "loss": "training objective of the batch: train.loss on data.range (+ beta*KL/D for a VAE)",
    "recon": "the train.loss term on data.range",
    "kl": "KL divergence per image in nats (VAE)",
    "mse_01": f"reconstruction {MSE_01} of the batch",
    "train_loss": "the epoch's mean training objective",
    "train_mse_01": f"the epoch's mean reconstruction {MSE_01}",
    "train_kl": "the epoch's mean KL per image in nats (VAE)",
    "val_mse": f"validation reconstruction {MSE_01}",
    "val_psnr": "validation PSNR in dB (data range 1)",
    "val_ssim": "validation SSIM",
}

# short column labels with their units, for tables of summaries ("val" reads "train" for a run evaluated on it)
LABELS = {
    "final_train_loss": "train loss (objective)",
    "final_train_mse_01": "train MSE [0,1]",
    "final_train_kl": "train KL (nats)",
    "mse": "val MSE [0,1]",
    "psnr": "val PSNR (dB)",
    "ssim": "val SSIM",
}

# the same labels under the keys of metrics.jsonl's epoch records (and the sweep table's val_* columns)
EPOCH_LABELS = {epoch_key: LABELS[key] for epoch_key, key in (
    ("train_loss", "final_train_loss"), ("train_mse_01", "final_train_mse_01"), ("train_kl", "final_train_kl"),
    ("val_mse", "mse"), ("val_psnr", "psnr"), ("val_ssim", "ssim"))}


def labelled(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary's loss and reconstruction numbers under labels that carry their units (``LABELS``); a
    number an older run did not record is None, the KL only for a run that has one."""
    where = summary.get("evaluated_on", "val")
    return {LABELS[k].replace("val ", f"{where} ", 1): summary.get(k) for k in LABELS
            if k != "final_train_kl" or summary.get(k) is not None}


def legend(objective: str, evaluated_on: str = "val") -> str:
    """The sentence under a table of ``labelled`` numbers: which number is which."""
    split = "validation" if evaluated_on == "val" else evaluated_on
    return (f"train loss: the objective the optimiser minimised ({objective}), mean over the last epoch; "
            f"MSE: per pixel value on [0, 1], train = the last epoch's batches, {evaluated_on} = the {split} "
            f"split after training (comparable with each other, not with the loss); PSNR with data range 1")


def span_squared(data_range: Any) -> float:
    """(hi − lo)²: what an MSE on ``data.range`` is divided by to read on [0, 1] (the map is linear)."""
    lo, hi = (float(v) for v in data_range)
    return (hi - lo) ** 2


def mse_01(recon: Any, target: Any, data_range: Any) -> Any:
    """Reconstruction MSE per pixel value on [0, 1] of model-range tensors, as a detached float32 scalar."""
    import torch.nn.functional as F

    return F.mse_loss(recon.detach().float(), target.detach().float()) / span_squared(data_range)


def upgrade_log(records: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """``metrics.jsonl`` records in today's terms: a log written before ``mse_01`` was recorded gets it on
    each step record where it follows exactly (``train.loss: mse``, whose ``recon`` term is the MSE on
    ``data.range``), and, for a model without a KL term (objective = that MSE), ``train_mse_01`` on each
    epoch record (its ``train_loss`` on [0, 1]); other records are returned as they are."""
    if not any(("loss" in r and "mse_01" not in r) or ("train_loss" in r and "train_mse_01" not in r)
               for r in records):
        return records
    train, data = config.get("train") or {}, config.get("data") or {}
    if train.get("loss", "mse") != "mse":
        return records
    span2 = span_squared(data.get("range", (-1.0, 1.0)))
    # no KL term (not a VAE): the epoch's objective is the epoch's mean MSE on the range
    plain = (config.get("model") or {}).get("type") != "vae" and not any("kl" in r for r in records)

    def upgraded(r: dict[str, Any]) -> dict[str, Any]:
        if "recon" in r and "mse_01" not in r:
            return {**r, "mse_01": round(r["recon"] / span2, 7)}
        if plain and "train_loss" in r and "train_mse_01" not in r:
            return {**r, "train_mse_01": round(r["train_loss"] / span2, 7)}
        return r

    return [upgraded(r) for r in records]


def objective_label(loss: str, data_range: Any, variational: bool) -> str:
    """The training objective in words, e.g. ``mse on [-1, 1] + β·KL/D``: what a ``loss`` axis measures."""
    lo, hi = (float(v) for v in data_range)
    return f"{loss} on [{lo:g}, {hi:g}]" + (" + β·KL/D" if variational else "")
