import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from aelab.data import Preprocess, load_images
from aelab.data.batches import epoch_order
from aelab.data.ids import parse_ids
from aelab.errors import AelabError, ConfigError, DataError


def test_npy_uint8_is_memory_mapped(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 8, 6, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    data = load_images(f"npy:{tmp_path / 'x.npy'}")
    assert isinstance(data.images, np.memmap)
    assert data.shape == (8, 6, 3) and len(data) == 20
    np.testing.assert_array_equal(data.batch(np.array([5, 1, 7])), arr[[5, 1, 7]])


def test_npy_float_grayscale_and_channels_first(tmp_path):
    x = np.linspace(0, 1, 4 * 5 * 5, dtype=np.float32).reshape(4, 5, 5)
    np.save(tmp_path / "g.npy", x)
    data = load_images(f"npy:{tmp_path / 'g.npy'}")
    assert data.shape == (5, 5, 1)
    np.testing.assert_array_equal(data.batch()[..., 0], np.rint(x * 255).astype(np.uint8))
    chw = np.zeros((3, 3, 10, 12), dtype=np.uint8)
    np.save(tmp_path / "c.npy", chw)
    assert load_images(f"npy:{tmp_path / 'c.npy'}").shape == (10, 12, 3)


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros((4, 5), np.uint8), "expected images N×H×W×C or N×H×W"),
        (np.full((2, 4, 4, 3), np.nan, np.float32), "image 0 has NaN or infinite pixels"),
        (np.full((2, 4, 4, 3), 3.0, np.float32), "float images must be in [0, 1]"),
        (np.zeros((2, 4, 4, 7), np.uint8), "expected 1, 3 or 4 channels"),
        (np.zeros((0, 4, 4, 3), np.uint8), "holds no images"),
        (np.full((2, 4, 4, 3), 300, np.int32), "integer images must be in 0..255"),
    ],
)
def test_npy_bad_arrays(tmp_path, array, needle):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError) as err:
        load_images(f"npy:{tmp_path / 'bad.npy'}")
    assert needle in str(err.value) and "bad.npy" in str(err.value)


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_images(f"npy:{tmp_path / 'none.npy'}")
    with pytest.raises(DataError, match="unknown data source kind 'npyy'.*did you mean 'npy'"):
        load_images("npyy:x")
    with pytest.raises(DataError, match="unknown built-in data set 'face'.*did you mean 'faces'"):
        load_images("builtin:face")
    with pytest.raises(DataError, match="unknown parameter 'anomaly'"):
        load_images("builtin:faces?n=4&anomaly=0.1")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(DataError, match="not a .npy file"):
        load_images(f"npy:{tmp_path / 'text.npy'}")


def test_npz_keys_labels_and_test_split(tmp_path):
    rng = np.random.default_rng(1)
    xt, yt = rng.integers(0, 256, (10, 4, 4), dtype=np.uint8), np.arange(10) % 3
    xs, ys = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), np.arange(6) % 3
    np.savez(tmp_path / "d.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    data = load_images(f"npz:{tmp_path / 'd.npz'}")
    assert len(data) == 10 and data.get_labels().tolist() == yt.tolist()
    assert data.test is not None and len(data.test) == 6 and data.test.get_labels().tolist() == ys.tolist()
    assert len(load_images(f"npz:{tmp_path / 'd.npz'}#x_test")) == 6
    with pytest.raises(DataError, match="no array 'x_tst'.*did you mean 'x_test'"):
        load_images(f"npz:{tmp_path / 'd.npz'}#x_tst")


def test_labels_file_must_match_length(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 4, 4, 3), np.uint8))
    np.save(tmp_path / "y.npy", np.arange(4))
    with pytest.raises(DataError, match="4 labels for 5 images"):
        load_images(f"npy:{tmp_path / 'x.npy'}", labels=str(tmp_path / "y.npy"))


def _png(path, size, colour):
    Image.new("RGB", size, colour).save(path)


