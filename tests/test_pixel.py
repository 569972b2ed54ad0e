"""Pixel-level anomaly results: masks, pixel AUROC, PRO, and `aelab score --masks`."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aelab.data.sources import load_images
from aelab.errormaps import error_maps
from aelab.errors import AelabError
from aelab.pixel import analyse_pixels, faces_masks, masks_for, pixel_auroc, pro, read_masks, to_model_grid

DEFECTIVE = "builtin:faces?n=60&seed=4&size=16&anomaly_fraction=0.5"


def test_faces_masks_mark_exactly_the_defective_faces():
    images = load_images(DEFECTIVE)
    masks = faces_masks(images)
    assert masks.shape == (60, 16, 16) and masks.dtype == bool
    np.testing.assert_array_equal(masks.reshape(60, -1).any(1), images.get_labels() == 1)
    assert faces_masks(load_images("builtin:digits")) is None
    subset = images.subset(np.array([5, 2, 40]))  # masks follow the ids of a subset
    np.testing.assert_array_equal(faces_masks(subset), masks[[5, 2, 40]])


def test_pixel_auroc_and_pro_on_known_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((40, 16, 16), bool)
    masks[::2, 4:8, 4:8] = True  # one 4×4 region in every other image
    perfect = masks + rng.random(masks.shape) * 0.5
    assert pixel_auroc(perfect, masks) == 1.0 and pro(perfect, masks) == pytest.approx(1.0)
    assert pixel_auroc(-perfect, masks) == 0.0 and pro(-perfect, masks) == pytest.approx(0.0, abs=1e-9)
    # half of the regions above every defect-free pixel, half below: the overlap is 0.5 at every FPR
    half = perfect.copy()
    half[::4] = np.where(masks[::4], -1.0, half[::4])
    assert pro(half, masks) == pytest.approx(0.5, abs=1e-9)
    # an uninformative map: overlap ≈ FPR, area 0.3²/2 over 0.3 = 0.15
    noise = rng.random((400, 16, 16))
    big = np.zeros_like(noise, bool)
    big[:, 2:14, 2:14] = True
    assert pro(noise, big) == pytest.approx(0.15, abs=0.01)
    assert pixel_auroc(noise, big) == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_masks_go_through_the_geometric_steps(tiny_run, trained):
    from conftest import tiny_config

    images = load_images(DEFECTIVE)
    masks = faces_masks(images)
    np.testing.assert_array_equal(to_model_grid(tiny_run, masks), masks)  # no geometric step: unchanged
    cropped = trained(tiny_config(data={"source": "builtin:faces?n=160&size=16", "val_fraction": 0.25,
                                        "preprocess": [{"crop": [2, 3, 12, 10]}]}))
    np.testing.assert_array_equal(to_model_grid(cropped, masks), masks[:, 2:14, 3:13])
    result = analyse_pixels(cropped, images, masks)
    maps = error_maps(cropped, images)[2]
    assert result.pixel_auroc == pytest.approx(pixel_auroc(maps, masks[:, 2:14, 3:13]), abs=1e-9)
    assert result.n_with_defects == 30 and 0 <= result.pro <= 1


def test_user_masks_and_their_errors(tmp_path):
    images = load_images(DEFECTIVE)
    np.save(tmp_path / "m.npy", faces_masks(images).astype(np.uint8) * 255)
    np.testing.assert_array_equal(read_masks(f"npy:{tmp_path / 'm.npy'}", images), faces_masks(images))
    np.save(tmp_path / "short.npy", np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(AelabError, match="3 masks of 16×16 for 60 images"):
        read_masks(f"npy:{tmp_path / 'short.npy'}", images)
    with pytest.raises(AelabError, match="carry no defect masks"):
        masks_for("auto", load_images("builtin:digits"))
    assert masks_for(None, load_images("builtin:digits")) is None


@pytest.mark.slow
def test_score_cli_with_masks(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run.path, tmp_path / "run")  # labelled data: score records anomaly.json in the run
    args = ["score", run, "--data", DEFECTIVE, "--masks", "auto", "--out", tmp_path / "s.csv",
            "--maps", tmp_path / "maps", "--json"]
    res = subprocess.run([sys.executable, "-m", "aelab", *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert res.returncode == 0, res.stderr
    pixel = json.loads(res.stdout)["pixel"]
    images = load_images(DEFECTIVE)
    want = pixel_auroc(error_maps(tiny_run, images)[2], faces_masks(images))
    assert pixel["pixel_auroc"] == pytest.approx(want, abs=1e-9) and pixel["n_with_defects"] == 30
    assert (tmp_path / "maps" / "worst.png").stat().st_size > 2000
