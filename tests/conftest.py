"""Shared fixtures: tiny trained runs, so many tests can reuse one training."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

os.environ.setdefault("MPLBACKEND", "Agg")

# Examples per hypothesis test, by AELAB_HYPOTHESIS: "full" (the default, what `make test` runs),
# "fast" (`make test-fast`: the same properties on a few examples each), "hunt" (a longer search).
# Tests set deadline and health checks; the number of examples comes from here.
settings.register_profile("full", max_examples=60)
settings.register_profile("fast", max_examples=8)
settings.register_profile("hunt", max_examples=500)
settings.load_profile(os.environ.get("AELAB_HYPOTHESIS", "full"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests are slow tests too: `make test-fast` leaves them out."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow(reason="starts headless chromium"))


def tiny_config(**over) -> dict:
    """A small fcn on 160 builtin faces of 16×16: trains in about a second."""
    cfg = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "builtin:faces?n=160&size=16", "val_fraction": 0.25},
        "model": {"type": "fcn", "hidden": [64, 16], "latent_dim": 4},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.003},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    return cfg


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Callable[[dict[str, Any]], Any]:
    """``trained(config_dict) -> Run``: the one way tests get a shared trained run.

    Trains each distinct config (by its canonical JSON) once per session, into
    ``<session tmp>/trained/<hash>/<config name>`` (the folder is named like the run, as the
    explorer and the report show it), and hands every caller the same Run. A test that changes
    the weights or needs a run of its own (kill/resume, --force) trains its own instead."""
    import aelab

    root = tmp_path_factory.mktemp("trained")
    cache: dict[str, Any] = {}

    def get(config: dict[str, Any]) -> Any:
        key = json.dumps(config, sort_keys=True)
        if key not in cache:
            folder = root / hashlib.sha256(key.encode()).hexdigest()[:12]
            folder.mkdir()
            cache[key] = aelab.train(config, out=folder / config.get("name", "run"))
        return cache[key]

    return get


# The shared pair: a plain fcn AE and a conv VAE, named as the report and the demo show them
# (tests/test_report.py's `pair` is these two trainings).
TINY_VAE = {"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 6}


@pytest.fixture(scope="session")
def tiny_run(trained):
    return trained(tiny_config(name="ae"))


@pytest.fixture(scope="session")
def tiny_vae_run(trained):
    return trained(tiny_config(name="vae", model=TINY_VAE))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: the CI box has 2 shared cores, and tests that time or
    compare decodes should not depend on how busy the other core is."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
