"""Headless Chromium for the report: PDF output and the check that the page renders as a reader sees it.

Chromium is found on the PATH (Debian's ``chromium``, ``chromium-browser``,
Google Chrome) or through ``AELAB_CHROMIUM``; Playwright's own downloaded
browser is the fallback. It runs with networking features off: the report
must render from the file alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from aelab.errors import AelabError

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = ("install a headless browser: `apt-get install chromium` (Debian/Ubuntu) or `playwright install chromium`,"
           " or point AELAB_CHROMIUM at a Chromium binary")


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    env = os.environ.get("AELAB_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch(playwright: Any) -> Any:
    """A headless Chromium browser (system binary first, then Playwright's own), or an AelabError saying how
    to install one."""
    exe = find_chromium()
    try:
        if exe:
            return playwright.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        return playwright.chromium.launch(args=ARGS, headless=True)
    except Exception as exc:  # playwright raises its own Error when the browser is missing or cannot start
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AelabError(f"no headless browser could be started ({first}); {INSTALL}") from None


PDF_EXTRA = "rendering needs the playwright package: pip install 'aelab[pdf]'"


def require_playwright() -> None:
    """Fail before any work when playwright (the optional ``pdf`` extra) is not installed."""
    import importlib.util

    try:
        found = importlib.util.find_spec("playwright") is not None
    except ValueError:  # a "playwright" in sys.modules without a spec
        found = False
    if not found:
        raise AelabError(f"{PDF_EXTRA}, then {INSTALL}")


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise AelabError(f"{PDF_EXTRA}, then {INSTALL}") from None
    return sync_playwright


FOOTER = ('<div style="font: 8px system-ui, sans-serif; color: #5b6670; width: 100%; margin: 0 12mm; '
          'display: flex; justify-content: space-between"><span class="title"></span>'
          '<span>page <span class="pageNumber"></span> of <span class="totalPages"></span></span></div>')
"""The PDF's footer on every page: the report's title and the page number (Chromium fills the spans)."""


def render_pdf(html_path: str | Path, pdf_path: str | Path) -> Path:
    """Print the report to an A4 PDF, backgrounds on, page numbers in the footer, written atomically."""
    from aelab.io import atomic_write

    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    with _sync_playwright()() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(html_path.as_uri(), wait_until="load")
            data = page.pdf(format="A4", print_background=True, display_header_footer=True,
                            header_template="<span></span>", footer_template=FOOTER,
                            margin={"top": "14mm", "bottom": "16mm", "left": "12mm", "right": "12mm"})
        finally:
            browser.close()
    atomic_write(pdf_path, data)
    return pdf_path


CHECK_JS = """() => {
  const imgs = Array.from(document.images);
  const vw = window.innerWidth;
  const wide = Array.from(document.querySelectorAll('body *'))
    .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > vw + 1 || r.left < -1); })
    .filter(e => !e.closest('.scroll'))
    .slice(0, 10).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
  return {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    scroll_width: document.documentElement.scrollWidth, inner_width: vw,
    too_wide: wide,
    sections: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
    parts: Array.from(document.querySelectorAll('section.part h3')).map(h => h.textContent),
  };
}"""


def inspect(html_path: str | Path, width: int = 1200, height: int = 900, screenshot: str | Path | None = None,
            full_page: str | Path | None = None) -> dict[str, Any]:
    """Open the report offline and measure it: images that failed to load, anything wider than the viewport,
    the sections present, and requests that tried to leave the file. Optionally save screenshots."""
    html_path = Path(html_path).resolve()
    requests: list[str] = []
    with _sync_playwright()() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(html_path.as_uri(), wait_until="load")
            result = page.evaluate(CHECK_JS)
            if screenshot:
                page.screenshot(path=str(screenshot))
            if full_page:
                page.screenshot(path=str(full_page), full_page=True)
        finally:
            browser.close()
    result["network_requests"] = requests
    return result
