"""Data larger than memory: bounded read-ahead from memory maps, and folders packed into .npy caches."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from aelab.data.batches import ReadAhead, read_batch, release_pages
from aelab.data.imageset import ImageSet
from aelab.errors import DataError

LINUX = sys.platform.startswith("linux")


def write_npy(path: Path, n: int, shape=(64, 64, 3)) -> Path:
    """An n-image uint8 .npy written block by block (never all in this process's memory)."""
    block = np.random.default_rng(0).integers(0, 256, (1024, *shape), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (n, *shape)})
        for start in range(0, n, len(block)):
            fh.write(block[:min(len(block), n - start)].tobytes())
    return path


def rss_file_mb() -> float:
    """Resident file-backed memory of this process (what a memory map's touched pages count as)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


# -- read-ahead -------------------------------------------------------------------------

def test_read_ahead_gives_the_batches_in_order(tmp_path):
    data = ImageSet(np.load(write_npy(tmp_path / "a.npy", 300, (4, 4, 1)), mmap_mode="r")).subset(np.arange(1, 300))
    rng = np.random.default_rng(1)
    batches = [rng.permutation(len(data))[:k] for k in (7, 32, 1, 64, 5)] + [slice(10, 20)]
    for depth in (0, 1, 3):
        got = list(ReadAhead(data, batches, depth=depth))
        assert len(got) == len(batches)
        for b, g in zip(batches, got, strict=True):
            np.testing.assert_array_equal(g, data.batch(b))
            assert g.dtype == np.uint8 and g.flags.c_contiguous


def test_read_ahead_stops_its_thread_and_passes_errors_on(tmp_path):
    data = ImageSet(np.zeros((50, 2, 2, 1), np.uint8))
    before = threading.active_count()
    for i, _ in enumerate(ReadAhead(data, [np.arange(5)] * 40, depth=2)):
        if i == 3:
            break  # the consumer leaves early (max_steps): the reader must not linger
    assert threading.active_count() == before
    with pytest.raises(IndexError):
        list(ReadAhead(data, [np.arange(5), np.array([99])], depth=2))
    assert threading.active_count() == before


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_reading_a_memory_map_leaves_no_pages_resident(tmp_path):
    path = write_npy(tmp_path / "m.npy", 6000)  # 74 MB
    mapped = np.load(path, mmap_mode="r")
    data = ImageSet(mapped)
    base = rss_file_mb()
    batches = [np.arange(s, min(s + 256, len(data))) for s in range(0, len(data), 256)]
    for _ in ReadAhead(data, batches):
        pass
    assert rss_file_mb() - base < 16
    for b in batches:  # the same reads without unmapping keep the whole file resident
        data.batch(b)
    assert rss_file_mb() - base > 60
    release_pages(mapped)
    assert rss_file_mb() - base < 16
    release_pages(np.zeros(3))  # not a map: nothing to do


def test_read_batch_copies_out_of_the_memory_map(tmp_path):
    """A contiguous slice of a map would be a view that reads the file later: ``read_batch`` returns a
    batch that owns its memory, with the file's values, for a slice and for scattered positions."""
    path = write_npy(tmp_path / "m.npy", 40, shape=(8, 8, 3))
    data = ImageSet(np.load(path, mmap_mode="r"))
    want = np.load(path)  # read into memory, independently
    assert np.may_share_memory(data.batch(slice(3, 9)), data.images)  # what read_batch guards against
    for positions in (slice(3, 9), np.array([7, 2, 30])):
        batch = read_batch(data, positions)
        assert not isinstance(batch, np.memmap) and batch.flags.owndata and batch.flags.writeable
        assert not np.may_share_memory(batch, data.images)
        np.testing.assert_array_equal(batch, want[positions])
        batch[...] = 0  # writing the copy leaves the map as it was
        np.testing.assert_array_equal(data.batch(positions), want[positions])


CHILD = r'''
import json, resource, sys
import aelab
source, out, epochs, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
data = {"source": f"npy:{source}", "val_fraction": val, "preprocess": [{"center_crop": 8}]}
run = aelab.train({"name": "big", "data": data,
                   "model": {"type": "fcn", "hidden": [16], "latent_dim": 4},
                   "train": {"epochs": epochs, "batch_size": 256, "eval_batch_size": 64, "threads": 1}},
                  out=out)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "n_train": run.summary["n_train"], "steps": run.summary["steps"]}))
'''


