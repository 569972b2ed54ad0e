"""The explorer's JSON endpoints, on one ``APIRouter`` that ``app.create_app`` includes.

Endpoints reach the served runs and the app's options through ``request.app.state`` (set by
``create_app``), so this module holds no state of its own and the app's construction -- middleware,
error handlers, the page -- stays in ``app.py``. Request and response models are in ``schemas.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from aelab.serve.elements import MAX_ELEMENTS, element_facts, parse_elements
from aelab.serve.exports import MEDIA, UPLOAD_PLACEHOLDER, edit_text, export, file_name
from aelab.serve.limits import MAX_INT, MAX_NAME, mb
from aelab.serve.pictures import data_uri, diff_map
from aelab.serve.schemas import (
    ENCODE_BODY,
    MAX_PAGE,
    CommandRequest,
    CommandResponse,
    DecodeRequest,
    DecodeResponse,
    DownloadRequest,
    ElementsResponse,
    EncodeRequest,
    EncodeResponse,
    ImagesResponse,
    InterpolateRequest,
    InterpolateResponse,
    RunsResponse,
    SampleRequest,
    SampleResponse,
    SplitName,
)
from aelab.serve.state import LoadedRun, ServeError, ServeState, read_upload

router = APIRouter()


@dataclass(frozen=True)
class Options:
    """What ``create_app`` was asked for that the endpoints answer with (``app.state.options``)."""

    max_upload_mb: float
    upload_limit: int
    """Bytes."""
    data: str | None


def _serve(request: Request) -> ServeState:
    return request.app.state.serve


def _options(request: Request) -> Options:
    return request.app.state.options


def one_line(errors: list[Any]) -> str:
    """Pydantic's validation errors as one line (the first three, and a count)."""
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


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _floats(arr: np.ndarray) -> list[float]:
    return np.asarray(arr, dtype=np.float32).ravel().astype(np.float64).tolist()


@router.get("/api/runs", response_model=RunsResponse, summary="The served runs")
def runs(request: Request) -> dict[str, Any]:
    state, opts = _serve(request), _options(request)
    return {"runs": [r.info() for r in state.runs.values()], "max_upload_mb": opts.max_upload_mb, "data": opts.data}

@router.get("/api/images", response_model=ImagesResponse, summary="A page of data-set images with their ids")
def images(request: Request,
           run: str | None = Query(None, max_length=MAX_NAME, description="Run name; default: the first"),
           split: SplitName | None = Query(None, description="val, train, test or data (RunInfo.splits); "
                                                          "default: the run's first"),
           offset: int = Query(0, ge=0, le=MAX_INT, description="Position of the first image in the split"),
           limit: int = Query(24, ge=1, le=MAX_PAGE),
           at_id: int | None = Query(None, ge=0, le=MAX_INT, description="Instead of offset: the page of `limit` "
                                     "images that holds this image id (a 404 when the split lacks it)"),
           ) -> dict[str, Any]:
    loaded = _serve(request).get(run)
    name = loaded.split(split)
    if at_id is not None:
        position = loaded.position(at_id, name)
        offset = position - position % limit
    items = [{"id": i, "image": data_uri(img)} for i, img in loaded.page(offset, limit, name)]
    return {"run": loaded.key, "split": name, "total": len(loaded.images.get(name)), "offset": offset,
            "limit": limit, "items": items}


@router.get("/api/elements", response_model=ElementsResponse,
            summary="What each code element moves: its two strongest factors (r) and its measured effect")
def elements(request: Request,
             run: str | None = Query(None, max_length=MAX_NAME, description="Run name; default: the first"),
             elements: str | None = Query(None, max_length=MAX_ELEMENTS * 17, pattern=r"^[0-9, ]*$",
                                          description="Flat element indices like 0,5,9 (at most "
                                                      f"{MAX_ELEMENTS}); default: the run's sliders")
             ) -> dict[str, Any]:
    loaded = _serve(request).get(run)
    try:
        dims = parse_elements(elements, loaded)
    except ValueError as exc:
        raise ServeError(str(exc), 422) from None
    return element_facts(loaded, dims)

@router.post("/api/encode", response_model=EncodeResponse, openapi_extra=ENCODE_BODY,
          summary="Code of a data-set image ({\"image_id\": N}) or of an uploaded image")
async def encode(request: Request) -> dict[str, Any]:
    state, upload_limit = _serve(request), _options(request).upload_limit
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
        raise ServeError(one_line(exc.errors()) + " (send JSON {\"image_id\": N}, or a multipart form with "
                         "an 'image' file)", 422) from None
    return await run_in_threadpool(_encode_id, state.get(req.run), req.image_id, req.split)

