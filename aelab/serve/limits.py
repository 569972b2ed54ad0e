"""Every limit the explorer enforces on a request, and the ASGI layers that enforce them.

The values live here, once, and docs/serve.md quotes them. They exist so that
no request, however framed, can make the server hold more than a few MB for
it or raise a 500:

- request bodies are counted as they stream in (``BodyLimit``), so a chunked
  body without a Content-Length is cut off at the limit like a declared one;
- integers in queries and JSON are bounded (``MAX_INT``) before they reach
  numpy, whose int64 conversions overflow on larger ones;
- uploads are refused by their header's pixel count before any pixel is
  decoded (``MAX_PIXELS``);
- anything that still slips through is answered as a one-line JSON 500
  (``InternalErrors``) instead of escaping to the server, which would log a
  traceback and drop the client's keep-alive connection.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aelab.data.files import MAX_PIXELS as _MAX_PIXELS

JSON_LIMIT = 4 * 2**20
"""Largest JSON body accepted, in bytes: 4 MiB, room for a code of ~200k elements written out in full."""
DEFAULT_UPLOAD_MB = 10.0
"""Largest image upload accepted by default, in MiB (``--max-upload-mb``)."""
MULTIPART_OVERHEAD = 64 * 2**10
"""Room for a multipart form's boundaries, headers and small fields on top of the upload limit."""
MAX_PIXELS = _MAX_PIXELS
"""Uploads whose header declares more pixels than this are refused before they are decoded (the value
lives with the one image-file reader, ``aelab.data.files``, which the CLI's ``--image`` uses too)."""
MAX_INT = 2**53 - 1
"""Largest integer accepted anywhere (ids, offsets, seeds, sequence numbers): the largest one a
JavaScript page, and every JSON parser, reads back exactly."""
MAX_NAME = 256
"""Longest run name or client id accepted."""
MAX_FILE_NAME = 255
"""Longest upload file name accepted (it goes into the command the page copies)."""
MAX_CODE_VALUE = 1e6
"""Code values beyond ± this are refused: they only decode to saturated noise."""

UPLOAD_TYPES = ("multipart/form-data", "application/octet-stream")
"""Content types (besides ``image/*``) that ``POST /api/encode`` reads as an upload."""

log = logging.getLogger("aelab.serve")


def mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:.3g} MB"


def body_limit(scope: Scope, upload_limit: int) -> tuple[int, str]:
    """The most bytes this request's body may have, and what to call it in an error.

    Uploads to /api/encode (a multipart form, raw ``image/*`` or octet-stream bytes) get the upload
    limit; every other body is JSON and gets ``JSON_LIMIT``."""
    ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
    if scope.get("path") == "/api/encode" and (ctype.startswith("image/") or ctype in UPLOAD_TYPES):
        extra = MULTIPART_OVERHEAD if ctype == "multipart/form-data" else 0
        return upload_limit + extra, "upload"
    return JSON_LIMIT, "request body"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def _send_json(send: Send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes its limit; ``BodyLimit`` answers it with a 413."""


class BodyLimit:
    """Refuse (413) any request body over its limit (``body_limit``), however it is framed.

    A declared Content-Length over the limit is refused before a byte is read. Otherwise the
    bytes are counted as the app reads them: the read that passes the limit raises
    ``BodyTooLarge``, nothing more is read, and whatever the app makes of that exception
    (FastAPI turns errors in reading a body into a 400) is replaced by the 413. The 413 closes
    the connection, since the rest of the body is never read."""

    def __init__(self, app: ASGIApp, upload_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = body_limit(scope, self.upload_limit)
        declared = _header(scope, b"content-length").strip()
        if declared.isdigit() and int(declared) > limit:
            detail = f"{what} is {int(declared):,} bytes; the limit is {mb(limit)} ({limit:,} bytes)"
            await _send_json(send, 413, detail, close=True)
            return
        received, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:  # the app's own answer to BodyTooLarge: dropped, the 413 below replaces it
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_json(send, 413, f"{what} is over the limit of {mb(limit)} ({limit:,} bytes)", close=True)


class InternalErrors:
    """The last line: an exception that escapes the app is logged and answered with a JSON 500
    that names only its type, and is not re-raised, so the server keeps the connection open.
    (Starlette's own handler for ``Exception`` re-raises after answering, and uvicorn then
    closes the connection.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.exception("aelab serve: unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # half an answer is out: only dropping the connection can end it
                raise
            await _send_json(send, 500, f"internal error ({type(exc).__name__}); the server log has the details")
