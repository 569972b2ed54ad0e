"""The latent explorer in a real headless Chromium: pick, drag, reset, diff, sample, interpolate,
copy as command, switch runs, upload; the screenshot is kept as tests/artifacts/explorer.png."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
AELAB = Path(sys.executable).with_name("aelab")
FACES = "builtin:faces?n=300&seed=1"

# The pixels of an <img> as the page has them (RGBA, row-major), once its current src is decoded.
PIXELS = """async (id) => {
  const img = document.getElementById(id);
  if (!img.getAttribute('src')) return null;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
}"""


@pytest.fixture(scope="module")
def sync_playwright():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (done by .ci/run) to run the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (python) is not installed: pip install playwright")
    return sync_playwright


@pytest.fixture(scope="module")
def runs(trained, sync_playwright) -> list[Path]:
    common = {"seed": 0, "data": {"source": FACES, "val_fraction": 0.1}, "train": {"epochs": 2, "batch_size": 32}}
    ae = trained({"name": "ae", "model": {"type": "fcn", "hidden": [128, 32], "latent_dim": 10}, **common})
    vae = trained({"name": "vae", "model": {"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 12},
                   **common})
    return [ae.path, vae.path]


@pytest.fixture(scope="module")
def server(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(AELAB), "serve", *map(str, runs), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url + "api/runs", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "aelab serve did not come up"
        time.sleep(0.25)
    yield url
    proc.terminate()
    proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def page(server, sync_playwright):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 720})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server)
        idle(pg)
        pg.errors = errors
        yield pg
        browser.close()


def idle(page, timeout: float = 30_000) -> None:
    """Wait until no decode is in flight or waiting."""
    page.wait_for_selector('body[data-pending="0"]', timeout=timeout)


def pixels(page, element: str) -> np.ndarray:
    data = page.evaluate(PIXELS, element)
    assert data is not None, f"#{element} has no image"
    return np.asarray(data, dtype=np.uint8).reshape(64, 64, 4)


def wait_pixels(page, element: str, until, timeout: float = 20.0) -> np.ndarray:
    deadline = time.time() + timeout
    while True:
        arr = pixels(page, element)
        if until(arr):
            return arr
        assert time.time() < deadline, f"#{element} never reached the expected pixels"
        time.sleep(0.05)


def drag(page, index: int, start: float, stop: float, release: bool = True):
    """Press on slider ``index``'s track at fraction ``start``, move to ``stop`` in small steps."""
    box = page.locator(f'#sliders input[data-index="{index}"]').bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * stop, y, steps=12)
    if release:
        page.mouse.up()


def test_explorer_end_to_end(page, runs, tmp_path):
    # the page came up on the first run with its first image and a slider per element
    assert page.locator("#run-select option").count() == 2
    assert page.locator("#sliders input[type=range]").count() == 10
    thumbs = page.locator("#gallery .thumb")
    assert thumbs.count() == 16

    # pick an image: original, reconstruction, and an unedited decode equal to the reconstruction
    chosen = thumbs.nth(3).get_attribute("data-id")
    thumbs.nth(3).click()
    page.wait_for_function(f"document.getElementById('cap-original').textContent === '#{chosen}'")
    idle(page)
    recon = pixels(page, "img-recon")
    original = pixels(page, "img-original")
    assert (original != recon).any()
    np.testing.assert_array_equal(pixels(page, "img-edited"), recon)

    # dragging a slider re-decodes while the button is still held; the reconstruction stays
    drag(page, 0, 0.5, 0.98, release=False)
    edited = wait_pixels(page, "img-edited", lambda a: (a != recon).any())
    page.mouse.up()
    idle(page)
    drag(page, 3, 0.5, 0.02)
    idle(page)
    edited = pixels(page, "img-edited")
    assert np.abs(edited.astype(int) - recon.astype(int)).max() > 8
    np.testing.assert_array_equal(pixels(page, "img-recon"), recon)
    assert page.locator("#sliders .slider.changed").count() == 2
    assert "2 elements changed" in page.text_content("#cap-edited")

    # the difference map shows up when toggled
    page.check("#diff-toggle")
    idle(page)
    assert page.is_visible("#img-diff")
    diff = wait_pixels(page, "img-diff", lambda a: a[..., :3].std() > 0)
    assert diff.shape == (64, 64, 4)

    # copy as command: the aelab edit line for this image and these two elements
    page.click("#btn-command")
    page.wait_for_selector("#command-box:not([hidden])")
    command = page.text_content("#command-text")
    assert command.startswith(f"aelab edit {runs[0]} --id {chosen} --edit 0=") and ",3=" in command

    # reset: the edited decode is the reconstruction again, pixel for pixel
    page.click("#btn-reset")
    idle(page)
    wait_pixels(page, "img-edited", lambda a: np.array_equal(a, recon))
    assert page.locator("#sliders .slider.changed").count() == 0

    # a random sample decodes something else
    page.click("#btn-random")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('random code')")
    idle(page)
    wait_pixels(page, "img-edited", lambda a: (a != recon).any())

    # interpolate to a second image: the strip of frames and a mix slider
    page.click("#btn-interp")
    assert page.is_visible("#pick-hint")
    thumbs.nth(7).click()
    page.wait_for_selector("#interp:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 11")
    idle(page)
    assert page.text_content("#mix-value") == "t = 0.50"
    page.locator("#interp-strip img").nth(0).click()
    idle(page)
    wait_pixels(page, "img-edited", lambda a: np.array_equal(a, recon))
    page.click("#interp-close")

    # the other run, on the same image
    page.select_option("#run-select", index=1)
    page.wait_for_function("document.querySelectorAll('#sliders input[type=range]').length === 12")
    page.wait_for_function(f"document.getElementById('cap-original').textContent === '#{chosen}'")
    idle(page)
    np.testing.assert_array_equal(pixels(page, "img-original"), original)
    assert (pixels(page, "img-recon") != recon).any()
    page.select_option("#run-select", index=0)
    page.wait_for_function("document.querySelectorAll('#sliders input[type=range]').length === 10")
    idle(page)

    # upload a PNG: a flipped copy of the picked image, 64×64 like the run's input, so it comes back exact
    flipped = original[:, ::-1, :3]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(flipped)).save(buf, format="PNG")
    upload = tmp_path / "upload.png"
    upload.write_bytes(buf.getvalue())
    page.set_input_files("#upload", str(upload))
    page.wait_for_function("document.getElementById('cap-original').textContent === 'upload: upload.png'")
    idle(page)
    np.testing.assert_array_equal(pixels(page, "img-original")[..., :3], flipped)
    assert page.is_disabled("#btn-command")

    # back to a data image, one slider moved, for the screenshot
    thumbs.nth(3).click()
    page.wait_for_function(f"document.getElementById('cap-original').textContent === '#{chosen}'")
    drag(page, 2, 0.5, 0.9)
    idle(page)
    page.click("#btn-command")
    page.wait_for_selector("#command-box:not([hidden])")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1440
    assert page.errors == []
