"""The latent explorer's HTTP app: JSON endpoints over the Python API plus one static page.

Only the runs and the data named when the app is created are reachable; no
endpoint takes a file path. Bad input (unknown run or id, a code of the wrong
length or with NaN, an oversized or undecodable upload) is answered with a
4xx and a one-line ``detail``; never a traceback.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from aelab.errors import AelabError
from aelab.run import Run
from aelab.serve.state import LoadedRun, ServeError, ServeState, data_uri, diff_map, load_state, read_upload

STATIC = Path(str(files("aelab.serve") / "static"))
JSON_LIMIT = 4 * 1024 * 1024
"""Largest JSON body accepted (a code of ~200k elements)."""

RunName = Field(None, description="A served run's name (GET /api/runs); default: the first run.")


# -- request and response bodies (these make the OpenAPI schema at /docs) -------------

class RunInfo(BaseModel):
    name: str
    path: str
    config_name: str
    family: str
    variational: bool
    latent_shape: list[int]
    latent_size: int
    image_shape: list[int] = Field(description="H, W, C of the images the model sees and produces")
    n_images: int
    data: str
    psnr: float | None
    low: list[float] = Field(description="Slider range per flat element: by default the data's mean - 2 std")
    high: list[float] = Field(description="... and mean + 2 std")
    range: str = Field(description="How low/high were made: data, prior, minmax or LOW:HIGH")
    sliders: list[int] = Field(description="Elements shown as sliders, in order")
    slider_order: Literal["all", "effect", "spread"]
    ranking_error: str | None = None


class RunsResponse(BaseModel):
    runs: list[RunInfo]
    max_upload_mb: float
    data: str | None = Field(description="The --data source, or null for each run's validation split")


class ImageItem(BaseModel):
    id: int
    image: str = Field(description="PNG data URI, as the model sees the image")


class ImagesResponse(BaseModel):
    run: str
    total: int
    offset: int
    limit: int
    items: list[ImageItem]


class EncodeRequest(BaseModel):
    run: str | None = RunName
    image_id: int = Field(description="Stable id of a data-set image (GET /api/images)")


class EncodeResponse(BaseModel):
    run: str
    image_id: int | None = Field(description="null for an uploaded image")
    code: list[float] = Field(description="The deterministic code (VAE: posterior mean), flat")
    original: str = Field(description="PNG data URI of the image as the model sees it")
    reconstruction: str = Field(description="PNG data URI of decode(code)")


class DecodeRequest(BaseModel):
    run: str | None = RunName
    code: list[float] = Field(description="Flat code of the run's latent_size, finite values")
    image_id: int | None = Field(None, description="Data-set image whose reconstruction the diff map compares to")
    reference: list[float] | None = Field(None, description="Or a code whose decode the diff map compares to")
    diff: bool = Field(False, description="Also return the difference map")
    client: str | None = Field(None, max_length=64, description="Page instance id, for coalescing")
    seq: int | None = Field(None, description="Increasing per client; an overtaken request is skipped")


class DecodeResponse(BaseModel):
    run: str
    superseded: bool = Field(False, description="True when a newer request from the same client overtook it")
    seq: int | None = None
    image: str | None = Field(None, description="PNG data URI of the decode")
    diff: str | None = Field(None, description="PNG data URI of |decode - reference| (magma colours)")
    diff_max: float | None = Field(None, description="Largest per-pixel mean |difference|, pixels in [0, 1]")


class SampleRequest(BaseModel):
    run: str | None = RunName
    n: int = Field(1, ge=1, le=64)
    seed: int | None = Field(None, ge=0, description="default: a fresh random seed")


class SampleResponse(BaseModel):
    run: str
    seed: int
    drawn_from: str
    codes: list[list[float]]
    images: list[str]


class InterpolateRequest(BaseModel):
    run: str | None = RunName
    image_a: int
    image_b: int
    steps: int = Field(9, ge=2, le=64)
    mode: Literal["linear", "slerp"] = "linear"


class InterpolateResponse(BaseModel):
    run: str
    mode: str
    t: list[float]
    images: list[str] = Field(description="Decodes from A's code to B's; the ends are the reconstructions")


class CommandRequest(BaseModel):
    run: str | None = RunName
    image_id: int
    code: list[float]


class CommandResponse(BaseModel):
    command: str
    edit: str | None = Field(description="The edit in aelab's edit language, null when nothing changed")
    changed: list[int]


ENCODE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EncodeRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "An image file (PNG, JPEG, ...)"},
        "run": {"type": "string"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"},
                "description": "Raw image bytes; the run as ?run=NAME"},
}}}


# -- helpers ---------------------------------------------------------------------------

def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _one_line(errors: list[Any]) -> str:
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServeError(f"{what} is {_mb(int(declared))}; the limit is {_mb(limit)}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(f"{what} is larger than the limit of {_mb(limit)}", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def host_name(header: str) -> str:
    """The host of a Host header, without its port; IPv6 literals lose their brackets ('[::1]:80' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.3g} MB"


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _floats(arr: np.ndarray) -> list[float]:
    return np.asarray(arr, dtype=np.float32).ravel().astype(np.float64).tolist()


