"""HTML pieces of the report: escaping, number formats, embedded images, tables, model cards.

Everything here turns values that were already read into markup; nothing reads a run.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from aelab.tables import cell as number_cell

BIG_PNG, JPEG_QUALITY = 300_000, 90


def esc(value: Any) -> str:
    """Text safe inside HTML and attribute values."""
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    """An id for anchors: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def fmt(value: Any, digits: int = 4) -> str:
    """A value as the report's tables show it: numbers as ``tables.cell`` writes them (the CLI's and the
    notebook's rule), a missing value as a dash, yes/no, a shape as 64×64×3."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "×".join(str(v) for v in value)
    return number_cell(value, digits)


def column_decimals(values: list[Any], digits: int = 4, most: int = 6) -> int | None:
    """Decimals for a column of numbers, shared by all its cells: enough for ``digits`` significant digits
    of its smallest non-zero value (at most ``most``); None when the column holds no float to format."""
    floats = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not floats or any(not isinstance(v, int | float) or isinstance(v, bool) for v in values if v is not None):
        return None
    if max(floats) >= 1e5:
        return 0
    nonzero = [v for v in floats if v > 0]
    return 0 if not nonzero else max(0, min(most, digits - 1 - math.floor(math.log10(min(nonzero)))))


def _fixed(value: Any, decimals: int) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return fmt(value)
    return f"{value:,.{decimals}f}"


def _compact(raw: bytes) -> bytes | None:
    """A big PNG (image grids of faces) as a JPEG when that is much smaller; the file itself is left alone."""
    try:
        from PIL import Image
    except ImportError:
        return None
    import io

    with Image.open(io.BytesIO(raw)) as im:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        buf = io.BytesIO()
        flat.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue() if buf.tell() < 0.6 * len(raw) else None


def image(path: Path, alt: str) -> str:
    """An <img> with the file embedded as a data URI (PNG, JPEG or SVG); PNGs over ``BIG_PNG`` bytes go in as
    JPEG when that is much smaller, so a report with many image grids stays a few MB."""
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}.get(
        path.suffix.lower(), "application/octet-stream")
    raw = path.read_bytes()
    if kind == "image/png" and len(raw) > BIG_PNG:
        small = _compact(raw)
        if small is not None:
            raw, kind = small, "image/jpeg"
    data = base64.b64encode(raw).decode("ascii")
    return f'<img src="data:{kind};base64,{data}" alt="{esc(alt)}" loading="eager">'


def figure(path: Path | None, caption: str) -> str:
    """A captioned embedded image; nothing when there is no file."""
    if path is None or not Path(path).is_file():
        return ""
    return f'<figure>{image(Path(path), caption)}<figcaption>{esc(caption)}</figcaption></figure>'


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None, headers: dict[str, str] | None = None,
               formats: Callable[[str, Any], str] | None = None, cls: str = "") -> str:
    """A scrollable table; numeric columns right-aligned, the numbers of a column with the same decimals
    (``column_decimals``) unless ``formats`` formats the cells."""
    if not rows:
        return ""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    headers = headers or {}
    numeric = {c for c in cols if all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                                      for r in rows if r.get(c) is not None)
               and any(r.get(c) is not None for r in rows)}
    decimals = {c: column_decimals([r.get(c) for r in rows]) for c in numeric}

    def cell(c: str, value: Any) -> str:
        if formats:
            return formats(c, value)
        return fmt(value) if decimals.get(c) is None else _fixed(value, decimals[c])

    head = "".join(f'<th class="{"num" if c in numeric else ""}">{esc(headers.get(c, c))}</th>' for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if c in numeric else ""}">{esc(cell(c, r.get(c)))}</td>' for c in cols) + "</tr>"
        for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def key_values(pairs: list[tuple[str, Any]]) -> str:
    """A two-column table of the pairs whose value is not None."""
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in pairs if v is not None)
    return f'<div class="scroll"><table class="kv"><tbody>{cells}</tbody></table></div>'


def card_html(card: Any) -> str:
    """A model card: what it is, its loss, its trade-off against the vanilla autoencoder, its paper."""
    p = card.paper
    return (f'<div class="card"><h4>{esc(card.title)}</h4><p class="applies">{esc(card.kind)}: {esc(card.applies)}'
            f"</p><p>{esc(card.what)}</p><dl><dt>Loss</dt><dd>{esc(card.loss)}</dd>"
            f"<dt>Advantage over the vanilla autoencoder</dt><dd>{esc(card.advantage)}</dd>"
            f"<dt>Disadvantage</dt><dd>{esc(card.disadvantage)}</dd>"
            f'<dt>Reference</dt><dd>{esc(p["authors"])} ({esc(p["year"])}). <em>{esc(p["title"])}</em>. '
            f'{esc(p["venue"])}. <a href="{esc(p["url"])}">{esc(p["url"])}</a></dd></dl></div>')


def template(name: str) -> str:
    """A file shipped beside this module (the page template, its CSS)."""
    return (files("aelab") / "report" / name).read_text(encoding="utf-8")


def toc(sections: list[tuple[str, str, str, int]]) -> str:
    """The contents list linking every section."""
    items = "".join(f'<li class="l{level}"><a href="#{esc(sid)}">{esc(title)}</a></li>'
                    for sid, title, _, level in sections)
    return f'<nav class="toc"><h2>Contents</h2><ul>{items}</ul></nav>'
