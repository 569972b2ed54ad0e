"""Outputs that match the student's data: loaders record the source's layout, dtype and range, and
``augment`` writes its variants back that way (or as asked), in image or round order."""

import json

import numpy as np
import pytest
from _cli import aelab
from _cli import one_line_exit_2 as bad

from aelab.codenoise import augment, select
from aelab.data import load_images
from aelab.data.imageset import SourceFormat
from aelab.errors import AelabError

N, H = 40, 16


@pytest.fixture(scope="module")
def channels_first(tmp_path_factory):
    """A float32 N×3×H×W .npy in [0, 1] with labels, as the HW2 eye set is stored, and its uint8 NHWC twin."""
    folder = tmp_path_factory.mktemp("nchw")
    faces = load_images(f"builtin:faces?n={N}&size={H}&seed=3").batch()
    floats = (faces.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    np.save(folder / "eyes.npy", floats)
    np.save(folder / "labels.npy", np.arange(N) % 3)
    np.save(folder / "nhwc.npy", faces)
    return folder, faces


@pytest.fixture(scope="module")
def eyes(channels_first):
    """The channels-first float set as the data source of the shared tiny run (same 16×16×3 images):
    no training of its own for the fast tests."""
    return f"npy:{channels_first[0] / 'eyes.npy'}"


@pytest.fixture(scope="module")
def nchw_run(trained, channels_first):
    """A run trained on the channels-first float set itself (the slow CLI test)."""
    folder, _ = channels_first
    return trained({"name": "nchw", "seed": 0,
                    "data": {"source": f"npy:{folder / 'eyes.npy'}", "labels": str(folder / "labels.npy"),
                             "val_fraction": 0.25},
                    "model": {"type": "fcn", "hidden": [32], "latent_dim": 3},
                    "train": {"epochs": 1, "batch_size": 16}})


def test_loaders_record_layout_dtype_and_range(channels_first, tmp_path):
    folder, faces = channels_first
    data = load_images(f"npy:{folder / 'eyes.npy'}")
    assert data.source_format == SourceFormat("nchw", "float32", (0.0, 1.0))
    np.testing.assert_array_equal(data.batch(), faces)  # channels-first floats load as the same images
    assert data.subset(np.array([1, 2])).source_format == data.source_format  # views keep it
    assert load_images(f"npy:{folder / 'nhwc.npy'}").source_format == SourceFormat("nhwc", "uint8", (0.0, 255.0))
    np.save(tmp_path / "gray.npy", faces[..., 0].astype(np.float64) / 255)
    assert load_images(f"npy:{tmp_path / 'gray.npy'}").source_format == SourceFormat("nhw", "float64", (0.0, 1.0))
    np.savez(tmp_path / "x.npz", x_train=faces.transpose(0, 3, 1, 2), y_train=np.zeros(N, np.int64),
             x_test=faces[:4] / np.float32(255))
    split = load_images(f"npz:{tmp_path / 'x.npz'}")
    assert split.source_format == SourceFormat("nchw", "uint8", (0.0, 255.0))
    assert split.test.source_format == SourceFormat("nhwc", "float32", (0.0, 1.0))
    assert load_images("builtin:faces?n=4&size=16").source_format == SourceFormat()


def test_augment_writes_the_sources_layout_dtype_and_range(tiny_run, eyes, tmp_path):
    aug = augment(tiny_run, select(tiny_run, "0,7,9", eyes), variants=2, seed=1)
    arrays = aug.arrays()
    images = arrays["images"]
    assert images.dtype == np.float32 and images.shape == (6, 3, H, H) and str(arrays["layout"]) == "nchw"
    assert images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(images, aug.images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
    # asked for: uint8 channels-last, as aelab keeps them
    plain = aug.arrays(layout="nhwc", dtype="uint8")["images"]
    np.testing.assert_array_equal(plain, aug.images)
    # written, and read back as a data source: the same images
    path = aug.save(tmp_path / "aug.npz")[0]
    back = load_images(f"npz:{path}")
    assert back.source_format == SourceFormat("nchw", "float32", (0.0, 1.0))
    np.testing.assert_array_equal(back.batch(), aug.images)


def test_round_order_keeps_images_labels_and_ids_together(tiny_run):
    ids, v = [0, 7, 9], 3
    aug = augment(tiny_run, ids, variants=v, seed=1, id_base=0)
    labels = tiny_run.splits.full.get_labels()[ids]
    by_image, by_round = aug.arrays(), aug.arrays(order="round")
    assert by_image["source_ids"].tolist() == np.repeat(ids, v).tolist()
    assert by_round["source_ids"].tolist() == np.tile(ids, v).tolist()
    assert by_round["variant"].tolist() == np.repeat(np.arange(v), len(ids)).tolist()
    assert by_round["labels"].tolist() == np.tile(labels, v).tolist()
    assert str(by_round["order"]) == "round"
    for row in range(len(ids) * v):  # each row of the round order is the image-order row of the same (id, variant)
        i, k = by_round["source_ids"][row], by_round["variant"][row]
        match = np.flatnonzero((by_image["source_ids"] == i) & (by_image["variant"] == k))
        np.testing.assert_array_equal(by_round["images"][row], by_image["images"][match[0]])


def test_bad_output_options(tiny_run, eyes):
    aug = augment(tiny_run, select(tiny_run, [0], eyes), variants=1)
    for kwargs, needle in [({"layout": "hwc"}, "--layout 'hwc'"), ({"dtype": "int16"}, "--dtype 'int16'"),
                           ({"order": "random"}, "--order 'random'"), ({"layout": "nhw"}, "3 channels")]:
        with pytest.raises(AelabError, match=needle):
            aug.arrays(**kwargs)


@pytest.mark.slow
def test_cli_round_trip_of_a_channels_first_float_set(nchw_run, tmp_path):
    assert nchw_run.splits.full.source_format.layout == "nchw"  # the run's own data keeps it through the split
    res = aelab("augment", nchw_run.path, "--ids", "1-3", "--id-base", "1", "--variants", "2", "--order", "round",
                "--out", tmp_path / "aug.npz", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["images"] == [6, 3, H, H] and (out["layout"], out["dtype"], out["range"]) == ("nchw", "float32",
                                                                                            [0.0, 1.0])
    with np.load(tmp_path / "aug.npz") as z:
        assert z["images"].dtype == np.float32 and z["images"].shape == (6, 3, H, H)
        assert z["source_ids"].tolist() == [1, 2, 3, 1, 2, 3] and z["labels"].tolist() == [0, 1, 2, 0, 1, 2]
        expected = augment(nchw_run, "0-2", 2, 0.5, 0).arrays(order="round")["images"]
        np.testing.assert_array_equal(z["images"], expected)
    res = aelab("augment", nchw_run.path, "--ids", "0", "--layout", "nhwc", "--dtype", "uint8", "--format", "npy",
                "--out", tmp_path / "u.npz")
    assert res.returncode == 0 and "5×16×16×3 uint8 images in [0, 255] (nhwc" in " ".join(res.stdout.split())
    assert np.load(tmp_path / "u_data.npy").dtype == np.uint8
    bad(aelab("augment", nchw_run.path, "--ids", "0", "--dtype", "f16", "--out", tmp_path / "b.npz"), "--dtype 'f16'")
    assert not (tmp_path / "b.npz").exists()
