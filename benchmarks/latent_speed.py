"""Latent editing is meant to be interactive. Targets on the CPU, deep fcn on 64×64×3, model loaded once:

* encode + 8 edits + decode + figure  < 1 s
* a 10×9 traversal grid (computed and drawn)  < 2 s

Usage::

    .venv/bin/python benchmarks/latent_speed.py [--run RUN] [--repeat 5] [--threads N] [--json]

Without ``--run`` it trains the deep-fcn preset for one epoch on 512 built-in faces first (the
weights do not matter for speed). Each measurement is the median of ``--repeat`` calls after one
warm-up call (which also fills the per-run code statistics cache), reported as wall time and as
the process's CPU time: on a busy shared machine the wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aelab.config import load_config
from aelab.demo import preset
from aelab.figures.latent import edit_figure, traversal_figure
from aelab.latent import edit, traverse
from aelab.run import load_run
from aelab.train import train

EDITS = ["0*=2", "2+=5", "3=2,9=8", "all+=0.5", "-1+=20", "5-=1.5", "4:8*=0", "1/=2"]


def measure(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    fn()  # warm-up: imports, caches
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "best_wall_s": min(walls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="A trained deep fcn run on 64×64×3 images.")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    if args.run is None:
        tmp = tempfile.TemporaryDirectory(prefix="aelab-bench-")
        cfg = load_config(preset("deep-fcn"), ["data.source=builtin:faces?n=512", "train.epochs=1"])
        args.run = Path(tmp.name) / "deep-fcn"
        train(cfg, args.run, progress=False)
    run = load_run(args.run)
    if run.image_shape != (64, 64, 3):
        sys.exit(f"{args.run}: images are {run.image_shape}, the target is stated for 64×64×3")
    face = run.splits.full.by_ids([0])
    out = Path(tempfile.mkdtemp(prefix="aelab-bench-fig-"))
    dims = list(range(min(10, run.latent_size)))
    rows = {
        "edit: encode + 8 edits + decode": measure(lambda: edit(run, face, EDITS), args.repeat),
        "edit + figure (target < 1 s)": measure(lambda: edit_figure(edit(run, face, EDITS), out / "e.png"),
                                                args.repeat),
        f"traverse {len(dims)}×9: decode": measure(lambda: traverse(run, face, dims=dims, steps=9), args.repeat),
        f"traverse {len(dims)}×9 + figure (target < 2 s)": measure(
            lambda: traversal_figure(traverse(run, face, dims=dims, steps=9), out / "t.png"), args.repeat),
        "traverse top 8 (ranked) + figure": measure(
            lambda: traversal_figure(traverse(run, face, top=8, steps=9), out / "t8.png"), args.repeat),
    }
    env = {"run": str(args.run), "parameters": run.summary["parameters"], "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({**env, "results": rows}, indent=2))
    else:
        print(" ".join(f"{k}={v}" for k, v in env.items()))
        for name, r in rows.items():
            print(f"{name:45s} wall {r['wall_s']:.3f} s (best {r['best_wall_s']:.3f})  cpu {r['cpu_s']:.3f} s")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
