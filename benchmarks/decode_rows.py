"""What the fixed model-call blocks (``Run.decode_rows`` and ``Run.rows``) cost, per block size.

``Run.decode`` calls the model on blocks of exactly ``decode_rows`` rows (``encode`` on blocks of
``rows``) so a code decodes to the same bytes whatever else is decoded with it. A request of
fewer rows still pays a full block, and a big request reads the weights once per block. This
times, at one torch thread, one decode of 1, 5, 64 and 2,000 codes (and an encode of 1 and 500
images) for the demo's two architectures (deep fcn 12288-1024-256-64-10 and conv VAE 32/64/128,
64×64×3) at several block sizes (both blocks set to the same size), as process CPU time, which a
busy shared machine inflates less than wall time (read the ratios).

    .venv/bin/python benchmarks/decode_rows.py                 # trains two one-epoch runs first
    .venv/bin/python benchmarks/decode_rows.py --rows 8 32 --repeat 20

Speed does not depend on how well a model is trained, so one epoch on 600 images is enough.
Prints one JSON object: ms of CPU time per call (median over ``--repeat`` calls).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def one_epoch(name: str, folder: Path) -> Path:
    from aelab.config import load_config, preset
    from aelab.train import train

    cfg = load_config(preset(name), ["data.source=builtin:faces?n=600&seed=0", "train.epochs=1"])
    return train(cfg, folder / name, force=True, progress=False).path


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return round(float(np.median(times)), 2)


def costs(path: Path, rows: int, repeat: int) -> dict[str, float]:
    from aelab.run import load_run

    run = load_run(path, rows=rows, decode_rows=rows)
    images = run.splits.full.images[:500]
    codes = np.random.default_rng(0).standard_normal((2000, run.latent_size)).astype(np.float32)
    return {"decode_1_ms": cpu_ms(lambda: run.decode(codes[:1]), repeat),
            "decode_5_ms": cpu_ms(lambda: run.decode(codes[:5]), repeat),
            "decode_64_ms": cpu_ms(lambda: run.decode(codes[:64]), max(3, repeat // 3)),
            "decode_2000_ms": cpu_ms(lambda: run.decode(codes), 3),
            "encode_1_ms": cpu_ms(lambda: run.encode(images[:1]), repeat),
            "encode_500_ms": cpu_ms(lambda: run.encode(images), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--repeat", type=int, default=15, help="timed calls per small measurement (3 for the bulk ones)")
    ap.add_argument("--models", nargs="+", default=["deep-fcn", "conv-vae"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="aelab-rows-bench-") as tmp:
        paths = {name: one_epoch(name, Path(tmp)) for name in args.models}
        out = {name: {f"rows={rows}": costs(path, rows, args.repeat) for rows in args.rows}
               for name, path in paths.items()}
    print(json.dumps({"cpu_ms_median": out, "threads": 1, "machine_cores": os.cpu_count(),
                      "load_average_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__}, indent=2))


if __name__ == "__main__":
    main()
