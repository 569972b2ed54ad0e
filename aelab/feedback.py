"""What a training run tells the person watching: a line per epoch, and a progress bar in a
terminal or a notebook.

Kept apart from the loop so ``aelab.train`` reads as the loop; nothing here changes
what is trained.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from aelab.errors import AelabError


def check_tensorboard() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise AelabError("train.log asks for tensorboard, which is not installed; install it with "
                         "pip install 'aelab[tensorboard]' (or pip install tensorboard), or drop it from train.log")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (or Colab): IPython already imported and its shell a kernel's.
    Never imports IPython itself."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    kind = type(shell)
    return shell is not None and (kind.__name__ == "ZMQInteractiveShell" or "google.colab" in kind.__module__)


def interactive() -> bool:
    """Whether someone is watching: stderr is a terminal, or this is a Jupyter kernel."""
    if in_notebook():
        return True
    from rich.console import Console

    return Console(stderr=True).is_terminal


def epoch_line(record: dict[str, Any], epochs: int, seconds: float, best: bool = False) -> str:
    """One epoch in a line: ``epoch 3/10  step 24  train_loss 0.0852  train_mse_01 0.0213  val_mse 0.0184  ...
    1.2 s``; the keys of metrics.jsonl (``aelab.logunits``): the loss is the objective on data.range, the MSEs
    are on [0, 1]."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"step {record['step']}", f"train_loss {record['train_loss']:.5f}"]
    for key, fmt in (("train_mse_01", ".5f"), ("train_kl", ".4g"), ("val_mse", ".5f"), ("val_psnr", ".2f"),
                     ("val_ssim", ".4f"), ("lr", ".3g")):
        if key in record:
            parts.append(f"{key} {record[key]:{fmt}}" + (" dB" if key == "val_psnr" else ""))
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts) + ("  (best)" if best else "")


class NotebookBar:
    """A progress bar in a Jupyter output, without widgets: one display (HTML for Jupyter, text for other
    front ends) updated in place through its display handle, at most every ``every`` seconds, with the
    epoch lines listed under it."""

    def __init__(self, name: str, total: int, done: int, epochs: int, every: float = 0.25):
        from IPython.display import display

        self.name, self.total, self.epochs, self.every = name, total, epochs, every
        self.state: dict[str, Any] = {"step": done, "epoch": 1, "loss": float("nan"), "rate": 0.0}
        self.lines: list[str] = []
        self.started, self.drawn = time.perf_counter(), 0.0
        self.handle = display(self.bundle(), raw=True, display_id=True)

    def text(self) -> str:
        s = self.state
        elapsed = time.perf_counter() - self.started
        return (f"{self.name}  epoch {s['epoch']}/{self.epochs}  {s['step']}/{self.total}  loss {s['loss']:.5f}  "
                f"{s['rate']:.0f} img/s  {elapsed:.0f} s")

    def bundle(self) -> dict[str, str]:
        from html import escape

        pct = 100.0 * self.state["step"] / max(self.total, 1)
        bar = (f'<div style="width:24em;height:0.8em;background:#e5e7eb;border-radius:3px;margin:2px 0">'
               f'<div style="width:{pct:.1f}%;height:100%;background:#2563eb;border-radius:3px"></div></div>')
        lines = "".join(f"{escape(line)}\n" for line in self.lines)
        html = (f'<div class="aelab-progress" style="font-family:monospace;font-size:12px">{bar}'
                f'{escape(self.text())}<pre style="margin:2px 0">{lines}</pre></div>')
        return {"text/plain": "\n".join([self.text(), *self.lines]), "text/html": html}

    def update(self, force: bool = False, **state: Any) -> None:
        self.state.update(state)
        now = time.perf_counter()
        if force or now - self.drawn >= self.every or self.state["step"] >= self.total:
            self.drawn = now
            self.handle.update(self.bundle(), raw=True)

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.update(force=True)


class Feedback:
    """What a person watching training sees: a line per epoch, and a progress bar (step, epoch, loss, speed)
    where one can be redrawn in place -- a terminal (rich) or a Jupyter output (``NotebookBar``). In a plain
    log (stderr redirected) only the epoch lines are printed, so the log does not fill with bar frames."""

    def __init__(self, enabled: bool, name: str, total: int, done: int, epochs: int, per_epoch: int):
        self.enabled, self.epochs, self.bar, self.task, self.notebook = enabled, epochs, None, None, None
        if enabled and total > done and in_notebook():
            self.notebook = NotebookBar(name, total, done, epochs)
        elif enabled and total > done and interactive():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), TextColumn("epoch {task.fields[epoch]}/"
                                f"{epochs}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[rate]:.0f} img/s"),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task(name, total=total, completed=done, loss=float("nan"), rate=0.0,
                                          epoch=done // per_epoch + 1)

    def __enter__(self) -> Feedback:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def step(self, step: int, epoch: int, loss: float, rate: float) -> None:
        if self.notebook:
            self.notebook.update(step=step, epoch=epoch, loss=loss, rate=rate)
        elif self.bar:
            self.bar.update(self.task, completed=step, epoch=epoch, loss=loss, rate=rate)

    def epoch(self, record: dict[str, Any], seconds: float, best: bool, stop: str | None) -> None:
        if not self.enabled:
            return
        for line in (epoch_line(record, self.epochs, seconds, best), stop):
            if line and self.notebook:
                self.notebook.line(line)
            elif line and self.bar:
                self.bar.console.print(line, markup=False, highlight=False)
            elif line:
                print(line, file=sys.stderr, flush=True)
