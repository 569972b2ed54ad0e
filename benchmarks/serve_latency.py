"""Latency of the explorer's decode round trip, as the page sees it while a slider is dragged.

Target (issue 7): the deep fcn on 64×64×3, under 20 ms median and 50 ms p95 on
localhost with 2 CPU cores. ``aelab serve`` runs as its own process (pinned to
``--cores`` cores when the machine has more); a real HTTP client (httpx, one
keep-alive connection) sends ``/api/decode`` requests one after the other, each
with the code of the previous one nudged on one element, and times the whole
round trip: JSON in, decode, PNG encoding, JSON out, parsing.

    .venv/bin/python benchmarks/serve_latency.py               # trains a tiny deep fcn first
    .venv/bin/python benchmarks/serve_latency.py --run runs/demo/deep-fcn --n 200

Latency does not depend on how well the model is trained, so a one-epoch run of
the real architecture (12288-1024-256-64-10) is enough. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def tiny_deep_fcn(folder: Path) -> Path:
    from aelab.config import load_config
    from aelab.demo import preset
    from aelab.train import train

    cfg = load_config(preset("deep-fcn"), ["data.source=builtin:faces?n=300&seed=0", "train.epochs=1"])
    return train(cfg, folder / "deep-fcn", force=True, progress=False).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, cores: int) -> subprocess.Popen:
    aelab = Path(sys.executable).with_name("aelab")
    allowed = sorted(os.sched_getaffinity(0))

    def pin() -> None:
        if len(allowed) > cores:
            os.sched_setaffinity(0, allowed[:cores])

    return subprocess.Popen([str(aelab), "serve", str(run), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=pin)


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aelab serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/api/runs", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("aelab serve did not start")


def measure(url: str, n: int, warmup: int, diff: bool) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=30) as client:
        runs = client.get("/api/runs").json()["runs"]
        run = runs[0]
        image_id = client.get("/api/images", params={"limit": 1}).json()["items"][0]["id"]
        code = np.asarray(client.post("/api/encode", json={"image_id": image_id}).json()["code"])
        low, high = np.asarray(run["low"]), np.asarray(run["high"])
        times = []
        for k in range(warmup + n):
            i = k % len(code)  # a drag: one element moves a little further each frame
            edited = code.copy()
            edited[i] = low[i] + (high[i] - low[i]) * ((k % 50) / 49)
            body = {"code": edited.tolist(), "client": "bench", "seq": k}
            if diff:
                body.update(diff=True, image_id=image_id)
            start = time.perf_counter()
            r = client.post("/api/decode", json=body)
            data = r.json()
            elapsed = time.perf_counter() - start
            assert r.status_code == 200 and data["image"], data
            if k >= warmup:
                times.append(elapsed * 1000)
    t = np.asarray(times)
    return {"median_ms": round(float(np.median(t)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2),
            "mean_ms": round(float(t.mean()), 2), "min_ms": round(float(t.min()), 2),
            "max_ms": round(float(t.max()), 2), "n": len(t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a deep fcn run folder (default: train a tiny one)")
    ap.add_argument("--n", type=int, default=200, help="timed round trips")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--cores", type=int, default=2, help="pin the server to this many cores when there are more")
    ap.add_argument("--diff", action="store_true", help="also ask for the difference map each time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aelab-serve-bench-") as tmp:
        run = args.run or tiny_deep_fcn(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(run, port, args.cores)
        try:
            wait_up(url, proc)
            result = measure(url, args.n, args.warmup, args.diff)
        finally:
            proc.terminate()
            proc.wait(30)
    import torch

    result.update(target="median < 20 ms and p95 < 50 ms", meets_target=result["median_ms"] < 20
                  and result["p95_ms"] < 50, run=str(args.run or "tiny deep-fcn (12288-1024-256-64-10)"),
                  diff_map=args.diff, server_cores=min(args.cores, len(os.sched_getaffinity(0))),
                  machine_cores=os.cpu_count(), load_average_1min=round(os.getloadavg()[0], 2),
                  torch=torch.__version__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
