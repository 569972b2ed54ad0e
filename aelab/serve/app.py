"""The latent explorer's HTTP app: JSON endpoints over the Python API plus one static page.

Only the runs and the data named when the app is created are reachable; no
endpoint takes a file path. Bad input (unknown run or id, a code of the wrong
length or with NaN, an out-of-range integer, an oversized body however it is
framed, an undecodable upload or a decompression bomb) is answered with a 4xx
and a one-line ``detail``; never a traceback. The limits are in ``limits.py``,
the bounded request bodies in ``schemas.py``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from aelab.errors import AelabError
from aelab.run import Run
from aelab.serve.limits import DEFAULT_UPLOAD_MB, JSON_LIMIT, MAX_INT, MAX_NAME, BodyLimit, InternalErrors, mb
from aelab.serve.schemas import (
    ENCODE_BODY,
    MAX_PAGE,
    CommandRequest,
    CommandResponse,
    DecodeRequest,
    DecodeResponse,
    EncodeRequest,
    EncodeResponse,
    ImagesResponse,
    InterpolateRequest,
    InterpolateResponse,
    RunsResponse,
    SampleRequest,
    SampleResponse,
)
from aelab.serve.state import LoadedRun, ServeError, ServeState, data_uri, diff_map, load_state, read_upload

STATIC = Path(str(files("aelab.serve") / "static"))

# -- helpers ---------------------------------------------------------------------------

def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _one_line(errors: list[Any]) -> str:
    parts = []
    for e in errors[:3]:
        if e.get("type") == "json_invalid":  # FastAPI puts the character position in loc
            where = next((x for x in e.get("loc", ()) if isinstance(x, int)), None)
            why = (e.get("ctx") or {}).get("error", "")
            parts.append("body: malformed JSON" + (f" at character {where}" if where is not None else "") +
                         (f" ({why})" if why else ""))
            continue
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def host_name(header: str) -> str:
    """The host of a Host header, without its port; IPv6 literals lose their brackets ('[::1]:80' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _floats(arr: np.ndarray) -> list[float]:
    return np.asarray(arr, dtype=np.float32).ravel().astype(np.float64).tolist()


def _value(v: float) -> str:
    """Shortest text that reads back as the same float32."""
    return str(np.float32(v))


# -- the app ---------------------------------------------------------------------------

def create_app(run_paths: list[str | Path | Run], data: str | None = None, max_upload_mb: float = DEFAULT_UPLOAD_MB, *,
               top: int = 16, range_kind: str = "data", allowed_hosts: list[str] | None = None) -> FastAPI:
    """The explorer app for ``run_paths`` (folders or loaded Runs), each loaded once.

    ``data``: a data source for every run (default: each run's validation split).
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
        return _error(422, _one_line(list(exc.errors())))

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

    # -- endpoints -------------------------------------------------------------------
    @app.get("/api/runs", response_model=RunsResponse, summary="The served runs")
    def runs() -> dict[str, Any]:
        return {"runs": [r.info() for r in state.runs.values()], "max_upload_mb": max_upload_mb, "data": data}

    @app.get("/api/images", response_model=ImagesResponse, summary="A page of data-set images with their ids")
    def images(run: str | None = Query(None, max_length=MAX_NAME, description="Run name; default: the first"),
               offset: int = Query(0, ge=0, le=MAX_INT, description="Position of the first image in the data"),
               limit: int = Query(24, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        loaded = state.get(run)
        items = [{"id": i, "image": data_uri(img)} for i, img in loaded.page(offset, limit)]
        return {"run": loaded.key, "total": len(loaded.data), "offset": offset, "limit": limit, "items": items}

    @app.post("/api/encode", response_model=EncodeResponse, openapi_extra=ENCODE_BODY,
              summary="Code of a data-set image ({\"image_id\": N}) or of an uploaded image")
    async def encode(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # BodyLimit has already bounded every body: an upload by the upload limit, JSON by JSON_LIMIT.
        if ctype == "multipart/form-data":
            body = await request.body()
            try:
                form = await MultiPartParser(request.headers, _once(body), max_files=1, max_fields=4).parse()
            except MultiPartException as exc:
                raise ServeError(f"upload: {exc.message}") from None
            file, key = form.get("image") or form.get("file"), form.get("run")
            if file is None or isinstance(file, str):
                raise ServeError("upload: the form needs a file field named 'image'", 422)
            raw = await file.read()
            if len(raw) > upload_limit:
                raise ServeError(f"upload is {mb(len(raw))}; the limit is {mb(upload_limit)}", 413)
            return await run_in_threadpool(_encode_upload, state.get(key or None), raw)
        if ctype.startswith("image/") or ctype == "application/octet-stream":
            raw = await request.body()
            return await run_in_threadpool(_encode_upload, state.get(request.query_params.get("run")), raw)
        body = await request.body()
        try:
            req = EncodeRequest.model_validate_json(body or b"null")
        except ValidationError as exc:
            raise ServeError(_one_line(exc.errors()) + " (send JSON {\"image_id\": N}, or a multipart form with "
                             "an 'image' file)", 422) from None
        return await run_in_threadpool(_encode_id, state.get(req.run), req.image_id)

    @app.post("/api/decode", response_model=DecodeResponse, summary="Decode a code (while dragging: coalesced)")
    def decode(req: DecodeRequest) -> dict[str, Any]:
        loaded = state.get(req.run)
        code = loaded.check_code(req.code)
        reference = loaded.check_code(req.reference, "reference") if req.reference is not None else None
        base = loaded.encode_id(req.image_id).recon if req.diff and reference is None and \
            req.image_id is not None else None
        track = req.client is not None and req.seq is not None
        if track:
            loaded.latest.offer(req.client, req.seq)
        with loaded.lock:
            if track and loaded.latest.overtaken(req.client, req.seq):
                return {"run": loaded.key, "superseded": True, "seq": req.seq}
            out = loaded.decode(code[None])[0]
            if req.diff and reference is not None:
                base = loaded.decode(reference[None])[0]
        result: dict[str, Any] = {"run": loaded.key, "seq": req.seq, "image": data_uri(loaded.to_uint8(out[None])[0])}
        if req.diff and base is not None:
            colours, top = diff_map(loaded.to_unit(out), loaded.to_unit(base))
            result.update(diff=data_uri(colours), diff_max=top)
        return result

    @app.post("/api/sample", response_model=SampleResponse,
              summary="Random codes: the VAE prior, or a Gaussian fitted to the training codes")
    def sample(req: SampleRequest) -> dict[str, Any]:
        from aelab.generate import latent_prior

        loaded = state.get(req.run)
        seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        codes = loaded.sample(req.n, seed)
        with loaded.lock:
            images = loaded.to_uint8(loaded.decode(codes))
        return {"run": loaded.key, "seed": seed, "drawn_from": latent_prior(loaded.run).describe(),
                "codes": [_floats(c) for c in codes], "images": [data_uri(i) for i in images]}

    @app.post("/api/interpolate", response_model=InterpolateResponse,
              summary="Decodes along the path from image A's code to image B's")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        from aelab.latent import interpolate as path

        loaded = state.get(req.run)
        a, b = loaded.subset([req.image_a]), loaded.subset([req.image_b])
        with loaded.lock:
            frames = path(loaded.run, a, b, req.steps, req.mode).images
        return {"run": loaded.key, "mode": req.mode, "t": np.linspace(0, 1, req.steps).tolist(),
                "images": [data_uri(f) for f in frames]}

    @app.post("/api/command", response_model=CommandResponse,
              summary="The `aelab edit` command that reproduces this code from the image's")
    def command(req: CommandRequest) -> dict[str, Any]:
        from aelab.edits import edit_command

        loaded = state.get(req.run)
        code = loaded.check_code(req.code)
        original = loaded.encode_id(req.image_id).code
        changed = np.flatnonzero(code != original)
        text = ",".join(f"{i}={_value(code[i])}" for i in changed) or None
        cmd = edit_command(loaded.label, req.image_id, [text] if text else [], data=data)
        return {"command": cmd, "edit": text, "changed": changed.tolist()}

    return app


def _encode_result(loaded: LoadedRun, image_id: int | None, enc: Any) -> dict[str, Any]:
    return {"run": loaded.key, "image_id": image_id, "code": _floats(enc.code),
            "original": data_uri(loaded.to_uint8(enc.image[None])[0]),
            "reconstruction": data_uri(loaded.to_uint8(enc.recon[None])[0])}


def _encode_id(loaded: LoadedRun, image_id: int) -> dict[str, Any]:
    return _encode_result(loaded, image_id, loaded.encode_id(image_id))


def _encode_upload(loaded: LoadedRun, raw: bytes) -> dict[str, Any]:
    return _encode_result(loaded, None, loaded.encode_images(read_upload(raw, loaded.run.image_shape)))


__all__ = ["create_app", "ServeState", "JSON_LIMIT"]
