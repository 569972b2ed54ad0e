"""``aelab demo``: the whole study on built-in faces, in one command.

It trains the course's deep fcn autoencoder and a conv VAE on ``builtin:faces``,
then every section draws its part (architecture, loss and reconstructions through
``aelab.analyse``, latent edits, generation, anomaly scores) into the demo folder,
and the last writes the report (``aelab.demo.report``). Each section is a function of the
``Demo`` context that returns the lines to print; sections are listed in
``SECTIONS`` in the order they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aelab.config import load_config, preset
from aelab.demo.anomaly import demo_section as anomaly_section
from aelab.demo.generate import demo_section as generation_section
from aelab.demo.latent import demo_section as latent_section
from aelab.demo.report import analyses, report_section
from aelab.logunits import labelled
from aelab.run import Run, load_run
from aelab.runfolder import RUN, TEMP_FILES, FolderKind, make_folder, open_folder
from aelab.sweep import run_state
from aelab.train import train


@dataclass
class Demo:
    out: Path
    quick: bool
    progress: bool
    runs: dict[str, Run] = field(default_factory=dict)
    """'ae' (deep fcn) and 'vae' (conv VAE)."""
    result: dict[str, Any] = field(default_factory=dict)
    """Numbers each section adds for ``--json``."""


# Per model: the shipped config and the changes the demo makes to it. With few images both models otherwise
# stay near the mean face: the quick fcn gets 136 steps (8 epochs of 1,080 images at batch 64, lr 0.002;
# 27 steps of batch 128 gave one average face for every input), the VAE a smaller batch and a larger step.
PLANS = {
    "ae": ("deep-fcn", {"quick": ["train.epochs=8", "train.batch_size=64", "train.lr=0.002"],
                        "full": ["train.epochs=8"]}),
    "vae": ("conv-vae", {"quick": ["train.epochs=3", "train.batch_size=32", "train.lr=0.003"],
                         "full": ["train.epochs=8", "train.batch_size=64", "train.lr=0.002"]}),
}
FACES = {"quick": 1200, "full": 6000}
RUNS = (*(name for name, _ in PLANS.values()), "anomaly")  # the anomaly section trains OUT/anomaly
DEMO_FOLDER = FolderKind("demo folder", tuple(f"{name}/" for name in RUNS),
                         ("report.html", "aug.npz", TEMP_FILES), tuple((name, RUN) for name in RUNS))
"""OUT of the demo: its Runs, the generation section's ``aug.npz`` and the report."""


def train_models(demo: Demo) -> list[str]:
    size = "quick" if demo.quick else "full"
    source = f"builtin:faces?n={FACES[size]}&seed=0"
    for key, (name, changes) in PLANS.items():
        cfg = load_config(preset(name), [f"data.source={source}", *changes[size]])
        folder = demo.out / name
        if run_state(folder, cfg) == "done":  # finished earlier with this very config
            demo.runs[key] = load_run(folder)
            continue
        demo.runs[key] = train(cfg, folder, force=True, progress=demo.progress)
    return [f"runs: {', '.join(str(r.path) for r in demo.runs.values())}"]


# report_section records what the others drew, analyses what is missing and writes report.html: keep it last.
SECTIONS: list[Callable[[Demo], list[str]]] = [train_models, analyses, latent_section, generation_section,
                                               anomaly_section, report_section]


def run_demo(out: str | Path | None = None, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every section into ``out`` (default ``runs/demo``). A folder of an earlier demo is reused
    (runs with the same config are not trained again); any other non-empty folder is refused."""
    if not out:
        out = make_folder("runs") / "demo"
    demo = Demo(open_folder(out, DEMO_FOLDER), quick, progress)
    started = time.perf_counter()
    outputs: list[str] = []
    seconds: dict[str, float] = {}
    for section in SECTIONS:
        t0 = time.perf_counter()
        outputs += section(demo)
        # a section's name: its function here and in demo/report.py, else its module (anomaly, latent, generate)
        name = (section.__name__.removesuffix("_section") if section.__module__ in (__name__, f"{__name__}.report")
                else section.__module__.split(".")[-1])
        seconds[name] = round(time.perf_counter() - t0, 2)
    rows = [{"model": f"{key}: {r.name}", "family": r.model.family, "parameters": r.summary["parameters"],
             **labelled(r.summary), "time (s)": r.summary["wall_time_s"]}
            for key, r in demo.runs.items()]
    return {"out": str(demo.out), "quick": quick, "table": rows, "outputs": outputs, **demo.result,
            "section_seconds": seconds, "wall_time_s": round(time.perf_counter() - started, 1)}
