"""Image sources: a string such as ``npy:faces.npy`` names where images come from.

Every source returns an ``ImageSet`` of uint8 N×H×W×C images; arrays may also be
N×C×H×W (channels first) or N×H×W, uint8 or float in [0, 1], and the ImageSet's
``source_format`` records which, so outputs can be written the same way. ``.npy`` files
are memory-mapped when they are already uint8, so a 1.2 GB course data set
costs no memory until a batch is read. Built-in sets take their parameters in
the string: ``builtin:faces?n=2000&anomaly_fraction=0.1&seed=1``.

One module (~370 lines) on purpose: each kind's loader is short, and all of them go through
the same checks before reading (``.npy`` headers, ``as_uint8_images``, labels), which live here once.
"""

from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl

import numpy as np

from aelab.data.imageset import ImageSet, SourceFormat
from aelab.errors import DataError, closest
from aelab.limits import check_array_fits

_CHUNK = 4096  # rows converted at a time when a float file must become uint8


def load_images(source: str | ImageSet, labels: str | None = None, size: tuple[int, int] | None = None) -> ImageSet:
    """Load images from a source string (``kind:path`` or ``builtin:name?k=v``).

    ``labels`` is an optional ``.npy`` of one integer per image. ``size``
    (H, W) lets a ``folder:`` of mixed sizes be resized while it is read.
    """
    if isinstance(source, ImageSet):
        data = source
    else:
        kind, _, rest = str(source).partition(":")
        if not rest:
            kind, rest = _guess_kind(str(source)), str(source)
        if kind not in _LOADERS:
            raise DataError(f"unknown data source kind '{kind}' in '{source}'{closest(kind, _LOADERS)}"
                            f"; use one of {', '.join(k + ':' for k in _LOADERS)}")
        data = _LOADERS[kind](rest, size)
    if labels:
        data = _attach_labels(data, labels)
    return data