@router.post("/api/decode", response_model=DecodeResponse, summary="Decode a code (while dragging: coalesced)")
def decode(req: DecodeRequest, request: Request) -> dict[str, Any]:
    loaded = _serve(request).get(req.run)
    code = loaded.check_code(req.code)
    reference = loaded.check_code(req.reference, "reference") if req.reference is not None else None
    base = loaded.encode_id(req.image_id, req.split).recon if req.diff and reference is None and \
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

@router.post("/api/sample", response_model=SampleResponse,
          summary="Random codes: the VAE prior, or a Gaussian fitted to the training codes")
def sample(req: SampleRequest, request: Request) -> dict[str, Any]:
    from aelab.generate import latent_prior

    loaded = _serve(request).get(req.run)
    seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
    codes = loaded.sample(req.n, seed)
    with loaded.lock:
        images = loaded.to_uint8(loaded.decode(codes))
    return {"run": loaded.key, "seed": seed, "drawn_from": latent_prior(loaded.run).describe(),
            "codes": [_floats(c) for c in codes], "images": [data_uri(i) for i in images]}

@router.post("/api/interpolate", response_model=InterpolateResponse,
          summary="Decodes along the path from image A's code to image B's")
def interpolate(req: InterpolateRequest, request: Request) -> dict[str, Any]:
    from aelab.latent import interpolate as path

    loaded = _serve(request).get(req.run)
    a, b = loaded.subset([req.image_a], req.split), loaded.subset([req.image_b], req.split)
    with loaded.lock:
        frames = path(loaded.run, a, b, req.steps, req.mode).images
    return {"run": loaded.key, "mode": req.mode, "t": np.linspace(0, 1, req.steps).tolist(),
            "images": [data_uri(f) for f in frames]}

@router.post("/api/command", response_model=CommandResponse,
          summary="The `aelab edit` command that reproduces this code from the image's (or the upload's)")
def command(req: CommandRequest, request: Request) -> dict[str, Any]:
    from aelab.edits import edit_command

    loaded = _serve(request).get(req.run)
    code = loaded.check_code(req.code)
    if req.image_id is not None:
        split = loaded.split(req.split)
        text, changed = edit_text(code, loaded.encode_id(req.image_id, split).code)
        cmd = edit_command(loaded.label, req.image_id, [text] if text else [], data=loaded.images.source(split))
        return {"command": cmd, "edit": text, "changed": changed}
    if req.reference is None:
        raise ServeError("command: give the image_id of a data-set image, or an upload's own code as reference", 422)
    text, changed = edit_text(code, loaded.check_code(req.reference, "reference"))
    image = req.upload_name or UPLOAD_PLACEHOLDER
    cmd = edit_command(loaded.label, None, [text] if text else [], image=image)
    return {"command": cmd, "edit": text, "changed": changed, "image": image}


@router.post("/api/download", response_class=Response, summary="The edited decode as PNG, or its code as .npy or JSON",
             responses={200: {"content": {m: {} for m in MEDIA.values()},
                              "description": "The file, with a Content-Disposition file name"}})
def download(req: DownloadRequest, request: Request) -> Response:
    loaded = _serve(request).get(req.run)
    code = loaded.check_code(req.code)
    if req.image_id is not None:
        split = loaded.split(req.split)
        loaded.position(req.image_id, split)
        source: dict[str, Any] = {"split": split, "image_id": req.image_id}
        where = f"{split}{req.image_id}"
    else:
        source = {"upload": req.upload_name}
        where = "upload"
    body = export(loaded, code, req.format, source)
    return Response(body, media_type=MEDIA[req.format],
                    headers={"Content-Disposition": f'attachment; filename="{file_name(loaded, where, req.format)}"'})


def _encode_result(loaded: LoadedRun, image_id: int | None, enc: Any) -> dict[str, Any]:
    return {"run": loaded.key, "image_id": image_id, "code": _floats(enc.code),
            "original": data_uri(loaded.to_uint8(enc.image[None])[0]),
            "reconstruction": data_uri(loaded.to_uint8(enc.recon[None])[0])}


def _encode_id(loaded: LoadedRun, image_id: int, split: str | None) -> dict[str, Any]:
    return _encode_result(loaded, image_id, loaded.encode_id(image_id, split))


def _encode_upload(loaded: LoadedRun, raw: bytes) -> dict[str, Any]:
    return _encode_result(loaded, None, loaded.encode_images(read_upload(raw, loaded.run.image_shape)))
