"""Scaling: training images/s with 1 process vs 2 torchrun processes on the CPU, and on a GPU when there is one.

Usage::

    .venv/bin/python benchmarks/scaling.py [--steps 30] [--models deep-fcn,course-conv] [--gpu-steps 300] [--json]

Each measurement is a real ``aelab train`` in a fresh process (``torchrun --standalone
--nproc_per_node=2 -m aelab train`` for two), on ``builtin:faces?n=4096`` (64×64×3) with the
preset's global batch of 128, no validation split and ``train.max_steps`` steps; the number is
the run's own ``summary.json`` ``images_per_s`` (images of the global batch per second of the
training loop: start-up, data generation and the final evaluation are not in it). The CPU rows:

* 1 process, all cores as intra-op threads (the default),
* 1 process, 1 thread (what each of the two processes gets: torchrun sets OMP_NUM_THREADS=1),
* 2 processes × 1 thread, gloo all-reduce of the gradients every step.

With CUDA the GPU rows are fp32, bf16 autocast (``precision: auto``) and bf16 + ``torch.compile``
(compilation time included: use more ``--gpu-steps`` to amortise it), with the GPU's name.
A last section times ``folder:`` decoding (2,000 PNGs) with 1 and 2 worker processes.
On a shared machine wall-clock rates depend on what else runs; run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = ROOT / "aelab" / "configs"


def train_rate(model: str, steps: int, procs: int = 1, sets: list[str] | None = None) -> dict:
    """images/s of ``steps`` training steps of the preset ``model`` (from its summary.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", str(CONFIGS / f"{model}.yaml"), "--out", f"{tmp}/run", "--json",
                "--set", "data.source=builtin:faces?n=4096", "--set", "data.val_fraction=0",
                "--set", "train.epochs=1", "--set", f"train.max_steps={steps}"]
        for s in sets or []:
            args += ["--set", s]
        if procs == 1:
            cmd = [str(BIN / "python"), "-m", "aelab", *args]
        else:
            cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={procs}", "-m", "aelab", *args]
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ})
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
        s = json.loads(out.stdout)
    return {"images_per_s": s["images_per_s"], "train_s": s["wall_time_s"], "steps": s["steps"],
            "world_size": s["world_size"], "threads": s["threads"], "precision": s["precision"],
            "compile": s["compile"], "device": s["device"], "process_s": round(time.perf_counter() - started, 1)}


def folder_rates(n: int = 2000) -> dict:
    from PIL import Image

    from aelab.data import pack

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(f"{tmp}/{i:05d}.png")
        files = pack.list_image_files(Path(tmp))
        out = {}
        for workers in (1, 2):
            started = time.perf_counter()
            pack.decode_files(files, workers=workers)
            out[f"{workers}_workers_images_per_s"] = round(n / (time.perf_counter() - started), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="CPU training steps per measurement")
    ap.add_argument("--gpu-steps", type=int, default=300)
    ap.add_argument("--models", default="deep-fcn,course-conv")
    ap.add_argument("--no-folder", action="store_true", help="skip the folder decoding section")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results: dict = {"cpu_cores": cores, "torch": torch.__version__, "cpu": {}, "gpu": None}
    for model in args.models.split(","):
        results["cpu"][model] = {
            "1 process, default threads": train_rate(model, args.steps),
            "1 process, 1 thread": train_rate(model, args.steps, sets=["train.threads=1"]),
            "2 processes x 1 thread (gloo)": train_rate(model, args.steps, procs=2),
        }
    if torch.cuda.is_available():
        results["gpu"] = {"name": torch.cuda.get_device_name(0), "models": {}}
        for model in args.models.split(","):
            results["gpu"]["models"][model] = {
                "fp32": train_rate(model, args.gpu_steps, sets=["train.device=cuda", "train.precision=fp32"]),
                "bf16 (auto)": train_rate(model, args.gpu_steps, sets=["train.device=cuda"]),
                "bf16 + compile": train_rate(model, args.gpu_steps, sets=["train.device=cuda", "train.compile=true"]),
            }
    if not args.no_folder:
        results["folder_decode_2000_png"] = folder_rates()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"CPU ({cores} cores), torch {torch.__version__}")
    for model, rows in results["cpu"].items():
        for label, r in rows.items():
            print(f"  {model:12s} {label:32s} {r['images_per_s']:9.1f} img/s   ({r['steps']} steps, {r['train_s']} s)")
    if results["gpu"]:
        print(f"GPU: {results['gpu']['name']}")
        for model, rows in results["gpu"]["models"].items():
            for label, r in rows.items():
                print(f"  {model:12s} {label:32s} {r['images_per_s']:9.1f} img/s   ({r['steps']} steps)")
    else:
        print("GPU: none on this machine (no GPU rows)")
    if "folder_decode_2000_png" in results:
        f = results["folder_decode_2000_png"]
        print(f"folder decode (2,000 64×64 PNGs): 1 worker {f['1_workers_images_per_s']:.0f} img/s, "
              f"2 workers {f['2_workers_images_per_s']:.0f} img/s")


if __name__ == "__main__":
    main()