def _guess_kind(path: str) -> str:
    """A bare path: infer the kind from the suffix (``faces.npy`` -> npy)."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    for suffix, kind in ((".npy", "npy"), (".npz", "npz"), ("ubyte", "idx"), ("ubyte.gz", "idx")):
        if p.name.endswith(suffix):
            return kind
    raise DataError(f"cannot tell what kind of data source '{path}' is; write it as npy:, npz:, folder:, idx: "
                    f"or builtin:")


# -- arrays -------------------------------------------------------------------

def channels_first(arr: np.ndarray) -> bool:
    """Whether a 4-d image array is N×C×H×W: its last axis cannot be channels and its second can."""
    return arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3)


def array_format(arr: np.ndarray) -> SourceFormat:
    """The layout, dtype and value range an image array was stored in (what ``as_uint8_images`` reads)."""
    layout = "nhw" if arr.ndim == 3 else "nchw" if channels_first(arr) else "nhwc"
    value_range = (0.0, 1.0) if arr.dtype.kind == "f" else (0.0, 255.0)
    return SourceFormat(layout, arr.dtype.name, value_range)  # type: ignore[arg-type]


def as_uint8_images(arr: np.ndarray, where: str) -> np.ndarray:
    """Check an array of images and return it as uint8 N×H×W×C.

    uint8 arrays (and memory maps) are returned as views; float arrays in
    [0, 1] and small integer arrays are converted in chunks."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"{where}: expected images N×H×W×C or N×H×W, got shape {arr.shape}")
    if channels_first(arr):
        arr = arr.transpose(0, 2, 3, 1)  # N×C×H×W -> N×H×W×C (a view)
    if arr.shape[-1] not in (1, 3, 4):
        raise DataError(f"{where}: expected 1, 3 or 4 channels in the last axis, got shape {arr.shape}")
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if len(arr) == 0:
        raise DataError(f"{where}: holds no images (shape {arr.shape})")
    if 0 in arr.shape[1:3]:
        raise DataError(f"{where}: images of {arr.shape[1]}×{arr.shape[2]} pixels hold nothing (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "b":  # a mask: 0/1 or 0/255 would be a guess, so the user says which
        raise DataError(f"{where}: boolean images are not read; store them as uint8, e.g. "
                        f"(mask * 255).astype(np.uint8) for black and white")
    if arr.dtype.kind in "fiu":
        check_array_fits(arr.shape, 1, where, "converting it to uint8")
    if arr.dtype.kind == "f":
        out = np.empty(arr.shape, dtype=np.uint8)
        for start in range(0, len(arr), _CHUNK):
            part = np.asarray(arr[start:start + _CHUNK], dtype=np.float32)
            if not np.isfinite(part).all():
                bad = start + int(np.flatnonzero(~np.isfinite(part).reshape(len(part), -1).all(1))[0])
                raise DataError(f"{where}: image {bad} has NaN or infinite pixels")
            lo, hi = float(part.min()), float(part.max())
            if lo < 0 or hi > 1:
                raise DataError(f"{where}: float images must be in [0, 1], found values in [{lo:g}, {hi:g}]"
                                f" (divide by 255, or store uint8)")
            out[start:start + _CHUNK] = np.rint(part * 255.0).astype(np.uint8)
        return out
    if arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer images must be in 0..255, found {lo}..{hi}")
        return arr.astype(np.uint8)
    raise DataError(f"{where}: unsupported dtype {arr.dtype} (use uint8 0-255 or float 0-1)")


def _as_labels(arr: np.ndarray, n: int, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per image, got shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{where}: {len(arr)} labels for {n} images")
    if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
        raise DataError(f"{where}: labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _attach_labels(data: ImageSet, path: str) -> ImageSet:
    arr = _np_load(Path(path), mmap=False)
    data.labels = _as_labels(arr, len(data.images), path)
    return data


def _npy_header(fh: BinaryIO, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, refusing object arrays before anything is unpickled or read."""
    start = fh.read(6)
    if start != b"\x93NUMPY":
        what = "a pickled Python object" if start[:1] == b"\x80" else "other data"
        raise DataError(f"{where}: not a NumPy array (it holds {what}); only .npy arrays are read, never unpickled")
    fh.seek(0)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} (structured arrays are not images)")
    except Exception as exc:  # numpy parses the header as a Python literal: SyntaxError, TokenError, ValueError...
        raise DataError(f"{where}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (dtype {dtype}); only plain numeric arrays are read, "
                        f"never unpickled")
    return tuple(int(s) for s in shape), dtype


def _np_load(path: Path, mmap: bool) -> np.ndarray:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a .npy file (a folder of image files is folder:{path})")
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise DataError(f"{path}: not a .npy file (it does not start with the NumPy header)")
            fh.seek(0)
            shape, dtype = _npy_header(fh, str(path))
        if not mmap:
            check_array_fits(shape, dtype.itemsize, str(path))
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{path}: holds Python objects; only plain numeric arrays are read") from None
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _load_npy(rest: str, size: tuple[int, int] | None) -> ImageSet:
    path = Path(rest)
    arr = _np_load(path, mmap=True)
    return ImageSet(as_uint8_images(arr, str(path)), name=f"npy:{path}", source_format=array_format(arr))


_NPZ_IMAGE_KEYS = ("images", "x", "x_train", "data", "arr_0")
_NPZ_LABEL_KEYS = {"images": "labels", "x": "y", "x_train": "y_train", "x_test": "y_test", "data": "labels"}


def _npz_array(zf: zipfile.ZipFile, key: str, where: str) -> np.ndarray:
    """One array of an .npz, read without np.load: the header is checked first (no objects, no
    pickles, a size that fits in memory), then the array is read with allow_pickle=False."""
    try:
        with zf.open(f"{key}.npy") as fh:
            shape, dtype = _npy_header(fh, where)
            check_array_fits(shape, dtype.itemsize, where)
        with zf.open(f"{key}.npy") as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise DataError(f"{where}: not a readable array ({exc})") from None


def _load_npz(rest: str, size: tuple[int, int] | None) -> ImageSet:
    path_s, _, key = rest.partition("#")
    path = Path(path_s)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a .npz file (a folder of image files is folder:{path})")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{path}: not a .npz file (not a readable zip archive: {exc})") from None
    with zf:
        keys = [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
        if not keys:
            raise DataError(f"{path}: holds no .npy arrays")
        if not key:
            key = next((k for k in _NPZ_IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else "")
            if not key:
                raise DataError(f"{path}: cannot tell which array holds the images; name it as "
                                f"npz:{path}#KEY (keys: {', '.join(keys)})")
        if key not in keys:
            raise DataError(f"{path}: no array '{key}'{closest(key, keys)} (keys: {', '.join(keys)})")
        where = f"{path}#{key}"
        raw = _npz_array(zf, key, where)
        images = as_uint8_images(raw, where)
        label_key = _NPZ_LABEL_KEYS.get(key)
        labels = _as_labels(_npz_array(zf, label_key, f"{path}#{label_key}"), len(images), f"{path}#{label_key}") \
            if label_key in keys else None
        data = ImageSet(images, labels, name=f"npz:{where}", source_format=array_format(raw))
        if key == "x_train" and "x_test" in keys:
            raw_test = _npz_array(zf, "x_test", f"{path}#x_test")
            test_images = as_uint8_images(raw_test, f"{path}#x_test")
            test_labels = _as_labels(_npz_array(zf, "y_test", f"{path}#y_test"), len(test_images),
                                     f"{path}#y_test") if "y_test" in keys else None
            data.test = ImageSet(test_images, test_labels, name=f"npz:{path}#x_test",
                                 source_format=array_format(raw_test))
    return data


# -- folders of image files ---------------------------------------------------

def _load_folder(rest: str, size: tuple[int, int] | None) -> ImageSet:
    """Decode every image file under the folder (in worker processes when there are many; see
    ``aelab.data.pack``, which also turns a folder into a .npy cache)."""
    from aelab.data.pack import decode_files, folder_labels, list_image_files

    root = Path(rest)
    files = list_image_files(root)
    images = decode_files(files, size, where=str(root))
    labels, class_names = folder_labels(root, files)
    return ImageSet(images, labels, name=f"folder:{root}", class_names=class_names)


# -- MNIST-style IDX files -----------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (raw or gzip) into an array: the header is checked (and the size it
    declares compared with memory) before the data is read, so a small file cannot claim terabytes."""
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an IDX file (an MNIST folder is idx:{path} with the files in it)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            ndim = head[3]
            dims_raw = fh.read(4 * ndim)
            if len(dims_raw) != 4 * ndim:
                raise DataError(f"{path}: the IDX header is cut short ({ndim} dimensions declared)")
            dims = [int(d) for d in np.frombuffer(dims_raw, dtype=">u4")]
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            size = math.prod(dims) * dtype.itemsize
            check_array_fits(tuple(dims), dtype.itemsize, str(path))
            body = fh.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:
        what = "gzip file" if path.suffix == ".gz" else "file"
        raise DataError(f"{path}: not a readable {what} ({exc})") from None
    if len(body) != size:
        expected, found = 4 + 4 * ndim + size, 4 + 4 * ndim + len(body)
        raise DataError(f"{path}: header says shape {dims} ({expected} bytes) but the file has "
                        f"{'more' if found > expected else found}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx_pair(images_path: Path) -> ImageSet:
    raw = read_idx(images_path)
    images = as_uint8_images(raw, str(images_path))
    label_path = Path(str(images_path).replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1"))
    labels = None
    if label_path != images_path and label_path.exists():
        labels = _as_labels(read_idx(label_path), len(images), str(label_path))
    return ImageSet(images, labels, name=f"idx:{images_path}", source_format=array_format(raw))


def _load_idx(rest: str, size: tuple[int, int] | None) -> ImageSet:
    path = Path(rest)
    if path.is_dir():
        found = {p.name: p for p in path.iterdir()}
        train = next((found[n] for n in found if n.startswith("train-images")), None)
        test = next((found[n] for n in found if n.startswith("t10k-images")), None)
        if train is None:
            raise DataError(f"{path}: no train-images-idx3-ubyte[.gz] file in the folder")
        data = _idx_pair(train)
        data.test = _idx_pair(test) if test else None
        return data
    return _idx_pair(path)


# -- built-in sets --------------------------------------------------------------

def _params(rest: str) -> tuple[str, dict[str, str]]:
    name, _, query = rest.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))


def _take(params: dict[str, str], key: str, cast: Callable, default, where: str):
    if key not in params:
        return default
    try:
        return cast(params.pop(key))
    except ValueError:
        raise DataError(f"{where}: parameter '{key}' must be a {cast.__name__}") from None


def _load_builtin(rest: str, size: tuple[int, int] | None) -> ImageSet:
    from aelab.data import builtin

    name, params = _params(rest)
    if name not in builtin.BUILTINS:
        raise DataError(f"unknown built-in data set '{name}'{closest(name, builtin.BUILTINS)}; "
                        f"available: {', '.join(builtin.BUILTINS)}")
    where = f"builtin:{name}"
    fn, accepted = builtin.BUILTINS[name]
    kwargs = {k: _take(params, k, cast, default, where) for k, (cast, default) in accepted.items()}
    if params:
        bad = next(iter(params))
        raise DataError(f"{where}: unknown parameter '{bad}'{closest(bad, accepted)}; "
                        f"accepted: {', '.join(accepted) or 'none'}")
    return fn(**kwargs)


_LOADERS: dict[str, Callable[[str, tuple[int, int] | None], ImageSet]] = {
    "npy": _load_npy,
    "npz": _load_npz,
    "folder": _load_folder,
    "idx": _load_idx,
    "builtin": _load_builtin,
}
