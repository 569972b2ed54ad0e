"""Scoring speed on the course-size test set: 19,636 images of 64×64×3 from a memory-mapped .npy.

Target (issue 5): at least 2,000 images/s for the deep fcn (12288-1024-256-64-10) on 2 CPU
cores, with peak memory under 1 GB above the model. The images are procedural faces
tiled to the full count and written as a uint8 .npy, which ``aelab score`` memory-maps;
the model is the deep-fcn preset after one training step (speed does not depend on
the weights). Memory: the peak of the process's anonymous resident memory (RssAnon,
sampled every 5 ms) above its value with the model loaded; the pages of the
memory-mapped file are page cache (RssFile) and are reported apart.
``KIND:int8`` scores with the Linear layers quantised to int8 and reports how far
its scores and ranking move from fp32.

    .venv/bin/python benchmarks/score_speed.py                  # mse and mse:int8, 2 threads
    .venv/bin/python benchmarks/score_speed.py --kinds mse,l2,ssim,latent --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakSampler:
    """The largest RssAnon / RssFile seen while the block runs (a thread polls /proc every 5 ms)."""

    def __enter__(self) -> PeakSampler:
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            for k in self.peak:
                self.peak[k] = max(self.peak[k], rss_kib(k))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_data(path: Path, n: int) -> None:
    from aelab.data.faces import make_faces

    base = make_faces(min(n, 2000), seed=1, anomaly_fraction=0.1)[0]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 64, 64, 3))
    for start in range(0, n, len(base)):
        stop = min(start + len(base), n)
        out[start:stop] = base[:stop - start]
    out.flush()
    del out


def make_run(folder: Path):
    import aelab
    from aelab.demo import preset

    cfg = aelab.load_config(preset("deep-fcn"), ["data.source=builtin:faces?n=64", "data.val_fraction=0",
                                                 "train.max_steps=1", "train.batch_size=32"])
    return aelab.train(cfg, out=folder, force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=19636)
    ap.add_argument("--kinds", default="mse,mse:int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from aelab.anomaly import analyse, score
    from aelab.run import load_run

    rows, fp32 = [], {}
    with tempfile.TemporaryDirectory(prefix="aelab-score-speed-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make_data(tmp / "test.npy", args.n)
        make_run(tmp / "deep-fcn")
        print(f"setup {time.perf_counter() - t:.1f} s ({args.n:,} images, {args.n * 64 * 64 * 3 / 2**20:.0f} MiB)")
        run = load_run(tmp / "deep-fcn")
        for variant in args.kinds.split(","):
            kind, _, precision = variant.partition(":")
            if kind in ("latent", "combined"):
                score(run, np.zeros((1, 64, 64, 3), np.uint8), "latent")  # fit the Gaussian first (not timed)
            base = rss_kib("RssAnon")
            t = time.perf_counter()
            with PeakSampler() as mem:
                res = analyse(run, f"npy:{tmp / 'test.npy'}", kind, csv=tmp / "scores.csv", progress=True,
                              batch_size=args.batch_size, int8=precision == "int8")
            wall = time.perf_counter() - t
            row = {"kind": kind, "precision": precision or "fp32", "images": res.n,
                   "threads": torch.get_num_threads(), "seconds": round(wall, 2),
                   "images_per_s": round(res.n / wall), "model_anon_mib": round(base / 1024),
                   "peak_anon_above_model_mib": round((mem.peak["RssAnon"] - base) / 1024),
                   "peak_file_mapped_mib": round(mem.peak["RssFile"] / 1024)}
            if precision:
                ref = fp32.get(kind)
                if ref is not None:
                    from scipy.stats import spearmanr

                    row["max_rel_diff_vs_fp32"] = float(np.max(np.abs(res.scores - ref) / np.abs(ref)))
                    row["spearman_vs_fp32"] = float(spearmanr(res.scores, ref).statistic)
            else:
                fp32[kind] = res.scores
            rows.append(row)
            print(row)
    print("\n| kind | precision | images | threads | seconds | images/s | peak memory above the model "
          "| file pages mapped | vs fp32 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        vs = (f"Spearman {r['spearman_vs_fp32']:.6f}, max rel. diff {r['max_rel_diff_vs_fp32']:.2%}"
              if "spearman_vs_fp32" in r else "")
        print(f"| {r['kind']} | {r['precision']} | {r['images']:,} | {r['threads']} | {r['seconds']} | "
              f"{r['images_per_s']:,} | {r['peak_anon_above_model_mib']} MiB | {r['peak_file_mapped_mib']} MiB "
              f"| {vs} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
