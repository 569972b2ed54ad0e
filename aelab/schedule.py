"""What the training loop decides from step counts and epoch metrics: the learning rate, early stopping
and which epoch's weights are the best.

Each object's whole state is plain JSON (``state_dict`` / ``load_state_dict``), so it travels in the
checkpoint's metadata and a resumed run makes exactly the decisions the uninterrupted one made.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aelab.config import EarlyStoppingConfig, LRScheduleConfig, higher_is_better


class Schedule:
    """The learning rate of every step.

    ``warmup_steps``, ``constant``, ``cosine`` and ``step`` are a function of the step count alone (one
    ``LambdaLR``, stepped after every optimiser step); ``plateau`` is ``ReduceLROnPlateau``, stepped once
    per epoch with the watched metric, from the end of warmup on (before it, warmup sets the rate).
    ``step_size`` counts epochs; ``cosine`` reaches ``min_lr`` at the run's last step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: LRScheduleConfig, lr: float, total_steps: int,
                 per_epoch: int):
        self.cfg, self.lr, self.total, self.per_epoch = cfg, lr, total_steps, per_epoch
        self.per_step = None
        if cfg.type in {"cosine", "step"} or cfg.warmup_steps:
            self.per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: self.factor(done))
        self.plateau = None
        if cfg.type == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if higher_is_better(cfg.metric) else "min", factor=cfg.factor,
                patience=cfg.patience, min_lr=cfg.min_lr, threshold=cfg.min_delta, threshold_mode="abs")

    def factor(self, done: int) -> float:
        """The multiple of ``train.lr`` for the step after ``done`` steps (plateau cuts aside)."""
        c, warm = self.cfg, self.cfg.warmup_steps
        if done < warm:
            return (done + 1) / warm
        if c.type == "cosine":
            t = min(1.0, (done - warm) / max(self.total - 1 - warm, 1))
            floor = c.min_lr / self.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if c.type == "step":
            return c.gamma ** (done // (c.step_size * self.per_epoch))
        return 1.0

    def after_step(self, done: int) -> None:
        """Set the rate for the next step; ``done`` optimiser steps are behind."""
        if self.per_step is not None and (self.plateau is None or done <= self.cfg.warmup_steps):
            self.per_step.step()

    def after_epoch(self, record: dict[str, Any]) -> None:
        """Let a plateau schedule see the epoch's metric (after warmup only)."""
        if self.plateau is not None and record["step"] >= self.cfg.warmup_steps:
            self.plateau.step(record[self.cfg.metric])

    def state_dict(self) -> dict[str, Any]:
        return {name: s.state_dict() for name, s in (("per_step", self.per_step), ("plateau", self.plateau))
                if s is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, s in (("per_step", self.per_step), ("plateau", self.plateau)):
            if s is not None and name in state:
                s.load_state_dict(state[name])


class Best:
    """The best value a metric has reached, and when. ``min_delta`` is how much better a new value must be."""

    def __init__(self, metric: str, min_delta: float = 0.0):
        self.metric, self.min_delta, self.higher = metric, min_delta, higher_is_better(metric)
        self.value: float | None = None
        self.step = self.epoch = 0

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value + self.min_delta if self.higher else value < self.value - self.min_delta

    def update(self, record: dict[str, Any]) -> bool:
        """Take the epoch record; whether it is the new best."""
        value = record[self.metric]
        if not self.improves(value):
            return False
        self.value, self.step, self.epoch = value, record["step"], record["epoch"]
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "step": self.step, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.step, self.epoch = state["value"], state["step"], state["epoch"]


class EarlyStopping:
    """Stop once ``patience`` epochs in a row did not improve the metric by more than ``min_delta``."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg, self.best, self.bad_epochs = cfg, Best(cfg.metric, cfg.min_delta), 0

    def update(self, record: dict[str, Any]) -> bool:
        """Take the epoch record; whether training should stop after it."""
        self.bad_epochs = 0 if self.best.update(record) else self.bad_epochs + 1
        return self.bad_epochs >= self.cfg.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best.state_dict(), "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best.load_state_dict(state["best"])
        self.bad_epochs = state["bad_epochs"]
