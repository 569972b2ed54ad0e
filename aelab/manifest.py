"""What analyses wrote into a Run folder: one manifest file, ``RUN/analyses.json``.

Each analysis that draws figures or measures numbers for a run records them here,
under its name::

    {"reconstructions": {"figures": {"reconstructions": "figures/reconstructions.png"},
                         "numbers": {"mean_psnr": 24.1, ...}, "params": {"n": 8},
                         "written": "2024-05-01T12:00:00+00:00",
                         "weights": {"bytes": 1234, "sha256": "..."}}}

so the report renders exactly what was recorded instead of guessing file names,
and can tell a record made for other weights (``current``). Figure paths are
relative to the run folder, so a copied or moved run keeps its record.

Every write is a read-modify-write of the whole file through ``aelab.io`` (atomic
and durable). Two processes recording into the same run at once are not
supported: the later write wins and the other's entry is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from aelab.errors import RunError
from aelab.io import json_safe, write_json
from aelab.runfolder import MANIFEST, WEIGHTS

_STAMPS: dict[tuple[str, int, int], dict[str, Any]] = {}  # (path, size, mtime_ns) -> stamp: hash each file once


def weights_stamp(run_path: str | Path) -> dict[str, Any] | None:
    """Size and SHA-256 of ``model.safetensors``: which weights a record was made for (None: no weights)."""
    path = Path(run_path) / WEIGHTS
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _STAMPS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _STAMPS[key] = {"bytes": st.st_size, "sha256": digest.hexdigest()}
    return dict(_STAMPS[key])


def read(run_path: str | Path) -> dict[str, dict[str, Any]]:
    """Every recorded analysis of the run (empty when nothing was recorded)."""
    path = Path(run_path) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc.msg}); delete it and run `aelab analyse "
                       f"{Path(run_path)}` again") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise RunError(f"{path}: expected a mapping of analysis name to its record")
    return data


def entry(run_path: str | Path, name: str) -> dict[str, Any] | None:
    """The record of one analysis, or None when it was never recorded."""
    return read(run_path).get(name)


def _relative(run_path: Path, figure: str | Path) -> str:
    """A figure path (absolute or relative to the current folder, like any path) as stored: relative to
    the run folder, which must hold it."""
    try:
        return Path(figure).resolve().relative_to(run_path.resolve()).as_posix()
    except ValueError:
        raise RunError(f"{figure}: a recorded figure must be inside the run folder {run_path}") from None


def record(run_path: str | Path, name: str, *, figures: dict[str, str | Path] | None = None,
           numbers: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record (replace) what analysis ``name`` wrote for the run; returns the stored entry.

    ``figures`` maps a key to a file inside the run folder (a path as any other: absolute or relative
    to the current folder) that must exist: a record never points at a file that is not there."""
    run_path = Path(run_path)
    figs = {key: _relative(run_path, f) for key, f in (figures or {}).items()}
    missing = [rel for rel in figs.values() if not (run_path / rel).is_file()]
    if missing:
        raise RunError(f"{run_path}: analysis '{name}' records {missing[0]}, which does not exist")
    stored = {"figures": figs, "numbers": json_safe(numbers or {}), "params": json_safe(params or {}),
              "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "weights": weights_stamp(run_path)}
    manifest = read(run_path)
    manifest[name] = stored
    write_json(run_path / MANIFEST, dict(sorted(manifest.items())))
    return stored


def figure_paths(run_path: str | Path, name: str) -> dict[str, Path]:
    """The recorded figures of ``name`` as paths, only those still on disk."""
    rec = entry(run_path, name) or {}
    root = Path(run_path)
    return {key: root / rel for key, rel in rec.get("figures", {}).items() if (root / rel).is_file()}


def current(run_path: str | Path, name: str, records: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether ``name`` is recorded for the weights the run has now, with every figure still on disk and,
    for a record adopted from a file (``params.from``, e.g. ``anomaly.json``), that file unchanged: the one
    rule for what ``aelab analyse`` makes again and what the report asks for. ``records``: ``read``'s result."""
    rec = (read(run_path) if records is None else records).get(name)
    if rec is None:
        return False
    root = Path(run_path)
    if rec.get("weights") != weights_stamp(root) or not all((root / rel).is_file()
                                                           for rel in rec.get("figures", {}).values()):
        return False
    params = rec.get("params") or {}
    if "from" in params:  # adopted from a record file: current while that file is unchanged
        source = root / params["from"]
        return source.is_file() and source.stat().st_mtime_ns == params.get("mtime_ns")
    return True