def test_folder_labels_from_subfolders_and_size_errors(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png", (8, 6), colour)
    data = load_images(f"folder:{tmp_path}")
    assert data.shape == (6, 8, 3) and data.class_names == ["cats", "dogs"]
    assert data.get_labels().tolist() == [0, 0, 0, 1, 1, 1]
    assert data.batch([0])[0, 0, 0].tolist() == [255, 0, 0]
    _png(tmp_path / "cats" / "big.png", (10, 10), (0, 255, 0))
    with pytest.raises(DataError, match="images of different sizes.*add a resize step"):
        load_images(f"folder:{tmp_path}")
    assert load_images(f"folder:{tmp_path}", size=(5, 5)).shape == (5, 5, 3)


def _idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_idx_pairs(tmp_path, gz):
    suffix = ".gz" if gz else ""
    images = np.random.default_rng(2).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    _idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    _idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(7) % 10, gz)
    _idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:3], gz)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.arange(3), gz)
    data = load_images(f"idx:{tmp_path / f'train-images-idx3-ubyte{suffix}'}")
    np.testing.assert_array_equal(data.batch()[..., 0], images)
    assert data.get_labels().tolist() == list(range(7))
    folder = load_images(f"idx:{tmp_path}")
    assert len(folder.test) == 3
    (tmp_path / "junk-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        load_images(f"idx:{tmp_path / 'junk-ubyte'}")


def test_builtins():
    digits = load_images("builtin:digits")
    assert digits.shape == (8, 8, 1) and len(digits) == 1797 and digits.batch().max() == 255
    lfw = load_images("builtin:lfw")
    assert lfw.shape == (25, 25, 1) and np.bincount(lfw.get_labels()).tolist() == [100, 100]
    faces = load_images("builtin:faces?n=50&anomaly_fraction=0.2&seed=3")
    assert faces.shape == (64, 64, 3) and faces.get_labels().sum() == 10
    assert set(faces.get_factors()) >= {"skin_tone", "head_turn"}


def test_subsets_select_and_split_are_views():
    data = load_images("builtin:digits")
    threes = data.select_labels([3])
    assert set(threes.get_labels()) == {3} and threes.images is data.images
    train, val = threes.split(0.25, seed=0)
    assert len(train) + len(val) == len(threes) and not set(train.ids) & set(val.ids)
    again = threes.split(0.25, seed=0)[1]
    assert val.ids.tolist() == again.ids.tolist()
    with pytest.raises(DataError, match="keeps no image"):
        data.select_labels([42])
    with pytest.raises(DataError, match="no image with id 5000"):
        data.by_ids([0, 5000])


def test_preprocess_matches_manual_computation():
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    pre = Preprocess([{"crop": [10, 0, 28, 64]}, "grayscale"], (-1, 1))
    x = pre(batch)
    assert x.shape == (4, 1, 28, 64) and pre.output_shape((64, 64, 3)) == (1, 28, 64)
    manual = (batch[:, 10:38].astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114]) * 2 - 1
    np.testing.assert_allclose(x[:, 0].numpy(), manual, atol=1e-5)
    unit = Preprocess([], (0, 1))
    np.testing.assert_array_equal(unit.inverse(unit(batch)), batch)
    pm = Preprocess([], (-1, 1))
    np.testing.assert_array_equal(pm.inverse(pm(batch)), batch)
    resized = Preprocess([{"resize": 32}, {"center_crop": 16}])(batch)
    assert resized.shape == (4, 3, 16, 16) and resized.min() >= -1 and resized.max() <= 1
    from PIL import Image  # an independent resize: PIL's bilinear (antialiased), then the middle 16×16

    pil = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR)) for im in batch])
    expected = pil[:, 8:24, 8:24].transpose(0, 3, 1, 2) / 255 * 2 - 1
    np.testing.assert_allclose(resized.numpy(), expected, atol=2 / 255)


def test_preprocess_layouts_hold_the_same_values():
    """Conv training asks for channels_last (no reordering copy); values equal the plain layout's."""
    batch = np.random.default_rng(4).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    for steps, value_range in (([], (-1, 1)), ([], (0, 1)), ([{"crop": [1, 1, 5, 4]}], (-1, 1))):
        pre = Preprocess(steps, value_range)
        plain, last = pre(batch), pre(batch, memory_format=torch.channels_last)
        assert plain.is_contiguous() and last.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(last, plain, rtol=0, atol=0)
        lo, hi = value_range
        top, left, h, w = steps[0]["crop"] if steps else (0, 0, 8, 6)
        manual = batch[:, top:top + h, left:left + w].transpose(0, 3, 1, 2) / 255 * (hi - lo) + lo
        np.testing.assert_allclose(plain.numpy(), manual, atol=1e-6)


def test_preprocess_errors():
    with pytest.raises(ConfigError, match="unknown step 'resise'.*did you mean 'resize'"):
        Preprocess(["resise"])
    with pytest.raises(ConfigError, match="crop"):
        Preprocess([{"crop": [1, 2]}])
    with pytest.raises(DataError, match="does not fit"):
        Preprocess([{"crop": [10, 0, 60, 64]}]).output_shape((64, 64, 3))
    with pytest.raises(DataError, match="expected a uint8 batch"):
        Preprocess()(torch.zeros(2, 4, 4, 3))


def test_epoch_order_is_seeded_permutation(tmp_path):
    a, b = epoch_order(100, 0, 1), epoch_order(100, 0, 1)
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(100))
    assert epoch_order(100, 0, 2).tolist() != a.tolist()
    np.save(tmp_path / "m.npy", np.zeros((1000, 2, 2, 1), np.uint8))
    data = load_images(f"npy:{tmp_path / 'm.npy'}")
    order = epoch_order(len(data), 0, 0, data)
    assert sorted(order.tolist()) == list(range(1000))


def test_parse_ids():
    assert parse_ids("1-5,226-228,3") == [1, 2, 3, 4, 5, 226, 227, 228]
    assert parse_ids("0,5,9") == [0, 5, 9]
    for bad in ("5-1", "a", "1-x", ""):
        with pytest.raises(AelabError):
            parse_ids(bad)


def test_split_seed_holds_out_the_same_images_for_every_run_seed():
    from aelab.config import DataConfig
    from aelab.data.splits import make_splits

    data = DataConfig(source="builtin:digits", val_fraction=0.2, range=(0, 1))
    by_seed = [make_splits(data, s).val.batch() for s in (0, 1)]
    assert not np.array_equal(*by_seed)  # by default the run's seed draws the split
    shared = data.model_copy(update={"split_seed": 7})
    a, b = (make_splits(shared, s) for s in (0, 1))
    np.testing.assert_array_equal(a.val.batch(), b.val.batch())
    np.testing.assert_array_equal(a.val.batch(), make_splits(data, 7).val.batch())
    assert len(a.train) + len(a.val) == len(a.full)
