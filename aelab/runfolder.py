"""The folders aelab writes, and the one rule for replacing or reusing them.

A Run folder holds the files named here and nothing else aelab did not write.
``--force`` deletes a folder, so it only ever deletes one that is recognisably
aelab's: its marker file is there and every entry inside is one aelab writes
(``FolderKind`` lists them). A folder holding anything else -- a user's data, a
typo'd ``--out`` pointing at a home directory -- is refused with one line naming
what is in the way, and nothing is touched.

Sweeps, one-class studies and the demo write folders of runs; each describes its
layout as a ``FolderKind`` (in its own module) and goes through ``open_folder``.

``--out`` creates only its last level: a missing parent is an error (a typo in
the middle of a path should not silently create a tree somewhere else).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from aelab.errors import RunError

CONFIG, WEIGHTS, METRICS = "config.yaml", "model.safetensors", "metrics.jsonl"
SUMMARY, FIGURES = "summary.json", "figures"
CHECKPOINT = "checkpoint.safetensors"
BEST_WEIGHTS = "best.safetensors"  # train.keep_best: the best epoch's weights, beside the last (WEIGHTS)
METRICS_CSV = "metrics.csv"  # train.log csv: the per-epoch records of metrics.jsonl as a table
TENSORBOARD = "tensorboard"  # train.log tensorboard: the event files
CHECKPOINT_META = "checkpoint.json"  # legacy: older checkpoints kept their scalars beside the tensors
CODESTATS = "codestats-*.safetensors"  # aelab.codestats' fitted code Gaussians, one per split and size
LEGACY_LATENT = "latent_gaussian.safetensors"  # legacy: the latent anomaly score's own Gaussian, before codestats
SCORES = "scores.csv"  # per-image anomaly scores (oneclass, demo)
QUALITY = "quality"  # aelab.quality's feature nets, one Run folder each
MANIFEST = "analyses.json"  # aelab.manifest: what each analysis wrote (figures, numbers) for the report
DETECTOR = "detector.json"  # aelab.detector: the saved threshold, score kind and parameters (no pickle)
DETECTOR_SCORES = "detector-scores.safetensors"  # aelab.detector: the training scores the threshold came from

TEMP_FILES = ".*.tmp"  # aelab.io.atomic_write's temporary names, left behind by a killed write

State = Literal["absent", "empty", "unfinished", "finished", "foreign"]
"""What a path holds, as a Run: nothing; an empty folder; a run that has not finished (no summary.json:
interrupted, still training or failed); a finished run; or something that is not a run folder at all
(a file, or a folder without config.yaml, summary.json or a checkpoint)."""


def state(path: str | Path) -> State:
    """How far the run at ``path`` got. Whether its folder may be replaced is ``check_replaceable``'s call:
    a finished run with a user's file beside it is still finished, but not aelab's to delete."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return "absent"
    if not path.is_dir() or path.is_symlink():
        return "foreign"
    if not any(path.iterdir()):
        return "empty"
    if (path / SUMMARY).is_file():
        return "finished"
    if any((path / name).is_file() for name in (CONFIG, CHECKPOINT, CHECKPOINT_META)):
        return "unfinished"
    return "foreign"


@dataclass(frozen=True)
class FolderKind:
    """What aelab writes into one kind of folder. Names are shell patterns (``fnmatch``), matched per entry."""

    what: str
    """'run folder', 'sweep folder', ... (for messages)."""
    markers: tuple[str, ...]
    """Entries that make a non-empty folder recognisably this kind (``name/``: a sub-folder); none listed:
    any folder of the right files."""
    files: tuple[str, ...]
    """Plain files aelab writes here."""
    folders: tuple[tuple[str, FolderKind], ...] = ()
    """Sub-folders aelab writes here, each with its own kind."""

    def marks(self, entry: Path) -> bool:
        """Whether ``entry`` is one of the markers (a pattern ending in / names a sub-folder)."""
        if entry.is_symlink():
            return False
        return any(fnmatchcase(entry.name, m.removesuffix("/")) and entry.is_dir() == m.endswith("/")
                   for m in self.markers)

    def subkind(self, name: str) -> FolderKind | None:
        return next((kind for pattern, kind in self.folders if fnmatchcase(name, pattern)), None)


FIGURES_FOLDER = FolderKind("figures folder", (), ("*.png", "*.svg", "*.pdf", "*.jpg", "*.jpeg", TEMP_FILES))
# A run's files: the training's own, then the analyses' (records as RUN/<analysis>.json, see ARCHITECTURE.md).
_RUN_FILES = (CONFIG, WEIGHTS, BEST_WEIGHTS, METRICS, METRICS_CSV, SUMMARY, CHECKPOINT, CHECKPOINT_META, CODESTATS,
              LEGACY_LATENT, SCORES, MANIFEST, DETECTOR, DETECTOR_SCORES, "*.json", TEMP_FILES)
