"""The latent explorer in a real headless Chromium: pick, drag, reset, diff, sample, interpolate,
copy as command, switch runs, upload, splits and id jumps, downloads; the layout at 1280 and 1024 px
(one row of panels, whole slider labels and thumbnails, a one-line header). Screenshots are kept in
tests/artifacts/."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _cli import AELAB
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
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
def browser(sync_playwright):
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(server, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 720})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server)
    idle(pg)
    pg.errors = errors
    yield pg
    context.close()


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
    strip = page.locator("#gallery").bounding_box()
    assert thumbs.count() == int(strip["width"] + 8) // 80  # as many whole thumbnails as the strip holds

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
    page.click("#btn-command")  # an upload's command reads the file with --image
    page.wait_for_function("document.getElementById('command-text').textContent.includes('--image upload.png')")
    assert "put the file's path in place of upload.png" in page.text_content("#command-note")

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


# -- layout at the widths people use, splits, id jumps, downloads ----------------------------------------

LAYOUT = """() => {
  const box = (e) => e.getBoundingClientRect();
  const panels = [...document.querySelectorAll('.panel')].filter((p) => !p.hidden).map(box);
  const strip = box(document.getElementById('gallery'));
  const header = [...document.querySelector('.top').children].flatMap((c) =>
    c.classList.contains('chips') ? [...c.children] : [c]).map(box);
  const clipped = [...document.querySelectorAll(
    '#sliders, #gallery, .slider .name, .slider .value, .slider .range, .chip, .thumb span, .panel figcaption')]
    .filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.id || e.textContent);
  return {
    panelTops: panels.map((p) => p.top), panelBottoms: panels.map((p) => p.bottom),
    thumbs: [...document.querySelectorAll('#gallery .thumb')].map(box).map((t) => [t.left, t.right]),
    strip: [strip.left, strip.right],
    headerMiddles: header.map((h) => (h.top + h.bottom) / 2),
    clipped, pageWidth: document.documentElement.scrollWidth, viewport: innerWidth,
    facts: [...document.querySelectorAll('#sliders .facts')]
      .map((f) => [f.textContent, f.querySelectorAll('b').length]),
  };
}"""


def open_page(browser, server, width: int):
    pg = browser.new_page(viewport={"width": width, "height": 800}, accept_downloads=True)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(server)
    idle(pg)
    return pg


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 1024])
def test_layout_fits_with_the_difference_map_and_a_vae(browser, server, width):
    pg = open_page(browser, server, width)
    pg.select_option("#run-select", index=1)  # the VAE: the longest header
    pg.wait_for_function("document.querySelectorAll('#sliders input[type=range]').length === 12")
    pg.check("#diff-toggle")
    pg.wait_for_function("document.querySelectorAll('#sliders .facts b').length === 24")  # two factors each
    pg.locator('#sliders input[data-index="1"]').scroll_into_view_if_needed()
    drag(pg, 1, 0.5, 0.95)
    idle(pg)
    pg.wait_for_function("document.getElementById('cap-edited').textContent === '1 element changed'")
    pg.evaluate("window.scrollTo(0, 0)")
    got = pg.evaluate(LAYOUT)
    assert len(got["panelTops"]) == 4
    assert max(got["panelTops"]) - min(got["panelTops"]) < 1  # the fourth panel sits beside the first
    assert got["pageWidth"] <= got["viewport"]  # nothing sticks out sideways
    assert got["clipped"] == []  # slider names, values, ranges, chips and thumbnail ids are whole
    left, right = got["strip"]
    assert len(got["thumbs"]) >= 10 and all(left <= a and b <= right + 0.5 for a, b in got["thumbs"])
    assert max(got["headerMiddles"]) - min(got["headerMiddles"]) < 4  # the header is one line
    for text, named in got["facts"]:
        assert text.startswith("Δ ") and named == 2 and " r " in text
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"explorer-{width}.png"), full_page=True)
    assert pg.errors == []
    pg.close()


@pytest.mark.slow
def test_splits_id_jumps_and_downloads(browser, server, runs, tmp_path):
    from aelab.run import load_run

    run = load_run(runs[0])
    train, val = run.splits.train, run.splits.val
    pg = open_page(browser, server, 1280)
    assert pg.eval_on_selector_all("#split-select option", "os => os.map(o => o.value)") == ["val", "train"]
    first = pg.locator("#gallery .thumb").first.get_attribute("data-id")
    assert first == str(val.ids[0])

    # the training split: its first image is picked, the page counts its images
    pg.select_option("#split-select", "train")
    pg.wait_for_function(f"document.getElementById('cap-original').textContent === '#{train.ids[0]}'")
    idle(pg)
    assert pg.text_content("#page-label").endswith(f"of {len(train)}")

    # jump to an id far down the training split: its page is shown and it is picked
    target = int(train.ids[100])
    pg.fill("#jump-id", str(target))
    pg.click("#jump-go")
    pg.wait_for_function(f"document.getElementById('cap-original').textContent === '#{target}'")
    idle(pg)
    assert pg.locator(f'#gallery .thumb.selected[data-id="{target}"]').count() == 1
    want = run.preprocess.inverse(run.to_model(train.by_ids([target])))[0]
    np.testing.assert_array_equal(pixels(pg, "img-original")[..., :3], want)

    # an id of the other split: a message that says where it is, and the picked image stays
    pg.fill("#jump-id", str(val.ids[0]))
    pg.click("#jump-go")
    pg.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "is in the validation split" in pg.text_content("#status")
    assert pg.text_content("#cap-original") == f"#{target}"

    # downloads: the .npy code decodes to the edited decode on the page, and the PNG is its pixels
    drag(pg, 4, 0.5, 0.1)
    idle(pg)
    shown = pixels(pg, "img-edited")[..., :3]
    with pg.expect_download() as got:
        pg.click("#dl-npy")
    path = tmp_path / got.value.suggested_filename
    got.value.save_as(path)
    assert path.name == f"ae-train{target}-code.npy"
    code = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(run.decode(code[None])[0], shown)
    with pg.expect_download() as got:
        pg.click("#dl-png")
    got.value.save_as(tmp_path / "edited.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "edited.png")), shown)
    assert pg.errors == []
    pg.close()
