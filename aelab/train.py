"""The training loop. It knows the model only through ``forward`` and ``loss``.

Data stays uint8 until a batch is drawn; each batch is converted and
preprocessed as one tensor op. The epoch order is a permutation seeded by
(seed, epoch), so a resumed run draws exactly the batches it would have.
Checkpoints (weights, optimiser state, RNG state) are written atomically each
epoch; ``summary.json`` is written last and marks the run finished.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aelab
from aelab.config import Config, as_config
from aelab.data.batches import epoch_order
from aelab.data.imageset import ImageSet
from aelab.data.splits import make_splits
from aelab.data.transforms import Preprocess
from aelab.errors import AelabError, RunError
from aelab.io import atomic_write, load_tensors, save_tensors, write_json
from aelab.models import Autoencoder, create_model
from aelab.run import CONFIG, METRICS, SUMMARY, WEIGHTS, Run, evaluate_model, resolve_device

CHECKPOINT, CHECKPOINT_META = "checkpoint.safetensors", "checkpoint.json"


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel makes one pass over each parameter instead of several (CPU and CUDA).
    return cls(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)


def corrupt(x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Denoising input: gaussian noise (clamped to the range) or masked pixels set to the range's low end."""
    noise = cfg.train.input_noise
    if noise is None:
        return x
    lo, hi = cfg.data.range
    if noise.type == "gaussian":
        return (x + noise.std * torch.randn_like(x)).clamp_(lo, hi)
    keep = torch.rand(x.shape[0], 1, *x.shape[2:], device=x.device) >= noise.fraction
    return torch.where(keep, x, torch.full_like(x, lo))


def _batches(data: ImageSet, order: np.ndarray, batch_size: int, skip: int = 0) -> Iterator[np.ndarray]:
    """uint8 batches in ``order``; a lone last image is dropped (BatchNorm needs two)."""
    starts = range(skip * batch_size, len(order), batch_size)
    for start in starts:
        positions = order[start:start + batch_size]
        if len(positions) < 2 and len(order) > 1:
            return
        yield data.batch(positions)


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and n == 1) else 0)


