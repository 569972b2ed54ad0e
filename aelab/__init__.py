"""aelab: a workbench for image autoencoders.

    import aelab
    run = aelab.train("configs/deep-fcn.yaml")        # -> a Run folder
    run = aelab.load_run("runs/deep-fcn")
    codes = run.encode(images)                          # uint8 N×H×W×C in, codes out
    images = run.decode(codes)
    edited = aelab.edit(run, image, ["0*=2", "2+=5"])  # analyses are functions of a Run (aelab.latent)

The names below are imported on first use (PEP 562), so ``import aelab`` (and with
it ``aelab --help``) does not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "AelabError": "aelab.errors",
    "Config": "aelab.config",
    "load_config": "aelab.config",
    "ImageSet": "aelab.data",
    "Preprocess": "aelab.data",
    "load_images": "aelab.data",
    "create_model": "aelab.models",
    "Run": "aelab.run",
    "load_run": "aelab.run",
    "edit": "aelab.latent",
    "traverse": "aelab.latent",
    "interpolate": "aelab.latent",
    "sample": "aelab.generate",
    "augment": "aelab.codenoise",
    "compare_noise": "aelab.codenoise",
    "code_stats": "aelab.codestats",
    "score": "aelab.anomaly",
    "oneclass": "aelab.oneclass",
    "show": "aelab.notebook",
    "AutoencoderDetector": "aelab.detector",
    "export": "aelab.export",
}

__all__ = ["AelabError", "AutoencoderDetector", "Config", "ImageSet", "Preprocess", "Run", "augment", "code_stats",
           "compare_noise", "create_model", "edit", "export", "interpolate", "load_config", "load_images", "load_run",
           "oneclass", "run_sweep", "sample", "score", "show", "traverse", "train", "__version__"]

_FACADES = {"train", "run_sweep"}
"""Public functions defined here around the submodule's function of the same name."""


def train(config: Any, out: Any = None, **kwargs: Any) -> Run | None:
    """Train a model from a config (object, dict or YAML path) into a Run folder: ``aelab.train.train``
    with the same arguments, then the loss curve drawn into ``figures/loss.png`` and recorded in the
    run's manifest, as ``aelab train`` does (``aelab analyse`` adds the rest). In a Jupyter kernel the
    progress (on by default there) ends with the Run card. None on torchrun ranks above 0."""
    from aelab.analyse import analyse_run
    from aelab.train import train as train_run

    run = train_run(config, out, **kwargs)
    if run is not None:
        analyse_run(run, ["loss"], redo=True)
        _card_after_progress(run, kwargs.get("progress"))
    return run


def _card_after_progress(run: Run, progress: bool | None) -> None:
    """In a Jupyter kernel, training that showed its progress ends with the Run card below the bar."""
    from aelab.feedback import in_notebook

    if progress is not False and in_notebook():
        from aelab.notebook import show

        show(run)


def run_sweep(sweep: Any, out: Any, **kwargs: Any) -> Any:
    """Train every run of a sweep (``aelab.sweep.run_sweep``, same arguments), then draw each finished
    run's loss curve and the sweep's ``losses.png`` (and ``latent.png``), as ``aelab sweep`` does --
    also when some runs failed, for those that finished."""
    from aelab.analyse import after_sweep
    from aelab.errors import AelabError
    from aelab.sweep import run_sweep as run

    try:
        result = run(sweep, out, **kwargs)
    except AelabError:
        after_sweep(out)
        raise
    result.files.update(after_sweep(out))
    return result


if TYPE_CHECKING:
    from aelab.anomaly import score
    from aelab.codenoise import augment, compare_noise
    from aelab.codestats import code_stats
    from aelab.config import Config, load_config
    from aelab.data import ImageSet, Preprocess, load_images
    from aelab.detector import AutoencoderDetector
    from aelab.errors import AelabError
    from aelab.export import export
    from aelab.generate import sample
    from aelab.latent import edit, interpolate, traverse
    from aelab.models import create_model
    from aelab.notebook import show
    from aelab.oneclass import oneclass
    from aelab.run import Run, load_run


def __getattr__(name: str) -> Any:
    """An exported name, or a submodule (``aelab.rankmetrics.metrics`` works after a bare ``import aelab``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'aelab' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """``aelab.train`` stays the function even after the submodule ``aelab.train`` is imported.

    Importing a submodule sets it as an attribute of its package, which would make
    ``aelab.train(...)`` call a module once anything ran ``from aelab.train import ...``.
    The submodule itself stays reachable as ``sys.modules["aelab.train"]``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and name in _FACADES:
            return  # the facade defined here stays the attribute
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _register_in_ipython() -> None:
    """Inside IPython (already imported: this never imports it), results display themselves."""
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        from aelab.notebook import register

        register()


_register_in_ipython()
