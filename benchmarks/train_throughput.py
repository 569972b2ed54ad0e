#!/usr/bin/env python3
"""Training throughput: aelab's loop against the course-notebook baseline, side by side.

For the deep fcn (12288-1024-256-64-10) and the course conv autoencoder
(47,355 parameters), on random 64×64×3 uint8 images with batch 128, it runs
``shared/baselines/hw8_style_train.py`` (kept as it is) and aelab's own
Trainer on the same data, alternating them ``--repeat`` times and keeping each
one's best, and prints images/s, the ratio, and for the fcn the share of the
matmul-bound limit: the time this machine's BLAS needs for exactly the matrix
products of one training step (forward, weight gradients, input gradients
except the first layer's), measured here with ``torch.mm`` on the same shapes
between the runs, best of all measurements.

    python benchmarks/train_throughput.py [--steps 40] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT.parent / "shared" / "baselines" / "hw8_style_train.py"
MODELS = {
    "fcn": {"type": "fcn", "hidden": [1024, 256, 64], "latent_dim": 10},
    "conv": {"type": "conv", "channels": [12, 24, 48], "kernel": 4},
}


def baseline(model: str, n: int, steps: int, script: Path) -> float:
    out = subprocess.run([sys.executable, str(script), "--model", model, "--n", str(n), "--batch", "128",
                          "--steps", str(steps), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def aelab_rate(model: str, data: Path, steps: int, out: Path) -> float:
    """images/s of aelab's Trainer, from step-end times (two warm-up steps not timed, like the baseline)."""
    from aelab.train import Trainer

    cfg = config_from_dict({"name": f"bench-{model}", "data": {"source": f"npy:{data}", "val_fraction": 0},
                            "model": MODELS[model], "train": {"epochs": 1, "max_steps": steps + 2,
                                                              "batch_size": 128}})
    trainer = Trainer(cfg, out, progress=False)
    ends: list[float] = []
    trainer.optimizer.register_step_post_hook(lambda *_: ends.append(time.perf_counter()))
    trainer.fit()
    if len(ends) != steps + 2:  # the data must hold every step in one epoch (no checkpoint inside the timing)
        raise SystemExit(f"aelab ran {len(ends)} steps, not {steps + 2}: pass a larger --n")
    return 128 * (len(ends) - 2) / (ends[-1] - ends[1])


def matmul_limit(batch: int = 128, rounds: int = 3) -> dict[str, float]:
    """images/s if one fcn training step cost only its matrix products at this machine's measured speed.

    Each product writes into a preallocated output (no allocator or page-fault time) and keeps its
    fastest of ``rounds`` timings, so a moment of load from elsewhere does not lower the limit.
    """
    sizes = [12288, 1024, 256, 64, 10, 64, 256, 1024, 12288]
    shapes = []
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes.append((batch, k, m))  # forward: x[b,k] @ W.T[k,m]
        shapes.append((m, batch, k))  # weight gradient: g.T[m,b] @ x[b,k]
        if i > 0:
            shapes.append((batch, m, k))  # input gradient: g[b,m] @ W[m,k]
    total, flops = 0.0, 0.0
    for a, b, c in shapes:
        x, y, out = torch.randn(a, b), torch.randn(b, c), torch.empty(a, c)
        for _ in range(3):
            torch.mm(x, y, out=out)
        reps = max(3, int(2e9 / (2 * a * b * c)))
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(reps):
                torch.mm(x, y, out=out)
            best = min(best, (time.perf_counter() - start) / reps)
        total += best
        flops += 2 * a * b * c
    return {"images_per_s": batch / total, "gflops": flops / total / 1e9, "gflop_per_step": flops / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="random images (default: enough for every step in one "
                   "epoch, 128 × (steps + 2))")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--models", default="fcn,conv")
    p.add_argument("--baseline", type=Path, default=BASELINE)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not a.baseline.exists():
        sys.exit(f"baseline not found: {a.baseline} (pass --baseline PATH)")
    a.n = a.n or 128 * (a.steps + 2)
    images = np.random.default_rng(0).integers(0, 256, size=(a.n, 64, 64, 3), dtype=np.uint8)
    result: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps,
                                 "batch": 128, "n": a.n, "aelab": aelab.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images.npy"
        np.save(data, images)
        for model in a.models.split(","):
            base, ours, limits = [], [], []
            for r in range(a.repeat):  # interleaved, so a slow spell of this shared machine hits all three
                base.append(baseline(model, a.n, a.steps, a.baseline))
                ours.append(aelab_rate(model, data, a.steps, Path(tmp) / f"{model}-{r}"))
                if model == "fcn":
                    limits.append(matmul_limit())
            row = {"baseline_images_per_s": round(max(base), 1), "aelab_images_per_s": round(max(ours), 1),
                   "ratio": round(max(ours) / max(base), 2), "baseline_all": [round(v, 1) for v in base],
                   "aelab_all": [round(v, 1) for v in ours]}
            if model == "fcn":
                limit = max(limits, key=lambda v: v["images_per_s"])
                row["matmul_limit_images_per_s"] = round(limit["images_per_s"], 1)
                row["matmul_gflops"] = round(limit["gflops"], 1)
                row["share_of_matmul_limit"] = round(max(ours) / limit["images_per_s"], 3)
            result[model] = row
    if a.json:
        print(json.dumps(result, indent=2))
        return
    for model in a.models.split(","):
        row = result[model]
        extra = (f", {row['share_of_matmul_limit']:.0%} of the matmul-bound {row['matmul_limit_images_per_s']:.0f}"
                 f" img/s" if "share_of_matmul_limit" in row else "")
        print(f"{model:5s} baseline {row['baseline_images_per_s']:7.1f} img/s   aelab {row['aelab_images_per_s']:7.1f}"
              f" img/s   ratio {row['ratio']:.2f}×{extra}")


if __name__ == "__main__":
    main()
