"""The training loop. It knows the model only through ``forward`` and ``loss``.

Data stays uint8 until a batch is drawn; each batch is converted and
preprocessed as one tensor op. The epoch order is a permutation seeded by
(seed, epoch), so a resumed run draws exactly the batches it would have.
Each epoch ends with one checkpoint file (weights, optimiser state, RNG state
and, in its safetensors metadata, the step count and config), written
atomically and durably, so weights, optimiser state and step can only be
replaced together; ``--resume`` checks that they still belong together and
with ``metrics.jsonl``. A run ends with ``model.safetensors``, then
``summary.json`` (which marks it finished), then the checkpoint's removal: a
kill at any point leaves a folder that ``--resume`` completes to the same
weights.

Under torchrun the same loop runs in every process (see ``aelab.distributed``):
each rank takes its part of every global batch, DistributedDataParallel
averages the gradients, and rank 0 alone writes the folder and the log.

Longer than the other modules (~640 lines) because the Trainer is one object whose folder,
checkpoint and loop share state; the checkpoint file format is in ``aelab.checkpoint``,
the progress and per-epoch lines in ``aelab.feedback``, the schedules in ``aelab.schedule``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aelab
from aelab import distributed, runfolder
from aelab.allocator import keep_freed_memory
from aelab.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, log_lines, read_checkpoint, read_log
from aelab.config import Config, as_config
from aelab.data.batches import ReadAhead, epoch_batches, epoch_order, model_batches, shard_batch, steps_per_epoch
from aelab.data.imageset import ImageSet
from aelab.data.splits import fit_preprocess, make_splits
from aelab.data.transforms import Preprocess
from aelab.errors import AelabError, RunError, TrainingInterrupted
from aelab.feedback import Feedback, check_tensorboard, interactive
from aelab.io import atomic_write, dumps_json, remove, remove_stray_temps, save_tensors, write_json
from aelab.limits import check_training
from aelab.logunits import SUMMARY_UNITS, mse_01
from aelab.models import Autoencoder, create_model
from aelab.models.base import memory_format_for
from aelab.run import Run, evaluate_model, resolve_device
from aelab.runfolder import (
    BEST_WEIGHTS,
    CHECKPOINT,
    CHECKPOINT_META,
    CONFIG,
    METRICS,
    METRICS_CSV,
    SUMMARY,
    TENSORBOARD,
    WEIGHTS,
)
from aelab.schedule import Best, EarlyStopping, Schedule
from aelab.tables import rows_csv


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


COMPILE_BACKEND = "inductor"  # what train.compile uses (tests swap in "eager")


def _precision(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. auto: bf16 on CUDA devices that support it."""
    want = cfg.train.precision
    if want == "fp32" or (want == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if want == "auto":
            return None
        raise AelabError(f"train.precision bf16 asked for, but {torch.cuda.get_device_name(device)} does not "
                         f"support bfloat16; use fp32 or auto")
    return torch.bfloat16


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed for the random draws (noise, dropout, VAE samples) of ranks above 0, which must differ from rank 0's."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class Trainer:
    """One training run into one folder. ``fit`` runs it; state lives here, not in globals."""

    def __init__(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool | None = None,
                 dist: distributed.Dist | None = None):
        if "tensorboard" in cfg.train.log:
            check_tensorboard()
        cfg = fit_preprocess(cfg)  # `minmax: fit` steps get their values from the training split
        self.cfg, self.out, self.progress = cfg, out, interactive() if progress is None else progress
        self.dist = dist or distributed.joined()
        self.device = distributed.device_for(resolve_device(cfg.train.device), self.dist)
        self.rank_batch_size = distributed.check_batch_size(cfg.train.batch_size, self.dist.world)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.splits = make_splits(cfg.data, cfg.seed)
        self.pre = Preprocess(cfg.data.preprocess, cfg.data.range)
        self.input_shape = self.pre.output_shape(self.splits.train.shape)
        check_training(cfg, self.input_shape, len(self.splits.train), self.device)  # before allocating anything
        self.model: Autoencoder = create_model(cfg.model, self.input_shape).to(self.device)
        # bf16 autocast and pinned host batches on CUDA only; channels_last for conv models everywhere:
        # oneDNN's CPU convolutions are ~1.4× faster in that layout (course conv model, quiet 2-core CPU).
        self.amp_dtype = _precision(cfg, self.device)
        self.memory_format = memory_format_for(self.model)
        self.model.to(memory_format=self.memory_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # batch shapes repeat: time the conv algorithms once, keep the best
        self.optimizer = make_optimizer(self.model, cfg)
        self.per_epoch = steps_per_epoch(len(self.splits.train), cfg.train.batch_size, self.dist.world)
        total = self.per_epoch * cfg.train.epochs
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        self.step, self.epoch, self.elapsed, self.images_seen = 0, 0, 0.0, 0
        # what the loop decides from steps and epoch metrics; their state travels in the checkpoint's meta
        t = cfg.train
        self.schedule = Schedule(self.optimizer, t.lr_schedule, t.lr, self.total_steps, self.per_epoch)
        self.stopper = EarlyStopping(t.early_stopping) if t.early_stopping else None
        self.best = Best(t.keep_best) if t.keep_best else None
        self.stopped_early = False
        self.epoch_records: list[dict[str, Any]] = []  # metrics.csv's rows (rank 0)
        if self.dist.rank > 0:  # same init as rank 0 (seeded above), different noise from here on
            torch.manual_seed(_rank_seed(cfg.seed, self.dist.rank))
        self._prepare_folder(resume)
        self.net = self._wrap(self.model)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the loop calls: DDP around the model for several processes, compiled on request."""
        net = model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            # DDP copies rank 0's weights to every rank here (they already agree: same seed, same checkpoint).
            net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.train.compile:
            net = torch.compile(net, backend=COMPILE_BACKEND)
        return net

    # -- the folder ----------------------------------------------------------------
    def _prepare_folder(self, resume: bool) -> None:
        # Rank 0 alone looks at and writes the folder; every rank gets the checkpoint it read.
        state = distributed.run_on_main(lambda: self._open_folder(resume), self.dist)
        if state is not None:
            self._apply_checkpoint(*state)

    def _open_folder(self, resume: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        out = self.out
        if resume and ((out / CHECKPOINT).exists() or (out / CHECKPOINT_META).exists()):
            return self._read_checkpoint()
        held = runfolder.state(out)
        if resume and held == "finished":
            raise RunError(f"{out}: the run is already finished; nothing to resume")
        if resume and self._killed_before_first_checkpoint():
            runfolder.replace_folder(out)  # nothing to keep: start it again
            held = runfolder.state(out)
        if held in ("unfinished", "finished"):
            hint = "--resume to continue it, " if (out / CHECKPOINT).exists() else ""
            raise RunError(f"run folder {out} already holds a run; use {hint}--force to replace it, "
                           f"or another --out")
        if held == "foreign" and out.is_dir() and not out.is_symlink():
            raise RunError(f"{out} exists and is not an aelab run folder; choose another --out")
        try:
            runfolder.make_folder(out)
            atomic_write(out / CONFIG, self.cfg.to_yaml())
            (out / METRICS).write_text("")
        except OSError as exc:
            raise RunError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
        return None

    def _killed_before_first_checkpoint(self) -> bool:
        """Whether ``out`` holds only the start of this run (its config, a log, a writer's temp files):
        a kill before the first checkpoint, which --resume restarts from step 0."""
        out = self.out
        if not out.is_dir() or not (out / CONFIG).exists():
            names = {p.name for p in out.iterdir()} if out.is_dir() else set()
            return bool(names) and all(n.startswith(".") and n.endswith(".tmp") for n in names)
        names = {p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        if not names <= {CONFIG, METRICS}:
            return False
        from aelab.config import load_config

        try:
            same = load_config(out / CONFIG).to_dict() == self.cfg.to_dict()
        except AelabError:
            return False
        return same

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """Every rank's RNG state, on rank 0 (a collective: all ranks call it)."""
        d, states = self.dist, {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        out: dict[str, torch.Tensor] = {}
        for name, state in states.items():
            rows = distributed.gather_to_main(state.numpy()[None], d)
            if rows is not None:
                out.update({f"rng.{name}" + (f".{r}" if r else ""): torch.from_numpy(row.copy())
                            for r, row in enumerate(rows)})
        return out

    def _save_checkpoint(self) -> None:
        rng = self._rng_states()
        if not self.dist.main:
            return
        opt = self.optimizer.state_dict()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        scalars: dict[str, Any] = {}
        for idx, state in opt["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{idx}.{key}"] = value
                else:
                    scalars[f"{idx}.{key}"] = value
        tensors.update(rng)
        meta = {"epoch": self.epoch, "step": self.step, "elapsed_s": self.elapsed, "images_seen": self.images_seen,
                "world_size": self.dist.world, "param_groups": opt["param_groups"], "optim_scalars": scalars,
                "config": self.cfg.to_dict(), "schedule": self.schedule.state_dict(),
                "early_stopping": self.stopper.state_dict() if self.stopper else None,
                "best": self.best.state_dict() if self.best else None, "stopped_early": self.stopped_early}
        # One file, one rename: weights, optimiser state, RNG state and step cannot be torn apart.
        save_tensors(self.out / CHECKPOINT, tensors, metadata={
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "meta": dumps_json(meta)})

    def _read_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        out = self.out
        if (out / CHECKPOINT_META).exists():
            raise RunError(f"{out / CHECKPOINT_META}: an older two-file checkpoint, which a kill can leave with "
                           f"weights and step that do not belong together; it is not resumed, retrain with --force")
        meta, tensors = read_checkpoint(out / CHECKPOINT)
        if meta["config"] != self.cfg.to_dict():
            raise RunError(f"{out}: --resume with a config that differs from the one the run started with")
        self._check_checkpoint(meta, tensors)
        # drop log records written after the checkpoint (they will be written again) and a torn last line
        kept_lines = [(ln, r) for ln, r in log_lines(out / METRICS) if r["step"] <= meta["step"]]
        kept = [r for _, r in kept_lines]
        steps = [r["step"] for r in kept if "loss" in r]
        epochs = [r["epoch"] for r in kept if "train_loss" in r]
        if steps != list(range(1, meta["step"] + 1)) or epochs != list(range(1, meta["epoch"] + 1)):
            raise RunError(f"{out / METRICS}: {len(steps)} step and {len(epochs)} epoch records up to step "
                           f"{meta['step']}, where the checkpoint (step {meta['step']}, epoch {meta['epoch']}) needs "
                           f"{meta['step']} and {meta['epoch']}; the log and the checkpoint do not belong together")
        atomic_write(out / METRICS, "".join(ln + "\n" for ln, _ in kept_lines))
        self.epoch_records = [r for r in kept if "train_loss" in r]
        remove_stray_temps(out)
        return meta, tensors

    def _check_checkpoint(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Refuse a checkpoint whose weights, optimiser state and step do not belong to each other or to
        this model: the names and shapes of the weights, the optimiser's parameters and the shapes of its
        moments, Adam's own step count, and the step the epoch count implies."""
        path = self.out / CHECKPOINT
        written_by = meta["world_size"]
        per_epoch = steps_per_epoch(len(self.splits.train), self.cfg.train.batch_size, written_by)
        if per_epoch != self.per_epoch:  # another world size is fine while an epoch keeps its number of steps
            raise RunError(f"{self.out}: the checkpoint was written by {written_by} process(es), {per_epoch} steps "
                           f"per epoch; {self.dist.world} process(es) take {self.per_epoch}; resume with "
                           f"{written_by} process(es)")
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        expected = self.model.state_dict()
        wrong = sorted(set(weights) ^ set(expected)) or \
            [k for k in expected if tuple(weights[k].shape) != tuple(expected[k].shape)]
        if wrong:
            raise RunError(f"{path}: the checkpoint's weights do not match the model ({wrong[0]})")
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        ids = [g.get("params") for g in meta["param_groups"]]
        if ids != [g["params"] for g in self.optimizer.state_dict()["param_groups"]]:
            raise RunError(f"{path}: the checkpoint's optimiser holds other parameters than the model's")
        adam_steps = set()
        for key, value in tensors.items():
            if not key.startswith("optim."):
                continue
            _, idx, name = key.split(".", 2)
            if not idx.isdigit() or int(idx) >= len(params) or \
                    (value.dim() > 0 and tuple(value.shape) != tuple(params[int(idx)].shape)):
                raise RunError(f"{path}: optimiser state {key} does not match the model's parameters")
            if name == "step":
                adam_steps.add(float(value))
        if meta["step"] > 0 and not any(k.startswith("optim.") for k in tensors) and not meta["optim_scalars"]:
            raise RunError(f"{path}: the checkpoint is at step {meta['step']} but holds no optimiser state")
        if adam_steps and adam_steps != {float(meta["step"])}:
            raise RunError(f"{path}: the optimiser state is at step {sorted(adam_steps)[-1]:g} but the checkpoint "
                           f"says step {meta['step']}")
        implied = meta["epoch"] * per_epoch
        if self.cfg.train.max_steps:
            implied = min(implied, self.cfg.train.max_steps)
        if meta["step"] != implied:
            raise RunError(f"{path}: the checkpoint says step {meta['step']} after {meta['epoch']} epoch(s) of "
                           f"{per_epoch} steps; the step count and the epoch do not belong together")

    def _apply_checkpoint(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
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
        # Checkpoints hold contiguous tensors; fused optimisers walk a parameter and its moments as flat
        # memory, so the moments must have the parameter's layout again (channels_last conv weights).
        for param, moments in self.optimizer.state.items():
            for key, value in moments.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    moments[key] = torch.empty_like(param).copy_(value)
        self.epoch, self.step, self.elapsed = meta["epoch"], meta["step"], meta["elapsed_s"]
        self.images_seen = meta["images_seen"]
        self.schedule.load_state_dict(meta.get("schedule") or {})
        if self.stopper and meta.get("early_stopping"):
            self.stopper.load_state_dict(meta["early_stopping"])
        if self.best and meta.get("best"):
            self.best.load_state_dict(meta["best"])
        self.stopped_early = bool(meta.get("stopped_early"))
        suffix = f".{self.dist.rank}" if self.dist.rank else ""
        if meta.get("world_size", 1) == self.dist.world and f"rng.torch{suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
            if self.device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        else:  # resumed with another number of processes: a fresh, still seeded, stream per rank
            torch.manual_seed(_rank_seed(self.cfg.seed, self.dist.rank, self.step))

    # -- the loop ------------------------------------------------------------------
    def fit(self) -> Run | None:
        cfg, model, d = self.cfg, self.model, self.dist
        epochs = math.ceil(self.total_steps / self.per_epoch)
        feedback = Feedback(self.progress and d.main, cfg.name, self.total_steps, self.step, epochs, self.per_epoch)
        # only rank 0 writes the log; other ranks write to nowhere
        log = open(self.out / METRICS if d.main else os.devnull, "a")  # noqa: SIM115 -- closed in the finally
        board = self._tensorboard() if d.main else None
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        started = time.perf_counter()
        seen_at_start = self.images_seen
        try:
            with feedback, keep_freed_memory():
                while self.step < self.total_steps and not self.stopped_early:
                    order = epoch_order(len(self.splits.train), cfg.seed, self.epoch, self.splits.train)
                    skip = self.step - self.epoch * self.per_epoch
                    sums, epoch_n, epoch_started = {}, 0, time.perf_counter()  # loss, mse_01, kl × images
                    lr = self.optimizer.param_groups[0]["lr"]
                    batches = epoch_batches(order, cfg.train.batch_size, d.world)[skip:]
                    shards = [shard_batch(b, d.rank, d.world) for b in batches]
                    for batch, global_n in zip(ReadAhead(self.splits.train, shards, device=self.device),
                                               map(len, batches), strict=True):
                        x = self.pre(batch, self.device, memory_format=self.memory_format)
                        with self._autocast():
                            out = self.net(corrupt(x, cfg))
                            terms = model.loss(out, x, cfg.train.loss)
                        terms = {**terms, "mse_01": mse_01(out.recon, x, cfg.data.range)}  # on [0, 1], logged
                        self.optimizer.zero_grad(set_to_none=True)
                        # DDP averages gradients over ranks; weighting each rank's mean loss by its share of
                        # the global batch makes that average the gradient of the global batch's mean loss.
                        share = d.world * len(x) / global_n
                        (terms["loss"] * share if share != 1 else terms["loss"]).backward()
                        if cfg.train.grad_clip:  # logged: how often the clip bites shows in the norms
                            terms = {**terms, "grad_norm": torch.nn.utils.clip_grad_norm_(params,
                                                                                            cfg.train.grad_clip)}
                        lr = self.optimizer.param_groups[0]["lr"]
                        self.optimizer.step()
                        self.step += 1
                        self.schedule.after_step(self.step)
                        self.images_seen += global_n
                        values = self._step_values(terms, len(x))
                        record = {"step": self.step, "epoch": self.epoch + 1,
                                  **{k: round(v, 7) for k, v in zip(terms, values, strict=True)}}
                        if not math.isfinite(record["loss"]):
                            raise AelabError(f"training diverged at step {self.step} (loss {record['loss']}); "
                                             f"lower train.lr (now {cfg.train.lr:g})")
                        log.write(json.dumps(record) + "\n")
                        if board:
                            board.add_scalar("loss", record["loss"], self.step)
                        for key in ("loss", "mse_01", "kl"):
                            if key in record:
                                sums[key] = sums.get(key, 0.0) + record[key] * global_n
                        epoch_n += global_n
                        rate = (self.images_seen - seen_at_start) / max(time.perf_counter() - started, 1e-9)
                        feedback.step(self.step, self.epoch + 1, record["loss"], rate)
                        if self.step >= self.total_steps:
                            break
                    self.epoch += 1
                    record = {**self._epoch_record({k: v / max(epoch_n, 1) for k, v in sums.items()}), "lr": lr}
                    improved = self._after_epoch(record)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    if d.main:  # the checkpoint about to be written says these records exist
                        os.fsync(log.fileno())
                        self._write_epoch_logs(record, board)
                    now = time.perf_counter()
                    self.elapsed += now - started
                    started, seen_at_start = now, self.images_seen
                    self._save_checkpoint()
                    feedback.epoch(record, now - epoch_started, improved, self._stop_reason())
        finally:
            log.close()
            if board:
                board.close()
        return self._finish()

    def _after_epoch(self, record: dict[str, Any]) -> bool:
        """The decisions an epoch's metrics drive (every rank takes the same, from all-reduced numbers): the
        plateau schedule, early stopping, and the best weights, written before the checkpoint that records
        them (a kill between the two redoes the epoch, which writes the same weights again). Whether the
        epoch's weights are the new best."""
        self.schedule.after_epoch(record)
        if self.stopper and self.stopper.update(record):
            self.stopped_early = True
        improved = bool(self.best and self.best.update(record))
        if improved and self.dist.main:
            save_tensors(self.out / BEST_WEIGHTS, self.model.state_dict(),
                         metadata=self._weights_metadata(epoch=str(self.epoch)))
        return improved

    def _weights_metadata(self, **extra: str) -> dict[str, str]:
        from aelab.checkpoint import weights_metadata

        return weights_metadata(self.cfg.to_dict(), self.input_shape, self.splits.train.shape, **extra)

    def _stop_reason(self) -> str | None:
        if not self.stopped_early or not self.stopper:
            return None
        c = self.stopper.cfg
        return (f"early stopping: {c.metric} did not improve on {self.stopper.best.value:g} (epoch "
                f"{self.stopper.best.epoch}) for {c.patience} epoch(s); stopped after epoch {self.epoch}")

    def _tensorboard(self) -> Any:
        """A TensorBoard writer when train.log asks for one. On resume it hides the events a killed run logged
        after its checkpoint (purge_step), so the curves show each step once."""
        if "tensorboard" not in self.cfg.train.log:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out / TENSORBOARD), purge_step=self.step + 1 if self.step else None)

    def _write_epoch_logs(self, record: dict[str, Any], board: Any) -> None:
        """metrics.csv (rewritten whole, so a resumed run's file holds each epoch once) and TensorBoard."""
        self.epoch_records.append(record)
        if "csv" in self.cfg.train.log:
            atomic_write(self.out / METRICS_CSV, rows_csv(self.epoch_records))
        if board:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, int | float):
                    board.add_scalar(key, value, record["step"])
            board.flush()

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _step_values(self, terms: dict[str, torch.Tensor], n: int) -> list[float]:
        """The loss terms as floats: this batch's, or the global batch's mean over all ranks."""
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
        if not self.dist.active:
            return values
        means, _ = distributed.weighted_mean(dict(zip(terms, values, strict=True)), n, self.dist)
        return list(means.values())

    def _evaluate(self, data: ImageSet) -> dict[str, float]:
        """Reconstruction metrics over ``data``; with several processes each scores a shard."""
        d = self.dist
        if not d.active:
            return evaluate_model(self.model, self.pre, self._eval_batches(data))
        part = distributed.shard_range(len(data), d.rank, d.world)
        local = evaluate_model(self.model, self.pre, self._eval_batches(data.subset(np.arange(part.start,
                                                                                               part.stop))))
        means, n = distributed.weighted_mean({k: v for k, v in local.items() if k != "n"}, local["n"], d)
        return {**means, "n": n}

    def _epoch_record(self, train: dict[str, float]) -> dict[str, Any]:
        """The epoch's means: ``train_loss`` (the objective, on data.range), ``train_mse_01`` (on [0, 1]),
        ``train_kl`` (a VAE's), then the validation metrics (on [0, 1])."""
        rec: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "train_loss": round(train.get("loss", 0.0), 7),
                               **{f"train_{k}": round(v, 7) for k, v in train.items() if k != "loss"}}
        if self.splits.val is not None:
            val = self._evaluate(self.splits.val)
            rec.update({f"val_{k}": round(v, 6) for k, v in val.items() if k != "n"})
        self.model.train()
        return rec

    def _eval_batches(self, data: ImageSet) -> Iterator[torch.Tensor]:
        return model_batches(data, self.cfg.train.eval_batch_size, self.pre, self.device, self.memory_format)

    def _finish(self) -> Run | None:
        data = self.splits.held_out
        final = self._evaluate(data)
        distributed.run_on_main(lambda: self._write_results(final), self.dist)
        return Run(self.out, device=self.device) if self.dist.main else None

    def _training_options(self) -> dict[str, Any]:
        """The options that shaped the run, for summary.json: what a table of runs compares."""
        t = self.cfg.train
        out: dict[str, Any] = {
            "optimizer": t.optimizer, "lr": t.lr, "weight_decay": t.weight_decay, "grad_clip": t.grad_clip,
            "lr_schedule": t.lr_schedule.model_dump(mode="json"), "final_lr": self.optimizer.param_groups[0]["lr"],
            "early_stopping": t.early_stopping.model_dump(mode="json") if t.early_stopping else None,
            "stopped_early": self.stopped_early,
            "stopped_at_epoch": self.epoch if self.stopped_early else None,
            "keep_best": t.keep_best,
            "best": {**self.best.state_dict(), "file": BEST_WEIGHTS} if self.best and self.best.value is not None
            else None,
            "data_limit": self.cfg.data.limit, "data_limit_mode": self.cfg.data.limit_mode if self.cfg.data.limit
            else None,
            "log": list(t.log),
        }
        return out

    def _write_results(self, final: dict[str, float]) -> None:
        """Weights, then summary.json, then the checkpoint's removal, each durable before the next:
        until summary.json is on disk the checkpoint stays, so a kill anywhere here leaves a run that
        --resume finishes (from the last checkpoint, at the last step: it trains nothing again)."""
        save_tensors(self.out / WEIGHTS, self.model.state_dict(), metadata=self._weights_metadata())
        records = read_log(self.out / METRICS)
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
            "world_size": self.dist.world,
            "global_batch_size": self.cfg.train.batch_size,
            "per_rank_batch_size": self.rank_batch_size,
            "lr_scaling": "none",
            "backend": self.dist.backend,
            "precision": "bf16" if self.amp_dtype == torch.bfloat16 else "fp32",
            "compile": self.cfg.train.compile,
            **self._training_options(),
            "channels_last": self.memory_format == torch.channels_last,
            "final_train_loss": last_epoch[-1]["train_loss"] if last_epoch else None,
            "final_train_mse_01": last_epoch[-1].get("train_mse_01") if last_epoch else None,
            "final_train_kl": last_epoch[-1].get("train_kl") if last_epoch else None,
            "mse": final["mse"], "psnr": final["psnr"], "ssim": final["ssim"],
            "units": SUMMARY_UNITS,
            "wall_time_s": round(self.elapsed, 3),
            "images_per_s": round(self.images_seen / max(self.elapsed, 1e-9), 1),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "aelab": aelab.__version__,
            "python": platform.python_version(),
        }
        write_json(self.out / SUMMARY, summary)
        for name in (CHECKPOINT, CHECKPOINT_META):
            remove(self.out / name)


def default_out(cfg: Config) -> Path:
    """``runs/<name>``: ``name`` is one path component (checked by the Config), so this stays under runs/."""
    return Path("runs") / cfg.name


def check_out_folder(out: Path) -> None:
    """Refuse an --out that can never become a run folder, before any data is loaded."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; choose another --out")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"--out {out}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise RunError(f"--out {out}: cannot create folders in {parent} (permission denied)")
            return


def interrupted_at(trainer: Trainer) -> str:
    """Where an interrupted run stopped and the exact command that continues it (or starts it again)."""
    out = trainer.out
    epoch = min(trainer.epoch + 1, trainer.cfg.train.epochs)
    where = f"interrupted at step {trainer.step} of {trainer.total_steps} (epoch {epoch})"
    command = f"aelab train {shlex.quote(str(out / CONFIG))} --out {shlex.quote(str(out))}"
    try:
        meta, _ = read_checkpoint(out / CHECKPOINT, tensors=False)
    except RunError:
        return (f"{where}, before the first checkpoint (one is written after each epoch); start again with: "
                f"{command} --force")
    return (f"{where}; {out} keeps the checkpoint of epoch {meta.get('epoch')} (step {meta.get('step')}); "
            f"resume with: {command} --resume")


def train(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
          overrides: list[str] | None = None, resume: bool = False, force: bool = False,
          progress: bool | None = None) -> Run | None:
    """Train a model from a config (object, dict or YAML path) into a Run folder and return the Run.

    ``progress`` prints a line per epoch (train loss, validation MSE/PSNR/SSIM, lr, time) to stderr, with a
    progress bar in a terminal or Jupyter; None: on when someone is watching (``interactive()``).

    ``resume`` continues an interrupted run from its last epoch checkpoint;
    ``force`` replaces a Run folder (finished or not), never a folder holding
    anything else (``aelab.runfolder.check_replaceable``). ``out`` is created
    (its last level only); without it the run goes to ``runs/<name>``. Launched
    by torchrun, every process trains its shard and rank 0 writes the Run;
    ranks above 0 return None."""
    cfg = as_config(config, overrides)
    default = not out
    out = Path(out) if out else default_out(cfg)
    check_out_folder(out)
    d = distributed.setup(resolve_device(cfg.train.device))
    try:
        def clear() -> None:
            if default:
                runfolder.make_folder(out.parent)  # runs/ is aelab's own default place
            if force and not resume:
                runfolder.replace_folder(out, runfolder.RUN)

        distributed.run_on_main(clear, d)
        trainer = Trainer(cfg, out, resume=resume, progress=progress, dist=d)
        try:
            return trainer.fit()
        except BaseException as exc:
            # A failed run must not look finished. Once the checkpoint is gone the summary is the run's
            # only record of having finished, so it stays (a Ctrl-C there lands after the work is done).
            if d.main and (out / CHECKPOINT).exists():
                (out / SUMMARY).unlink(missing_ok=True)
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
                raise TrainingInterrupted(interrupted_at(trainer)) from exc
            raise
    finally:
        distributed.teardown(d)
