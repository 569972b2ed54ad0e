"""The latent explorer's HTTP app: JSON endpoints over the Python API plus one static page.

Only the runs and the data named when the app is created are reachable; no
endpoint takes a file path. Bad input (unknown run or id, a code of the wrong
length or with NaN, an out-of-range integer, an oversized body however it is
framed, an undecodable upload or a decompression bomb) is answered with a 4xx
and a one-line ``detail``; never a traceback. The limits are in ``limits.py``,
the bounded request bodies in ``schemas.py``, the endpoints in ``routes.py``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from aelab.errors import AelabError
from aelab.run import Run
from aelab.serve.limits import DEFAULT_UPLOAD_MB, JSON_LIMIT, BodyLimit, InternalErrors
from aelab.serve.routes import Options, one_line, router
from aelab.serve.state import ServeError, ServeState, load_state

STATIC = Path(str(files("aelab.serve") / "static"))

# -- helpers ---------------------------------------------------------------------------

def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def host_name(header: str) -> str:
    """The host of a Host header, without its port; IPv6 literals lose their brackets ('[::1]:80' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


# -- the app ---------------------------------------------------------------------------

def create_app(run_paths: list[str | Path | Run], data: str | None = None, max_upload_mb: float = DEFAULT_UPLOAD_MB, *,
               top: int = 16, range_kind: str = "data", allowed_hosts: list[str] | None = None) -> FastAPI:
    """The explorer app for ``run_paths`` (folders or loaded Runs), each loaded once.

    ``data``: a data source for every run (default: each run's validation, training and test splits).
    ``top``: sliders shown for codes of more than 64 elements. ``range_kind``: slider ranges,
    as ``aelab.latent.data_ranges`` takes them (data: mean ± 2σ, prior, minmax, LOW:HIGH). ``allowed_hosts``:
    Host headers to accept (the CLI passes the loopback names when bound to loopback,
    which stops DNS-rebinding pages from reading the server)."""
    if not (math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise AelabError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if top < 1:
        raise AelabError(f"--top must be at least 1, got {top}")
    state = load_state(list(run_paths), data, top, range_kind)
    upload_limit = int(max_upload_mb * 2**20)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="aelab latent explorer", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan,
                  description="Pick an image, move its code's elements, watch the decode.")
    app.state.serve = state
    app.state.options = Options(max_upload_mb, upload_limit, data)
    # Innermost first: every body is counted as it streams (BodyLimit), inside the host check, inside
    # the catch-all for bugs (InternalErrors).
    app.add_middleware(BodyLimit, upload_limit=upload_limit)

    if allowed_hosts:
        allowed = {h.strip("[]").lower() for h in allowed_hosts}

        @app.middleware("http")
        async def _check_host(request: Request, call_next: Any) -> Any:
            name = host_name(request.headers.get("host", ""))
            if name not in allowed:
                return _error(400, f"host '{name}' is not served here (this server answers {', '.join(allowed_hosts)})")
            return await call_next(request)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(AelabError)
    async def _aelab_error(_: Request, exc: AelabError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, one_line(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a JSON body that is not UTF-8
            return _error(422, "body: malformed JSON (not UTF-8 text)")
        return _error(exc.status_code, str(exc.detail))

    app.add_middleware(InternalErrors)

    # -- page ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.include_router(router)
    return app


__all__ = ["create_app", "ServeState", "JSON_LIMIT"]