@pytest.mark.skipif(not LINUX, reason="ru_maxrss units and madvise are Linux's")
@pytest.mark.slow
def test_training_from_a_file_larger_than_its_memory_budget(tmp_path):
    """A 300 MB file costs about what a 12 MB one does: the file's pages are not kept resident."""
    big = write_npy(tmp_path / "big.npy", 24_576)  # 302 MB
    small = write_npy(tmp_path / "small.npy", 1024)  # 12.6 MB
    (tmp_path / "child.py").write_text(CHILD)

    def peak(source: Path, epochs: int, val: float) -> dict:
        out = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(source), str(tmp_path / source.stem),
                              str(epochs), str(val)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    # the same number of steps and the same 64 validation images, so only the file size differs
    a = peak(small, 24, 64 / 1024)
    b = peak(big, 1, 64 / 24_576)
    assert b["n_train"] == 24_576 - 64 and abs(a["steps"] - b["steps"]) <= 2
    assert b["peak_mb"] - a["peak_mb"] < 150, (a, b)
    assert b["peak_mb"] < a["peak_mb"] + big.stat().st_size / 2**20 / 2


# -- folders: parallel decode and pack ------------------------------------------------------

def make_folder(root: Path, n_per_class: int = 30, size=(12, 10), gray: int = 0) -> Path:
    """Class subfolders of random PNGs; the first ``gray`` files of class 'b' are greyscale."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            if cls == "b" and i < gray:
                Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L").save(root / cls / f"{i:03d}.png")
            else:
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / cls / f"{i:03d}.png")
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from aelab.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.slow(reason="starts pools of 2 decoding worker processes")
def test_parallel_decode_equals_decoding_here(tmp_path, monkeypatch):
    from PIL import Image

    from aelab.data import pack
    from aelab.data.sources import load_images

    root = make_folder(tmp_path / "f", gray=3)
    here = pack.decode_files(pack.list_image_files(root), workers=1)
    monkeypatch.setattr(pack, "PARALLEL_MIN", 1)
    monkeypatch.setattr(pack, "DECODE_CHUNK", 7)  # several chunks, an uneven last one
    parallel = pack.decode_files(pack.list_image_files(root), workers=2)
    np.testing.assert_array_equal(parallel, here)
    assert here.shape == (60, 12, 10, 3)
    gray = np.asarray(Image.open(root / "b" / "000.png"))
    np.testing.assert_array_equal(here[30], np.repeat(gray[..., None], 3, axis=-1))  # grey joins colour as RGB
    data = load_images(f"folder:{root}")  # the folder source decodes through the same pool
    np.testing.assert_array_equal(data.batch(), here)
    assert data.get_labels().tolist() == [0] * 30 + [1] * 30 and data.class_names == ["a", "b"]
    (root / "a" / "005.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"005.png: not a readable image"):  # raised in a worker, one line here
        pack.decode_files(pack.list_image_files(root), workers=2)


@pytest.mark.slow(reason="packs through 2 worker processes, then trains on the cache")
def test_pack_command_writes_a_cache_that_trains(tmp_path, capsys, monkeypatch):
    import aelab
    from aelab.data import pack
    from aelab.data.sources import load_images

    root = make_folder(tmp_path / "faces")
    monkeypatch.setattr(pack, "PARALLEL_MIN", 1)  # 60 files: decode them in 2 worker processes all the same
    out = tmp_path / "cache" / "faces.npy"
    code, stdout, _ = run_cli(["data", "pack", f"folder:{root}", "--out", str(out), "--json", "--workers", "2"],
                              capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["n"] == 60 and result["shape"] == [12, 10, 3] and result["class_names"] == ["a", "b"]
    packed = np.load(out, mmap_mode="r")
    np.testing.assert_array_equal(packed, load_images(f"folder:{root}").batch())
    files = Path(result["files"]).read_text().splitlines()
    assert files[0] == "a/000.png" and files[59] == "b/029.png"
    assert np.load(result["labels"]).tolist() == [0] * 30 + [1] * 30
    assert sorted(p.name for p in out.parent.iterdir()) == ["faces.files.txt", "faces.labels.npy", "faces.npy"]
    data = load_images(f"npy:{out}", labels=result["labels"])
    assert isinstance(data.images, np.memmap) and data.get_labels().sum() == 30
    run = aelab.train({"data": {"source": f"npy:{out}", "labels": result["labels"], "val_fraction": 0.2},
                       "model": {"type": "fcn", "hidden": [8], "latent_dim": 2},
                       "train": {"epochs": 1, "batch_size": 16}}, out=tmp_path / "run")
    assert run.summary["n_train"] == 48

    # --size resizes while decoding; the human output says how to use the cache
    code, stdout, _ = run_cli(["data", "pack", str(root), "--out", str(out), "--size", "8x6", "--force", "-q"],
                              capsys)
    assert code == 0 and np.load(out).shape == (60, 8, 6, 3)
    assert f"npy:{out}" in stdout.replace("\n", "")


def test_pack_errors_are_one_line_and_leave_nothing_behind(tmp_path, capsys):
    from PIL import Image

    root = make_folder(tmp_path / "f", n_per_class=3)
    out = tmp_path / "c.npy"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "a" / "odd.png")
    code, _, err = run_cli(["data", "pack", f"folder:{root}", "--out", str(out)], capsys)
    assert code == 2 and "images of different sizes" in err and "--size" in err and len(err.splitlines()) == 1
    (root / "a" / "odd.png").write_bytes(b"garbage")
    code, _, err = run_cli(["data", "pack", f"folder:{root}", "--out", str(out), "--size", "4"], capsys)
    assert code == 2 and "odd.png: not a readable image" in err
    assert list(tmp_path.glob("c*")) == [] and not list(tmp_path.glob(".c.npy*"))  # no half-written cache
    (root / "a" / "odd.png").unlink()
    for args, message in [
        (["--out", str(tmp_path / "c.bin")], "must be a .npy"),
        (["--out", str(out), "--size", "4x"], "--size '4x': expected HxW"),
        (["--out", str(out), "--size", "0"], "expected HxW"),
    ]:
        code, _, err = run_cli(["data", "pack", str(root), *args], capsys)
        assert code == 2 and message in err, err
    assert run_cli(["data", "pack", str(root), "--out", str(out), "-q"], capsys)[0] == 0
    code, _, err = run_cli(["data", "pack", str(root), "--out", str(out)], capsys)
    assert code == 2 and "already exists; use --force" in err
    code, _, err = run_cli(["data", "pack", str(tmp_path / "nope"), "--out", str(tmp_path / "d.npy")], capsys)
    assert code == 2 and "folder not found" in err


# -- Run.batches: the same read path as training ------------------------------------------

@pytest.mark.skipif(not LINUX, reason="reads /proc")
@pytest.mark.slow(reason="writes a 77 MB file and preprocesses it twice")
def test_run_batches_release_memory_mapped_pages(tmp_path, tiny_run):
    """Scoring/encoding a memory-mapped file goes through ReadAhead: its pages do not stay resident."""
    mapped = np.load(write_npy(tmp_path / "s.npy", 100_000, tiny_run.image_shape), mmap_mode="r")  # 77 MB
    base = rss_file_mb()
    for depth in (0, 2):
        tiny_run.read_ahead = depth
        n = sum(len(x) for x in tiny_run.batches(mapped, 2048))
        assert n == len(mapped)
        assert rss_file_mb() - base < 16, depth
    tiny_run.read_ahead = 0
    for start in range(0, len(mapped), 2048):  # the same reads without unmapping keep the file resident
        np.ascontiguousarray(mapped[start:start + 2048]).sum()
    assert rss_file_mb() - base > 60
    release_pages(mapped)


def test_run_outputs_do_not_depend_on_the_read_path(tmp_path, tiny_run):
    """Codes, reconstructions and evaluation are the same bytes from memory, from a memory map, with
    and without the read-ahead thread, and equal the model applied to the whole preprocessed array."""
    import torch

    from aelab.run import in_fixed_rows, roundtrip

    images = tiny_run.data().batch(slice(0, 150))
    path = tmp_path / "x.npy"
    np.save(path, images)
    mapped = np.load(path, mmap_mode="r")
    x = tiny_run.preprocess(images, tiny_run.device)
    want_codes = in_fixed_rows(tiny_run.model.encode, x, tiny_run.device, rows=tiny_run.rows).numpy()
    want_recon = tiny_run.preprocess.inverse(
        in_fixed_rows(lambda b: roundtrip(tiny_run.model, b), x, tiny_run.device, rows=tiny_run.rows))
    try:
        for depth in (0, 2):
            tiny_run.read_ahead = depth
            for source in (images, mapped, ImageSet(mapped)):
                assert tiny_run.encode(source).tobytes() == want_codes.tobytes()
                assert tiny_run.reconstruct(source).tobytes() == want_recon.tobytes()
            batches = list(tiny_run.batches(mapped, 64))  # 64 + 64 + 22, in order
            assert [len(b) for b in batches] == [64, 64, 22]
            assert torch.equal(torch.cat(batches), x)
        assert tiny_run.evaluate(mapped) == tiny_run.evaluate(images)
        with torch.inference_mode():  # reconstruct_tensor: one call of the same roundtrip
            assert torch.equal(tiny_run.reconstruct_tensor(x[:5]), roundtrip(tiny_run.model, x[:5]).float())
    finally:
        tiny_run.read_ahead = 0
