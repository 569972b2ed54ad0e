"""Bad input ends in one AelabError line, never a traceback (issue #12, parts 4 and 6).

Each case of the issue is pinned by a fast in-process test; hypothesis then
throws generated input at everything that reads user input (config files and
--set, every source kind, the edit language, id lists) with one property: it
works or raises AelabError. A few CLI cases run the real command (slow)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aelab
from aelab.config import config_from_dict, load_config, parse_override
from aelab.data import load_images
from aelab.data.ids import parse_ids
from aelab.errors import AelabError, ConfigError, DataError, RunError, TrainingInterrupted
from aelab.latent import apply_edits, parse_edit
from aelab.run import load_run
from aelab.runfolder import CHECKPOINT

# examples per test: the AELAB_HYPOTHESIS profile in conftest.py (AELAB_HYPOTHESIS=hunt for a longer search)
FEW = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header declares width×height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def train_cfg(**data) -> dict:
    cfg = tiny_config()
    cfg["train"]["max_steps"] = 2
    cfg["data"].update(data)
    return cfg


# -- the cases, one by one -----------------------------------------------------------

def test_npy_that_is_a_folder(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a .npy file.*folder:"):
        load_images(f"npy:{tmp_path}")


def test_npz_with_objects_or_a_pickle_is_refused_without_unpickling(tmp_path, monkeypatch):
    import pickle

    np.savez(tmp_path / "obj.npz", images=np.array([object(), 1], dtype=object))
    with zipfile.ZipFile(tmp_path / "pickle.npz", "w") as zf:
        zf.writestr("images.npy", pickle.dumps([1, 2, 3]))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(DataError, match=r"obj.npz#images: holds Python objects"):
        load_images(f"npz:{tmp_path / 'obj.npz'}")
    with pytest.raises(DataError, match=r"pickle.npz#images: not a NumPy array \(it holds a pickled"):
        load_images(f"npz:{tmp_path / 'pickle.npz'}")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_in_a_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bomb.png").write_bytes(png_declaring(20000, 20000))
    assert (tmp_path / "imgs" / "bomb.png").stat().st_size < 200
    with pytest.raises(DataError, match="bomb.png: too large to decode safely"):
        load_images(f"folder:{tmp_path / 'imgs'}")
    # over PIL's limit but under twice it (PIL would only warn): refused from the header too
    (tmp_path / "imgs" / "bomb.png").write_bytes(png_declaring(10000, 10000))
    with pytest.raises(DataError, match="header declares 10000×10000 pixels"):
        load_images(f"folder:{tmp_path / 'imgs'}")


def test_corrupt_and_lying_idx_files(tmp_path):
    raw = struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 16, 16) + bytes(4 * 256)
    packed = gzip.compress(raw)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(packed[:len(packed) // 2] + b"garbage" * 10)
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_images(f"idx:{tmp_path / 'train-images-idx3-ubyte.gz'}")
    # a tiny file whose header claims 4 billion 64k×64k images: refused before reading
    (tmp_path / "big-idx3-ubyte").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2**32 - 1, 65535, 65535))
    with pytest.raises(DataError, match="needs ~.*this machine has"):
        load_images(f"idx:{tmp_path / 'big-idx3-ubyte'}")
    (tmp_path / "cut-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header is cut short"):
        load_images(f"idx:{tmp_path / 'cut-idx3-ubyte'}")


def test_too_small_images_are_refused_before_training(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((40, 1, 1, 3), np.uint8))
    with pytest.raises(DataError, match=r"one.npy: images of 1×1 pixels .* SSIM.* at least 3×3"):
        aelab.train(train_cfg(source=f"npy:{tmp_path / 'one.npy'}"), out=tmp_path / "run")
    np.save(tmp_path / "six.npy", np.zeros((40, 6, 6, 3), np.uint8))
    conv = train_cfg(source=f"npy:{tmp_path / 'six.npy'}")
    conv["model"] = {"type": "conv", "channels": [4, 4, 4]}
    with pytest.raises(DataError, match=r"6×6 pixels .* conv model's down-sampling needs at least 8×8"):
        aelab.train(conv, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_memory_estimates_refuse_before_allocating(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "huge.npy", mode="w+", dtype=np.uint8, shape=(1, 30000, 30000, 3))
    del mm
    assert os.stat(tmp_path / "huge.npy").st_blocks * 512 < 10**6  # sparse on disk
    with pytest.raises(ConfigError, match=r"huge.npy: images of 30000×30000 pixels: the fcn model .* needs ~.* TB; "
                                          r"this machine has"):
        aelab.train(train_cfg(source=f"npy:{tmp_path / 'huge.npy'}"), out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"model.latent_dim=1000000000: .* needs ~[\d.]+ [GT]B; this machine has"):
        aelab.train(tiny_config(model={"type": "fcn", "latent_dim": 10**9}), out=tmp_path / "run")
    with pytest.raises(DataError, match=r"100,000,000,000 faces of 64×64×3 needs ~.* PB"):
        load_images("builtin:faces?n=100000000000")
    assert not (tmp_path / "run").exists()


def test_seed_bounds_bools_nan_and_encoding(tmp_path):
    assert config_from_dict({"seed": 2**32 - 1}).seed == 2**32 - 1
    for override in ("seed=99999999999999999999999", "seed=-1", "seed=true"):
        with pytest.raises(ConfigError, match="config key 'seed'"):
            config_from_dict({}, [override])
    for override, key in (("train.lr=true", "train.lr"), ("train.epochs=true", "train.epochs"),
                     ("model.hidden=[true]", "model.hidden"), ("data.range=[false, true]", "data.range")):
        with pytest.raises(ConfigError, match=f"'{key}' = .*must be a number, not true/false"):
            config_from_dict({}, [override])
    assert config_from_dict({}, ["train.compile=true"]).train.compile is True  # real bools still work
    with pytest.raises(ConfigError, match="finite"):
        config_from_dict({}, ["train.lr=.nan"])
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_config(tmp_path / "latin1.yaml")


def test_boolean_images_are_refused_with_how_to_convert(tmp_path):
    np.save(tmp_path / "mask.npy", np.zeros((4, 8, 8), bool))
    with pytest.raises(DataError, match=r"mask.npy: boolean images .*astype\(np.uint8\)"):
        load_images(f"npy:{tmp_path / 'mask.npy'}")


@pytest.mark.parametrize(("summary", "needle"), [
    ([1, 2], "expected a JSON object, found a list"),
    ({"input_shape": [3, 16, 16]}, "key 'image_shape' is missing"),
    ({"image_shape": "16x16x3", "input_shape": [3, 16, 16]}, "key 'image_shape' must be 3 positive integers"),
    ({"image_shape": [16, 16, 3], "input_shape": [3, 10**12, 16]}, "key 'input_shape' must be 3 positive"),
    ({"image_shape": [16, 16, 3], "input_shape": [3, 100000, 100000]}, "does not follow from 'image_shape'"),
    ({"image_shape": [16, 16, True], "input_shape": [3, 16, 16]}, "key 'image_shape' must be"),
])
def test_damaged_summary_json(tiny_run, tmp_path, summary, needle):
    run = tmp_path / "r"
    shutil.copytree(tiny_run.path, run)
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunError, match="summary.json") as err:
        load_run(run)
    assert needle in str(err.value)


def test_edit_image_bomb_and_unwritable_figures(tiny_run, tmp_path):
    from aelab.data.files import read_image_file
    from aelab.figures.latent import edit_figure
    from aelab.latent import edit

    (tmp_path / "bomb.png").write_bytes(png_declaring(20000, 20000))
    with pytest.raises(DataError, match="400,000,000 pixels; at most"):
        read_image_file(tmp_path / "bomb.png", tiny_run.image_shape, what="bomb.png")
    result = edit(tiny_run, tiny_run.val_data().batch(slice(0, 1)), ["0*=2"])
    (tmp_path / "a-file").write_text("x")
    for out, needle in ((tmp_path, "is a folder; give a file name"),
                        (tmp_path / "a-file" / "e.png", "a-file is a file, not a folder"),
                        (Path("/proc/aelab-e.png"), "cannot write /proc/aelab-e.png")):
        with pytest.raises(AelabError, match=needle):
            edit_figure(result, out)


def test_train_out_that_cannot_be_a_folder(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(RunError, match="--out .*a-file is a file, not a folder"):
        aelab.train(train_cfg(), out=tmp_path / "a-file")
    with pytest.raises(RunError, match="a-file is a file, not a folder"):
        aelab.train(train_cfg(), out=tmp_path / "a-file" / "run")
    with pytest.raises(RunError, match="cannot create the run folder /proc/aelab-run"):
        aelab.train(train_cfg(), out="/proc/aelab-run")
    assert (tmp_path / "a-file").read_text() == "x"


def test_interrupt_names_the_step_and_the_resume_command(tmp_path, monkeypatch):
    from aelab.train import Trainer

    save = Trainer._save_checkpoint
    calls = {"n": 0}

    def stop_in_second_epoch(self):
        save(self)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", stop_in_second_epoch)
    out = tmp_path / "cut"
    with pytest.raises(TrainingInterrupted) as err:
        aelab.train(tiny_config(train__epochs=3), out=out)
    msg = str(err.value)
    assert msg.startswith("interrupted at step 8 of 12 (epoch 3)"), msg
    assert "keeps the checkpoint of epoch 2 (step 8)" in msg  # the checkpoint just written counts
    assert f"resume with: aelab train {out / 'config.yaml'} --out {out} --resume" in msg
    monkeypatch.undo()
    # the printed command is the one that works
    assert aelab.train(out / "config.yaml", out=out, resume=True).summary["steps"] == 12


# -- properties: any input works or raises AelabError ---------------------------------------------

KEYS = st.sampled_from(["seed", "name", "train.lr", "train.epochs", "train.batch_size", "train.max_steps",
                        "train.input_noise", "train.optimizer", "train.device", "data.range", "data.val_fraction",
                        "data.select_labels", "data.preprocess", "model.type", "model.latent_dim", "model.hidden",
                        "model.channels", "model.backbone", "model.encoders", "model", "train", "data", "x.y"])
VALUES = st.one_of(st.sampled_from(["true", "null", "[]", "{}", "-1", "0", "1e-3", ".nan", ".inf", "1e400", "[1, 2]",
                                    "{a: 1}", "[true]", "99999999999999999999999", "vae", "conv", "'", "[", "&a x",
                                    "!!python/object:os.system x", "{type: conv, channels: [1]}"]),
                   st.integers().map(str), st.floats().map(str), st.text(max_size=12))


@FEW
@given(st.lists(st.tuples(st.one_of(KEYS, st.text(max_size=10)), VALUES), max_size=4))
def test_config_overrides_work_or_fail_cleanly(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    with contextlib.suppress(AelabError):
        config_from_dict(tiny_config(), overrides)


@FEW
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.dictionaries(st.text(max_size=8), st.recursive(st.none() | st.booleans() | st.integers()
                                                                   | st.floats() | st.text(max_size=8),
                                                                   lambda c: st.lists(c, max_size=3)
                                                                   | st.dictionaries(st.text(max_size=5), c,
                                                                                     max_size=3)),
                                 max_size=4).map(lambda d: yaml.safe_dump(d).encode())))
def test_config_files_work_or_fail_cleanly(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with contextlib.suppress(AelabError):
        load_config(path)


@FEW
@given(st.text(max_size=30))
def test_parse_override_works_or_fails_cleanly(item):
    with contextlib.suppress(AelabError):
        parse_override(item)


ARRAYS = st.builds(
    lambda dtype, shape, fill: np.full(shape, fill).astype(dtype),
    st.sampled_from(["uint8", "int16", "int64", "float32", "float64", "bool", "complex64", "U3", "float16"]),
    st.lists(st.integers(0, 5), max_size=5).map(tuple),
    st.sampled_from([0, 1, 255, 256, -1, 0.5, 2.0, float("nan"), float("inf")]),
)


def _load(source: str) -> None:
    with contextlib.suppress(AelabError):
        load_images(source)


@FEW
@given(ARRAYS, st.binary(max_size=64), st.integers(0, 3))
def test_npy_files_work_or_fail_cleanly(tmp_path, array, noise, how):
    path = tmp_path / "x.npy"
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getvalue()
    # 0: intact; 1: cut short; 2: noise after the magic; 3: bytes flipped in the header
    data = [data, data[:len(data) // 2], data[:6] + noise, data[:8] + noise + data[8 + len(noise):]][how]
    path.write_bytes(data)
    _load(f"npy:{path}")


@FEW
@given(st.dictionaries(st.sampled_from(["images", "labels", "x", "y", "x_train", "y_train", "x_test", "y_test",
                                        "other"]), ARRAYS, max_size=3),
       st.sampled_from(["", "#images", "#x", "#nope"]), st.booleans(), st.binary(max_size=40))
def test_npz_files_work_or_fail_cleanly(tmp_path, arrays, key, raw_member, junk):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(f"{name}.npy", junk if raw_member and name == "images" else buf.getvalue())
    _load(f"npz:{path}{key}")


@FEW
@given(st.integers(0, 255), st.integers(0, 255), st.lists(st.integers(0, 2**32 - 1), max_size=4),
       st.binary(max_size=300), st.booleans())
def test_idx_files_work_or_fail_cleanly(tmp_path, kind, ndim, dims, body, gz):
    raw = bytes([0, 0, kind, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + body
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw)[: len(raw) // 2 + 10] if gz and body[:1] == b"\0" else
                     gzip.compress(raw) if gz else raw)
    _load(f"idx:{path}")


@FEW
@given(st.lists(st.one_of(st.binary(max_size=100), st.tuples(st.integers(1, 30000), st.integers(1, 30000))
                          .map(lambda wh: png_declaring(*wh))), min_size=1, max_size=3),
       st.sampled_from([".png", ".jpg", ".gif"]))
def test_folders_work_or_fail_cleanly(tmp_path, files, suffix):
    root = tmp_path / "imgs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for i, content in enumerate(files):
        (root / f"{i}{suffix}").write_bytes(content)
    _load(f"folder:{root}")


SMALL = st.integers(-3, 24).map(str)
HUGE = st.integers(10**9, 10**30).map(str)


@FEW
@given(st.sampled_from(["faces", "digits", "lfw", "face", ""]),
       st.dictionaries(st.sampled_from(["n", "size", "seed", "anomaly_fraction", "bogus"]),
                       st.one_of(SMALL, HUGE, st.text(max_size=5), st.floats().map(str)), max_size=4))
def test_builtin_queries_work_or_fail_cleanly(name, params):
    from urllib.parse import urlencode

    params.setdefault("n", "5")  # a default 5000 faces per example would be slow, not wrong
    _load(f"builtin:{name}?{urlencode(params)}")


@FEW
@given(st.one_of(st.text(max_size=30),
                 st.lists(st.tuples(st.sampled_from(["0", "-1", "all", "2:5", ":", "-3:", "99", "1:1", "9" * 30]),
                                    st.sampled_from(["=", "+=", "-=", "*=", "/=", "==", "*"]),
                                    st.sampled_from(["2", "0", "-1.5", "1e39", "1e400", "nan", ".5", "x"])),
                          min_size=1, max_size=3).map(lambda ops: ",".join("".join(o) for o in ops))),
       st.integers(1, 12))
def test_edits_work_or_fail_cleanly(text, size):
    try:
        edit = parse_edit(text, size)
    except AelabError:
        return
    out = apply_edits(np.zeros((2, size), np.float32), edit)
    assert out.shape == (2, size) and np.isfinite(out).all() or any(o.op == "*=" for o in edit.ops)


@FEW
@given(st.one_of(st.text(alphabet="0123456789-, x", max_size=20), st.text(max_size=10),
                 st.one_of(st.integers(0, 10**4), st.integers(10**7, 10**12)).map(lambda n: f"0-{n}")))
def test_id_lists_work_or_fail_cleanly(text):
    try:
        ids = parse_ids(text)
    except AelabError:
        return
    assert ids and min(ids) >= 0 and len(ids) == len(set(ids))


# -- the command line ------------------------------------------------------------------------------

from _cli import aelab_each  # noqa: E402  the CLI in subprocesses, and its one-line-error check
from _cli import one_line_exit_2 as bad  # noqa: E402


@pytest.mark.slow
def test_cli_bad_inputs_are_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(train_cfg()))
    np.save(tmp_path / "one.npy", np.zeros((8, 1, 1, 3), np.uint8))
    big, tiny, onto_file = aelab_each(
        ("train", cfg, "--set", "model.latent_dim=1000000000", "--out", tmp_path / "b"),
        ("train", cfg, "--set", f"data.source=npy:{tmp_path / 'one.npy'}", "--out", tmp_path / "c"),
        ("train", cfg, "--out", cfg))
    bad(big, "model.latent_dim=1000000000", "this machine has")
    bad(tiny, "one.npy", "3×3")
    bad(onto_file, "is a file, not a folder")
    assert not any((tmp_path / n).exists() for n in "bc")


@pytest.mark.slow
def test_ctrl_c_prints_where_it_stopped_and_how_to_resume(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(train__epochs=100_000)))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "aelab", "train", cfg, "--out", out, "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / CHECKPOINT).exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("aelab: interrupted at step ")
    assert lines[0].endswith(f"resume with: aelab train {out / 'config.yaml'} --out {out} --resume")
    assert not (out / "summary.json").exists()
