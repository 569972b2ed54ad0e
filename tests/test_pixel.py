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


def pro_by_loop(maps, masks, max_fpr=0.3, steps=200):
    """PRO as the definition reads: per threshold, every region's overlap averaged (the slow reference)."""
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 2)
    regions, n = ndimage.label(masks, structure)
    normal, by_region = maps[~masks], [maps[regions == r] for r in range(1, n + 1)]
    fprs, overlaps = [], []
    for t in np.quantile(normal, 1 - np.linspace(max_fpr, 0, steps))[::-1]:
        fprs.append((normal > t).mean())
        overlaps.append(np.mean([(region > t).mean() for region in by_region]))
    fpr, overlap = np.array(fprs), np.array(overlaps)
    keep = fpr <= max_fpr
    fpr, overlap = np.r_[0.0, fpr[keep], max_fpr], np.r_[overlap[keep][0], overlap[keep], overlap[keep][-1]]
    return np.trapezoid(overlap, fpr) / max_fpr


@pytest.mark.parametrize("seed", range(4))
def test_pro_matches_the_loop_over_thresholds(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((6, 12, 12)) < 0.1 + 0.05 * seed  # regions of many sizes
    maps = rng.random(masks.shape) + masks * rng.random(masks.shape) * 0.8
    if seed == 3:
        maps = np.round(maps, 1)  # ties between defect pixels and thresholds
    assert pro(maps, masks) == pytest.approx(pro_by_loop(maps, masks), abs=1e-9)
    assert pro(maps, masks, max_fpr=0.05, steps=37) == pytest.approx(
        pro_by_loop(maps, masks, 0.05, 37), abs=1e-9)


def test_pro_averages_regions_not_pixels():
    """Regions of 1, 8, 3 and 1 pixels: PRO weighs each region once, whatever its size."""
    masks = np.zeros((4, 10, 10), bool)
    maps = np.zeros(masks.shape)
    normal_values = np.linspace(0, 1, 4 * 100 - 13)  # defect-free pixels spread evenly over [0, 1]
    masks[0, 0, 0] = True          # A: 1 pixel above every defect-free pixel: overlap 1
    masks[1, 2:4, 2:6] = True      # B: 8 pixels, 4 above and 4 below: overlap 0.5
    masks[2, 5, 5:8] = True        # C: 3 pixels below: overlap 0
    masks[3, 9, 9] = True          # D: 1 pixel at 0.9, above the threshold once FPR >= 0.1
    maps[~masks] = normal_values
    maps[0, 0, 0] = 2.0
    maps[1, 2:4, 2:6] = [[2.0, 2.0, -1.0, -1.0], [2.0, 2.0, -1.0, -1.0]]
    maps[2, 5, 5:8] = -1.0
    maps[3, 9, 9] = 0.9
    # D's overlap is 0 for FPR < 0.1 and 1 from 0.1 to 0.3: 2/3 of the area
    per_region = (1 + 0.5 + 0 + 2 / 3) / 4
    pixel_pooled = (1 + 4) / 13 + (1 / 13) * (2 / 3)
    assert per_region - pixel_pooled > 0.1
    assert pro(maps, masks) == pytest.approx(per_region, abs=2e-3)  # the step at FPR 0.1 falls between thresholds


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
    np.testing.assert_array_equal(result.masks, masks[:, 2:14, 3:13])  # the grid the CLI's heat maps outline
    assert "masks" not in result.numbers() and json.dumps(result.numbers())


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