def _value(v: float) -> str:
    """Shortest text that reads back as the same float32."""
    return str(np.float32(v))


# -- the app ---------------------------------------------------------------------------

def create_app(run_paths: list[str | Path | Run], data: str | None = None, max_upload_mb: float = 10, *,
               top: int = 16, range_kind: str = "data", allowed_hosts: list[str] | None = None) -> FastAPI:
    """The explorer app for ``run_paths`` (folders or loaded Runs), each loaded once.

    ``data``: a data source for every run (default: each run's validation split).
    ``top``: sliders shown for codes of more than 64 elements. ``range_kind``: slider ranges,
    as ``aelab.latent.data_ranges`` takes them (data: mean ± 2σ, prior, minmax, LOW:HIGH). ``allowed_hosts``:
    Host headers to accept (the CLI passes the loopback names when bound to loopback,
    which stops DNS-rebinding pages from reading the server)."""
    if max_upload_mb <= 0:
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
    body_limit = upload_limit + JSON_LIMIT

    @app.middleware("http")
    async def _size(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit:
            return _error(413, f"request is {_mb(int(declared))}; the limit is {_mb(body_limit)}")
        return await call_next(request)

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
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:  # a bug: say what, not where
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

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
    def images(run: str | None = Query(None, description="Run name; default: the first"),
               offset: int = Query(0, ge=0), limit: int = Query(24, ge=1, le=200)) -> dict[str, Any]:
        loaded = state.get(run)
        items = [{"id": i, "image": data_uri(img)} for i, img in loaded.page(offset, limit)]
        return {"run": loaded.key, "total": len(loaded.data), "offset": offset, "limit": limit, "items": items}

    @app.post("/api/encode", response_model=EncodeResponse, openapi_extra=ENCODE_BODY,
              summary="Code of a data-set image ({\"image_id\": N}) or of an uploaded image")
    async def encode(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            body = await _read_body(request, upload_limit + 64 * 1024, "upload")
            try:
                form = await MultiPartParser(request.headers, _once(body), max_files=1, max_fields=4).parse()
            except MultiPartException as exc:
                raise ServeError(f"upload: {exc.message}") from None
            file, key = form.get("image") or form.get("file"), form.get("run")
            if file is None or isinstance(file, str):
                raise ServeError("upload: the form needs a file field named 'image'", 422)
            raw = await file.read()
            if len(raw) > upload_limit:
                raise ServeError(f"upload is {_mb(len(raw))}; the limit is {_mb(upload_limit)}", 413)
            return await run_in_threadpool(_encode_upload, state.get(key or None), raw)
        if ctype.startswith("image/") or ctype == "application/octet-stream":
            raw = await _read_body(request, upload_limit, "upload")
            return await run_in_threadpool(_encode_upload, state.get(request.query_params.get("run")), raw)
        body = await _read_body(request, JSON_LIMIT, "request")
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
            frames = path(loaded.run, a, b, req.steps, req.mode)
        return {"run": loaded.key, "mode": req.mode, "t": np.linspace(0, 1, req.steps).tolist(),
                "images": [data_uri(f) for f in frames]}

    @app.post("/api/command", response_model=CommandResponse,
              summary="The `aelab edit` command that reproduces this code from the image's")
    def command(req: CommandRequest) -> dict[str, Any]:
        from aelab.latent import edit_command

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


__all__ = ["create_app", "ServeState"]