class Trainer:
    """One training run into one folder. ``fit`` runs it; state lives here, not in globals."""

    def __init__(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, out, progress
        self.device = resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.splits = make_splits(cfg.data, cfg.seed)
        self.pre = Preprocess(cfg.data.preprocess, cfg.data.range)
        self.input_shape = self.pre.output_shape(self.splits.train.shape)
        self.model: Autoencoder = create_model(cfg.model, self.input_shape).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.per_epoch = steps_per_epoch(len(self.splits.train), cfg.train.batch_size)
        total = self.per_epoch * cfg.train.epochs
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        self.step, self.epoch, self.elapsed, self.images_seen = 0, 0, 0.0, 0
        self._prepare_folder(resume)

    # -- the folder ----------------------------------------------------------------
    def _prepare_folder(self, resume: bool) -> None:
        out = self.out
        if resume and (out / CHECKPOINT_META).exists():
            self._load_checkpoint()
            return
        if resume and (out / SUMMARY).exists():
            raise RunError(f"{out}: the run is already finished; nothing to resume")
        if out.exists() and any(out.iterdir()):
            if (out / SUMMARY).exists() or (out / CHECKPOINT_META).exists() or (out / CONFIG).exists():
                hint = "--resume to continue it, " if (out / CHECKPOINT_META).exists() else ""
                raise RunError(f"run folder {out} already holds a run; use {hint}--force to replace it, "
                               f"or another --out")
            raise RunError(f"{out} exists and is not empty; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG, self.cfg.to_yaml())
        (out / METRICS).write_text("")

    def _save_checkpoint(self) -> None:
        opt = self.optimizer.state_dict()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        scalars: dict[str, Any] = {}
        for idx, state in opt["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{idx}.{key}"] = value
                else:
                    scalars[f"{idx}.{key}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        save_tensors(self.out / CHECKPOINT, tensors)
        write_json(self.out / CHECKPOINT_META, {
            "epoch": self.epoch, "step": self.step, "elapsed_s": self.elapsed, "images_seen": self.images_seen,
            "param_groups": opt["param_groups"], "optim_scalars": scalars, "config": self.cfg.to_dict()})

    def _load_checkpoint(self) -> None:
        meta = json.loads((self.out / CHECKPOINT_META).read_text())
        if meta.get("config") != self.cfg.to_dict():
            raise RunError(f"{self.out}: --resume with a config that differs from the one the run started with")
        tensors = load_tensors(self.out / CHECKPOINT)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        for k, v in meta["optim_scalars"].items():
            idx, key = k.split(".", 1)
            state.setdefault(int(idx), {})[key] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        self.epoch, self.step, self.elapsed = meta["epoch"], meta["step"], meta["elapsed_s"]
        self.images_seen = meta["images_seen"]
        # drop log lines written after the checkpoint (they will be written again)
        lines = (self.out / METRICS).read_text().splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= self.step]
        atomic_write(self.out / METRICS, "".join(ln + "\n" for ln in kept))

    # -- the loop ------------------------------------------------------------------
    def fit(self) -> Run:
        cfg, model = self.cfg, self.model
        bar = _progress(self.progress, self.total_steps, self.step)
        log = open(self.out / METRICS, "a")  # noqa: SIM115 -- closed in the finally below
        model.train()
        started = time.perf_counter()
        seen_at_start = self.images_seen
        try:
            with bar or nullcontext():
                task = bar.add_task(self.cfg.name, total=self.total_steps, completed=self.step, loss=float("nan"),
                                      rate=0.0) if bar else None
                while self.step < self.total_steps:
                    order = epoch_order(len(self.splits.train), cfg.seed, self.epoch, self.splits.train)
                    skip = self.step - self.epoch * self.per_epoch
                    epoch_loss, epoch_n = 0.0, 0
                    for batch in _batches(self.splits.train, order, cfg.train.batch_size, skip):
                        x = self.pre(batch, self.device)
                        out = model(corrupt(x, cfg))
                        terms = model.loss(out, x, cfg.train.loss)
                        self.optimizer.zero_grad(set_to_none=True)
                        terms["loss"].backward()
                        self.optimizer.step()
                        self.step += 1
                        self.images_seen += len(x)
                        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
                        record = {"step": self.step, "epoch": self.epoch + 1,
                                  **{k: round(v, 7) for k, v in zip(terms, values, strict=True)}}
                        if not math.isfinite(record["loss"]):
                            raise AelabError(f"training diverged at step {self.step} (loss {record['loss']}); "
                                             f"lower train.lr (now {cfg.train.lr:g})")
                        log.write(json.dumps(record) + "\n")
                        epoch_loss += record["loss"] * len(x)
                        epoch_n += len(x)
                        if bar:
                            rate = (self.images_seen - seen_at_start) / max(time.perf_counter() - started, 1e-9)
                            bar.update(task, advance=1, loss=record["loss"], rate=rate)
                        if self.step >= self.total_steps:
                            break
                    self.epoch += 1
                    log.write(json.dumps(self._epoch_record(epoch_loss / max(epoch_n, 1))) + "\n")
                    log.flush()
                    now = time.perf_counter()
                    self.elapsed += now - started
                    started, seen_at_start = now, self.images_seen
                    self._save_checkpoint()
        finally:
            log.close()
        return self._finish()

    def _epoch_record(self, train_loss: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "train_loss": round(train_loss, 7)}
        if self.splits.val is not None:
            val = evaluate_model(self.model, self.pre, self._eval_batches(self.splits.val))
            rec.update({f"val_{k}": round(v, 6) for k, v in val.items() if k != "n"})
        self.model.train()
        return rec

    def _eval_batches(self, data: ImageSet) -> Iterator[torch.Tensor]:
        size = self.cfg.train.eval_batch_size
        for start in range(0, len(data), size):
            yield self.pre(data.batch(slice(start, start + size)), self.device)

    def _finish(self) -> Run:
        save_tensors(self.out / WEIGHTS, self.model.state_dict(), metadata={"format": "pt", "aelab": aelab.__version__})
        data = self.splits.val if self.splits.val is not None else self.splits.train
        final = evaluate_model(self.model, self.pre, self._eval_batches(data))
        records = [json.loads(ln) for ln in (self.out / METRICS).read_text().splitlines() if ln.strip()]
        last_epoch = [r for r in records if "train_loss" in r]
        params = sum(p.numel() for p in self.model.parameters())
        summary = {
            "name": self.cfg.name,
            "family": self.model.family,
            "parameters": params,
            "image_shape": list(self.splits.train.shape),
            "input_shape": list(self.input_shape),
            "latent_shape": list(self.model.latent_shape),
            "latent_size": self.model.latent_size,
            "compression_ratio": round(math.prod(self.input_shape) / self.model.latent_size, 3),
            "n_train": len(self.splits.train),
            "n_val": len(self.splits.val) if self.splits.val is not None else 0,
            "evaluated_on": "val" if self.splits.val is not None else "train",
            "epochs": self.epoch,
            "steps": self.step,
            "batch_size": self.cfg.train.batch_size,
            "world_size": 1,
            "final_train_loss": last_epoch[-1]["train_loss"] if last_epoch else None,
            "mse": final["mse"], "psnr": final["psnr"], "ssim": final["ssim"],
            "wall_time_s": round(self.elapsed, 3),
            "images_per_s": round(self.images_seen / max(self.elapsed, 1e-9), 1),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "aelab": aelab.__version__,
            "python": platform.python_version(),
        }
        from aelab.plots import loss_curve

        (self.out / "figures").mkdir(exist_ok=True)
        loss_curve(records, self.out / "figures" / "loss.png", title=self.cfg.name)
        for name in (CHECKPOINT, CHECKPOINT_META):
            (self.out / name).unlink(missing_ok=True)
        write_json(self.out / SUMMARY, summary)
        return Run(self.out, device=self.device)


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[rate]:.0f} img/s"),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False) \
        if total > done else None


def default_out(cfg: Config) -> Path:
    return Path("runs") / cfg.name


def train(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
          overrides: list[str] | None = None, resume: bool = False, force: bool = False,
          progress: bool = False) -> Run:
    """Train a model from a config (object, dict or YAML path) into a Run folder and return the Run.

    ``resume`` continues an interrupted run from its last epoch checkpoint;
    ``force`` replaces whatever ``out`` holds."""
    cfg = as_config(config, overrides)
    out = Path(out) if out else default_out(cfg)
    if force and out.exists() and not resume:
        shutil.rmtree(out)
    trainer = Trainer(cfg, out, resume=resume, progress=progress)
    try:
        return trainer.fit()
    except BaseException:
        # A failed run must not look finished: summary.json is only written on success.
        (out / SUMMARY).unlink(missing_ok=True)
        raise
