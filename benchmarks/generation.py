"""Generation speed. Targets on the CPU, demo-sized models (deep fcn and conv VAE on 64×64×3):

* augmentation: > 2,000 variants/s for the deep fcn (encode, noise, decode; no figure)
* 64 prior samples from the VAE with their figure  < 2 s
* ``aelab evaluate --quality`` on the quick demo (150 held-out images) < 20 s, feature net training included

Usage::

    .venv/bin/python benchmarks/generation.py --ae RUN --vae RUN [--threads N] [--json]

Defaults are the quick demo's runs under ``runs/demo`` (``aelab demo --quick``). Each
measurement reports wall time and the process's CPU time: on a busy shared machine the wall
time includes waiting for a core. The quality measurement deletes the runs' cached feature
nets first so that it includes training one (and copying it to the second run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aelab.codenoise import augment
from aelab.figures.generate import samples_figure
from aelab.generate import sample
from aelab.quality import generation_quality
from aelab.run import load_run


def timed(fn: Callable[[], object]) -> tuple[object, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", default="runs/demo/deep-fcn")
    ap.add_argument("--vae", default="runs/demo/conv-vae")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ae, vae = load_run(args.ae), load_run(args.vae)
    results: dict[str, dict[str, float]] = {}

    n = min(400, len(ae.splits.full))
    ids = np.arange(n)
    augment(ae, ae.splits.full.by_ids(ids[:8]), 2)  # warm-up
    aug, t = timed(lambda: augment(ae, ae.splits.full.by_ids(ids), variants=5, sigma=0.5, seed=0))
    results["augment"] = {**t, "variants": n * 5, "variants_per_s_wall": round(n * 5 / t["wall_s"], 1)}

    out = Path(vae.figures / "bench_samples.png")
    _, t = timed(lambda: samples_figure(sample(vae, 64, seed=0), out, vae.name))
    results["sample_64_with_figure"] = t
    out.unlink(missing_ok=True)

    for run in (vae, ae):
        shutil.rmtree(run.path / "quality", ignore_errors=True)
    for key, run in (("quality_vae_trains_net", vae), ("quality_ae_copies_net", ae)):
        q, t = timed(lambda run=run: generation_quality(run, n=1000))
        results[key] = {**t, "n": q["n"], "fd_generated": round(q["fd_generated"], 3)}

    results["threads"] = {"torch": torch.get_num_threads()}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:28s} " + "  ".join(f"{k} {v}" for k, v in value.items()))


if __name__ == "__main__":
    main()
