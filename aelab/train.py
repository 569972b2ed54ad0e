"""The training loop. It knows the model only through ``forward`` and ``loss``.

Data stays uint8 until a batch is drawn; each batch is converted and
preprocessed as one tensor op. The epoch order is a permutation seeded by
(seed, epoch), so a resumed run draws exactly the batches it would have.
Checkpoints (weights, optimiser state, RNG state) are written atomically each
epoch; ``summary.json`` is written last and marks the run finished.

Under torchrun the same loop runs in every process (see ``aelab.distributed``):
each rank takes its part of every global batch, DistributedDataParallel
averages the gradients, and rank 0 alone writes the folder and the log.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aelab
from aelab import distributed
from aelab.allocator import keep_freed_memory
from aelab.config import Config, as_config
from aelab.data.batches import ReadAhead, epoch_batches, epoch_order, shard_batch, steps_per_epoch
from aelab.data.imageset import ImageSet
from aelab.data.splits import fit_preprocess, make_splits
from aelab.data.transforms import Preprocess
from aelab.errors import AelabError, RunError, TrainingInterrupted
from aelab.io import atomic_write, load_tensors, save_tensors, write_json
from aelab.limits import check_training
from aelab.models import Autoencoder, create_model
from aelab.models.base import memory_format_for
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

    def __init__(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool = True,
                 dist: distributed.Dist | None = None):
        cfg = fit_preprocess(cfg)  # `minmax: fit` steps get their values from the training split
        self.cfg, self.out, self.progress = cfg, out, progress
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
        if resume and (out / CHECKPOINT_META).exists():
            return self._read_checkpoint()
        if resume and (out / SUMMARY).exists():
            raise RunError(f"{out}: the run is already finished; nothing to resume")
        if out.exists() and any(out.iterdir()):
            if (out / SUMMARY).exists() or (out / CHECKPOINT_META).exists() or (out / CONFIG).exists():
                hint = "--resume to continue it, " if (out / CHECKPOINT_META).exists() else ""
                raise RunError(f"run folder {out} already holds a run; use {hint}--force to replace it, "
                               f"or another --out")
            raise RunError(f"{out} exists and is not empty; choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / CONFIG, self.cfg.to_yaml())
            (out / METRICS).write_text("")
        except OSError as exc:
            raise RunError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
        return None

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
        save_tensors(self.out / CHECKPOINT, tensors)
        write_json(self.out / CHECKPOINT_META, {
            "epoch": self.epoch, "step": self.step, "elapsed_s": self.elapsed, "images_seen": self.images_seen,
            "world_size": self.dist.world,
            "param_groups": opt["param_groups"], "optim_scalars": scalars, "config": self.cfg.to_dict()})

    def _read_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = json.loads((self.out / CHECKPOINT_META).read_text())
        if meta.get("config") != self.cfg.to_dict():
            raise RunError(f"{self.out}: --resume with a config that differs from the one the run started with")
        tensors = load_tensors(self.out / CHECKPOINT)
        # drop log lines written after the checkpoint (they will be written again)
        lines = (self.out / METRICS).read_text().splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= meta["step"]]
        atomic_write(self.out / METRICS, "".join(ln + "\n" for ln in kept))
        return meta, tensors

    def _apply_checkpoint(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        written_by = meta.get("world_size", 1)
        if written_by != self.dist.world:  # fine while an epoch keeps its number of steps (the short last batch)
            before = steps_per_epoch(len(self.splits.train), self.cfg.train.batch_size, written_by)
            if before != self.per_epoch:
                raise RunError(f"{self.out}: the checkpoint was written by {written_by} process(es), {before} steps "
                               f"per epoch; {self.dist.world} process(es) take {self.per_epoch}; resume with "
                               f"{written_by} process(es)")
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
        bar = _progress(self.progress and d.main, self.total_steps, self.step)
        # only rank 0 writes the log; other ranks write to nowhere
        log = open(self.out / METRICS if d.main else os.devnull, "a")  # noqa: SIM115 -- closed in the finally
        model.train()
        started = time.perf_counter()
        seen_at_start = self.images_seen
        try:
            with bar or nullcontext(), keep_freed_memory():
                task = bar.add_task(self.cfg.name, total=self.total_steps, completed=self.step, loss=float("nan"),
                                      rate=0.0) if bar else None
                while self.step < self.total_steps:
                    order = epoch_order(len(self.splits.train), cfg.seed, self.epoch, self.splits.train)
                    skip = self.step - self.epoch * self.per_epoch
                    epoch_loss, epoch_n = 0.0, 0
                    batches = epoch_batches(order, cfg.train.batch_size, d.world)[skip:]
                    shards = [shard_batch(b, d.rank, d.world) for b in batches]
                    for batch, global_n in zip(ReadAhead(self.splits.train, shards, device=self.device),
                                               map(len, batches), strict=True):
                        x = self.pre(batch, self.device, memory_format=self.memory_format)
                        with self._autocast():
                            out = self.net(corrupt(x, cfg))
                            terms = model.loss(out, x, cfg.train.loss)
                        self.optimizer.zero_grad(set_to_none=True)
                        # DDP averages gradients over ranks; weighting each rank's mean loss by its share of
                        # the global batch makes that average the gradient of the global batch's mean loss.
                        share = d.world * len(x) / global_n
                        (terms["loss"] * share if share != 1 else terms["loss"]).backward()
                        self.optimizer.step()
                        self.step += 1
                        self.images_seen += global_n
                        values = self._step_values(terms, len(x))
                        record = {"step": self.step, "epoch": self.epoch + 1,
                                  **{k: round(v, 7) for k, v in zip(terms, values, strict=True)}}
                        if not math.isfinite(record["loss"]):
                            raise AelabError(f"training diverged at step {self.step} (loss {record['loss']}); "
                                             f"lower train.lr (now {cfg.train.lr:g})")
                        log.write(json.dumps(record) + "\n")
                        epoch_loss += record["loss"] * global_n
                        epoch_n += global_n
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

    def _epoch_record(self, train_loss: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "train_loss": round(train_loss, 7)}
        if self.splits.val is not None:
            val = self._evaluate(self.splits.val)
            rec.update({f"val_{k}": round(v, 6) for k, v in val.items() if k != "n"})
        self.model.train()
        return rec

    def _eval_batches(self, data: ImageSet) -> Iterator[torch.Tensor]:
        size = self.cfg.train.eval_batch_size
        chunks = [slice(start, start + size) for start in range(0, len(data), size)]
        for batch in ReadAhead(data, chunks, device=self.device):
            yield self.pre(batch, self.device, memory_format=self.memory_format)

    def _finish(self) -> Run | None:
        data = self.splits.held_out
        final = self._evaluate(data)
        distributed.run_on_main(lambda: self._write_results(final), self.dist)
        return Run(self.out, device=self.device) if self.dist.main else None

    def _write_results(self, final: dict[str, float]) -> None:
        save_tensors(self.out / WEIGHTS, self.model.state_dict(), metadata={"format": "pt", "aelab": aelab.__version__})
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
            "world_size": self.dist.world,
            "global_batch_size": self.cfg.train.batch_size,
            "per_rank_batch_size": self.rank_batch_size,
            "lr_scaling": "none",
            "backend": self.dist.backend,
            "precision": "bf16" if self.amp_dtype == torch.bfloat16 else "fp32",
            "compile": self.cfg.train.compile,
            "channels_last": self.memory_format == torch.channels_last,
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
        meta = json.loads((out / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return (f"{where}, before the first checkpoint (one is written after each epoch); start again with: "
                f"{command} --force")
    return (f"{where}; {out} keeps the checkpoint of epoch {meta.get('epoch')} (step {meta.get('step')}); "
            f"resume with: {command} --resume")


def train(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
          overrides: list[str] | None = None, resume: bool = False, force: bool = False,
          progress: bool = False) -> Run | None:
    """Train a model from a config (object, dict or YAML path) into a Run folder and return the Run.

    ``resume`` continues an interrupted run from its last epoch checkpoint;
    ``force`` replaces whatever ``out`` holds. Launched by torchrun, every
    process trains its shard and rank 0 writes the Run; ranks above 0 return None."""
    cfg = as_config(config, overrides)
    out = Path(out) if out else default_out(cfg)
    check_out_folder(out)
    d = distributed.setup(resolve_device(cfg.train.device))
    try:
        if force and not resume:
            distributed.run_on_main(lambda: shutil.rmtree(out) if out.exists() else None, d)
        trainer = Trainer(cfg, out, resume=resume, progress=progress, dist=d)
        try:
            return trainer.fit()
        except BaseException as exc:
            # A failed run must not look finished: summary.json is only written on success.
            if d.main:
                (out / SUMMARY).unlink(missing_ok=True)
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
                raise TrainingInterrupted(interrupted_at(trainer)) from exc
            raise
    finally:
        distributed.teardown(d)
