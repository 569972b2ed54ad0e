"""Shared fixtures: tiny trained runs, so many tests can reuse one training."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


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
def tiny_run(tmp_path_factory):
    import aelab

    return aelab.train(tiny_config(), out=tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="session")
def tiny_vae_run(tmp_path_factory):
    import aelab

    cfg = tiny_config(model={"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 6})
    return aelab.train(cfg, out=tmp_path_factory.mktemp("runs") / "tiny-vae")