_FEATURE_RUN = FolderKind("run folder", (CONFIG,), _RUN_FILES, ((FIGURES, FIGURES_FOLDER),))
# aelab.quality keeps its feature net in RUN/quality/features-<hash>/ (copied in through a .features-<hash>.copy).
QUALITY_FOLDER = FolderKind("quality folder", (), (),
                            (("features-*", _FEATURE_RUN), (".features-*.copy", _FEATURE_RUN)))
TENSORBOARD_FOLDER = FolderKind("tensorboard folder", (), ("events.out.tfevents.*",))
RUN = replace(_FEATURE_RUN, folders=((FIGURES, FIGURES_FOLDER), (QUALITY, QUALITY_FOLDER),
                                     (TENSORBOARD, TENSORBOARD_FOLDER)))


def foreign_files(path: str | Path, kind: FolderKind = RUN) -> list[str]:
    """Entries of the folder ``path`` (relative, sorted, sub-folders searched) that aelab does not write
    into a folder of this kind. A non-empty folder without the kind's markers is foreign as a whole;
    symbolic links are always foreign (aelab writes none)."""
    root = Path(path)

    def walk(folder: Path, kind: FolderKind, prefix: str) -> list[str]:
        entries = sorted(folder.iterdir())
        if kind.markers and entries and not any(kind.marks(e) for e in entries):
            return [prefix + e.name + ("/" if e.is_dir() and not e.is_symlink() else "") for e in entries]
        found: list[str] = []
        for entry in entries:
            name = prefix + entry.name
            if entry.is_symlink():
                found.append(name)
            elif entry.is_dir():
                sub = kind.subkind(entry.name)
                found.extend(walk(entry, sub, name + "/") if sub else [name + "/"])
            elif not (entry.is_file() and any(fnmatchcase(entry.name, p) for p in kind.files)):
                found.append(name)
        return found

    return walk(root, kind, "")


def _listing(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _not_a_folder(path: Path) -> RunError | None:
    if path.is_symlink():
        return RunError(f"{path} is a symbolic link; aelab writes only into real folders")
    if path.exists() and not path.is_dir():
        return RunError(f"{path} is a file, not a folder; choose another --out")
    return None


def check_replaceable(path: str | Path, kind: FolderKind = RUN) -> None:
    """Raise ``RunError`` unless ``path`` is absent, empty, or a ``kind`` folder holding only aelab's files.

    The one gate every deletion goes through: ``--force`` must never remove what aelab did not write."""
    path = Path(path)
    error = _not_a_folder(path)
    if error:
        raise error
    if not path.exists():
        return
    strangers = foreign_files(path, kind)
    if strangers:
        raise RunError(f"--force refuses to replace {path}: it is not only an aelab {kind.what} "
                       f"(it holds {_listing(strangers)}); move those away or choose another --out")


def replace_folder(path: str | Path, kind: FolderKind = RUN) -> None:
    """Delete the ``kind`` folder at ``path`` so it can be written afresh; refuse (nothing touched) if it
    holds anything aelab did not write there."""
    path = Path(path)
    check_replaceable(path, kind)
    if path.exists():
        shutil.rmtree(path)


def make_folder(path: str | Path) -> Path:
    """Create ``path`` if needed -- its last level only: a missing parent is an error naming it."""
    path = Path(path)
    error = _not_a_folder(path)
    if error:
        raise error
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            what = "is a file" if parent.exists() else "does not exist"
            raise RunError(f"cannot create {path}: its parent folder {parent} {what} "
                           f"(aelab creates only the last level of --out)")
        path.mkdir(exist_ok=True)
    return path


def open_folder(path: str | Path, kind: FolderKind) -> Path:
    """The folder a sweep / one-class study / demo writes into: created (last level only) when absent,
    reused when empty or already a ``kind`` folder (that is how a stopped one resumes); anything else
    is refused, with or without ``--force``, since it would mix aelab's files into someone else's."""
    path = Path(path)
    error = _not_a_folder(path)
    if error:
        raise error
    if path.exists():
        strangers = foreign_files(path, kind)
        if strangers:
            raise RunError(f"{path} is not an aelab {kind.what} (it holds {_listing(strangers)}); "
                           f"choose another --out")
        return path
    return make_folder(path)
