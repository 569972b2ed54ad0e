"""The explorer's request and response bodies: they make the OpenAPI schema at /docs, and their
bounds are what keeps bad input a 422.

Every integer a client sends is bounded (ids and offsets by ``MAX_INT``, counts by what one
request may ask for), so no value reaches numpy's int64 conversions, or a loop, out of range.
Codes are checked for length and finite values against their run in ``LoadedRun.check_code``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from aelab.serve.limits import MAX_FILE_NAME, MAX_INT, MAX_NAME

MAX_SAMPLES = 64
"""Most codes one POST /api/sample draws."""
MAX_STEPS = 64
"""Most frames one POST /api/interpolate decodes."""
MAX_PAGE = 200
"""Most images one GET /api/images returns."""


def _run() -> Any:
    return Field(None, max_length=MAX_NAME, description="A served run's name (GET /api/runs); default: the first run.")


SplitName = Literal["val", "train", "test", "data"]
"""A split's name: validation, training, the source's own test split, or the --data source."""


def _split() -> Any:
    return Field(None, description="The split the image id is in (RunInfo.splits); default: the run's first")


def _id(description: str, default: Any = ...) -> Any:
    return Field(default, ge=0, le=MAX_INT, description=f"{description} (an integer 0..2**53-1)")


class SplitInfo(BaseModel):
    name: SplitName
    label: str = Field(description="What the page calls it: validation, training, test, --data")
    n_images: int
    source: str = Field(description="The data source its ids are rows of")


class RunInfo(BaseModel):
    name: str
    path: str
    config_name: str
    family: str
    variational: bool
    latent_shape: list[int]
    latent_size: int
    image_shape: list[int] = Field(description="H, W, C of the images the model sees and produces")
    n_images: int = Field(description="Images in the default split")
    data: str = Field(description="The default split, named: slider ranges and element facts come from it")
    split: SplitName = Field(description="The default split")
    splits: list[SplitInfo]
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
    data: str | None = Field(description="The --data source, or null for each run's own splits")


class ImageItem(BaseModel):
    id: int
    image: str = Field(description="PNG data URI, as the model sees the image")


class ImagesResponse(BaseModel):
    run: str
    split: SplitName
    total: int
    offset: int
    limit: int
    items: list[ImageItem]


class EncodeRequest(BaseModel):
    run: str | None = _run()
    image_id: int = _id("Stable id of a data-set image (GET /api/images)")
    split: SplitName | None = _split()


class EncodeResponse(BaseModel):
    run: str
    image_id: int | None = Field(description="null for an uploaded image")
    code: list[float] = Field(description="The deterministic code (VAE: posterior mean), flat")
    original: str = Field(description="PNG data URI of the image as the model sees it")
    reconstruction: str = Field(description="PNG data URI of decode(code)")


class DecodeRequest(BaseModel):
    run: str | None = _run()
    code: list[float] = Field(description="Flat code of the run's latent_size, finite values")
    image_id: int | None = _id("Data-set image whose reconstruction the diff map compares to", None)
    split: SplitName | None = _split()
    reference: list[float] | None = Field(None, description="Or a code whose decode the diff map compares to")
    diff: bool = Field(False, description="Also return the difference map")
    client: str | None = Field(None, max_length=64, description="Page instance id, for coalescing")
    seq: int | None = Field(None, ge=0, le=MAX_INT,
                            description="Increasing per client; an overtaken request is skipped")


class DecodeResponse(BaseModel):
    run: str
    superseded: bool = Field(False, description="True when a newer request from the same client overtook it")
    seq: int | None = None
    image: str | None = Field(None, description="PNG data URI of the decode")
    diff: str | None = Field(None, description="PNG data URI of |decode - reference| (magma colours)")
    diff_max: float | None = Field(None, description="Largest per-pixel mean |difference|, pixels in [0, 1]")


class SampleRequest(BaseModel):
    run: str | None = _run()
    n: int = Field(1, ge=1, le=MAX_SAMPLES)
    seed: int | None = Field(None, ge=0, le=MAX_INT, description="default: a fresh random seed")


class SampleResponse(BaseModel):
    run: str
    seed: int
    drawn_from: str
    codes: list[list[float]]
    images: list[str]


class InterpolateRequest(BaseModel):
    run: str | None = _run()
    image_a: int = _id("Stable id of the first image")
    image_b: int = _id("Stable id of the second image")
    split: SplitName | None = Field(None, description="The split both ids are in; default: the run's first")
    steps: int = Field(9, ge=2, le=MAX_STEPS)
    mode: Literal["linear", "slerp"] = "linear"


class InterpolateResponse(BaseModel):
    run: str
    mode: str
    t: list[float]
    images: list[str] = Field(description="Decodes from A's code to B's; the ends are the reconstructions")


class CommandRequest(BaseModel):
    run: str | None = _run()
    image_id: int | None = _id("Stable id of the edited image; null for an upload (send reference)", None)
    split: SplitName | None = _split()
    code: list[float]
    reference: list[float] | None = Field(None, description="An upload's own code (from POST /api/encode)")
    upload_name: str | None = Field(None, max_length=MAX_FILE_NAME,
                                    description="An upload's file name, for the command's --image")


class CommandResponse(BaseModel):
    command: str
    edit: str | None = Field(description="The edit in aelab's edit language, null when nothing changed")
    changed: list[int]
    image: str | None = Field(None, description="For an upload: the --image path in the command, to be "
                                                "replaced by where the file is")


class FactorR(BaseModel):
    factor: str
    r: float = Field(description="Pearson r between the element and the factor over the data")


class ElementFacts(BaseModel):
    element: int
    effect: float = Field(description="Mean |pixel change| (pixels in [0, 1]) with the element alone at either "
                                      "end of its slider range, from the data's mean code")
    factors: list[FactorR] | None = Field(description="The two factors it tracks most (by |r|); null when the "
                                                      "data has no generating factors")


class ElementsResponse(BaseModel):
    run: str
    data: str = Field(description="Where the correlations and the mean code come from")
    range: str
    factors_note: str | None = Field(description="Why there are no factors, when there are none")
    elements: list[ElementFacts]


class DownloadRequest(BaseModel):
    run: str | None = _run()
    code: list[float] = Field(description="Flat code of the run's latent_size, finite values")
    format: Literal["png", "npy", "json"] = Field(description="png: the decode; npy: float32 code of the "
                                                            "latent shape; json: the code with its shape")
    image_id: int | None = _id("The data-set image it was edited from (for the file's name and JSON)", None)
    split: SplitName | None = _split()
    upload_name: str | None = Field(None, max_length=MAX_FILE_NAME, description="Or the upload's file name")


ENCODE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EncodeRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "An image file (PNG, JPEG, ...)"},
        "run": {"type": "string"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"},
                "description": "Raw image bytes; the run as ?run=NAME"},
}}}
