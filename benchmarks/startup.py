"""Start-up time of the CLI beside `import torch` alone: median of 5 fresh processes each.

    python benchmarks/startup.py [--runs 5]

Commands that only parse arguments or print text (help, --version, models) must not
import torch, so each should take well under the time of `import torch`. Runs the
`aelab` script installed next to this Python (falls back to `python -m aelab`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("aelab")
AELAB = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "aelab"]
CASES = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'pass'": [sys.executable, "-c", "pass"],
    "aelab --help": [*AELAB, "--help"],
    "aelab train --help": [*AELAB, "train", "--help"],
    "aelab --version": [*AELAB, "--version"],
    "aelab models": [*AELAB, "models"],
}


def seconds(cmd: list[str]) -> float:
    env = {**os.environ, "COLUMNS": "120"}
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode
    if rc:
        print(f"note: {' '.join(cmd[-2:])} exited {rc}", file=sys.stderr)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for cmd in CASES.values():  # warm the file cache and .pyc files
        seconds(cmd)
    times = {name: statistics.median(seconds(cmd) for _ in range(args.runs)) for name, cmd in CASES.items()}
    torch_s = times["python -c 'import torch'"]
    print(f"{'command':<28}{'median (s)':>12}{'vs import torch':>18}")
    for name, t in times.items():
        print(f"{name:<28}{t:>12.3f}{t / torch_s:>17.2f}×")


if __name__ == "__main__":
    main()
