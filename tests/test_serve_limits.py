"""The explorer's limits hold whatever a client sends: every bad request is the documented 4xx, never a 5xx.

Bodies over their limit are refused with 413 whether they declare a Content-Length or come chunked
(and the server's memory stays flat while it refuses a 50 MB one); out-of-range integers, NaN and
malformed JSON are 422; decompression bombs are 413; and after each the server still answers.
Hypothesis then throws arbitrary JSON at every endpoint and asserts only that no answer is a 5xx.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from _cli import AELAB
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aelab.serve import create_app
from aelab.serve.limits import JSON_LIMIT, MAX_INT, MAX_PIXELS, MULTIPART_OVERHEAD

DOCS = Path(__file__).resolve().parents[1] / "docs" / "serve.md"
UPLOAD_MB = 0.25
UPLOAD_LIMIT = int(UPLOAD_MB * 2**20)
POSTS = ["/api/encode", "/api/decode", "/api/sample", "/api/interpolate", "/api/command", "/api/download"]


@pytest.fixture(scope="module")
def run_dir(trained) -> Path:
    """A tiny fcn AE with a 10-element code on 32×32 faces."""
    cfg = {"name": "ae", "seed": 0, "data": {"source": "builtin:faces?n=120&size=32&seed=3", "val_fraction": 0.2},
           "model": {"type": "fcn", "hidden": [32], "latent_dim": 10},
           "train": {"epochs": 1, "batch_size": 32, "lr": 2e-3}}
    return trained(cfg).path


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    return TestClient(create_app([run_dir], max_upload_mb=UPLOAD_MB))


@pytest.fixture(scope="module")
def ids(client) -> list[int]:
    return [i["id"] for i in client.get("/api/images", params={"limit": 2}).json()["items"]]


@pytest.fixture(scope="module")
def valid(client, ids) -> dict[str, dict]:
    """A body each POST endpoint answers with 200, for the tests to spoil one field at a time."""
    code = client.post("/api/encode", json={"image_id": ids[0]}).json()["code"]
    return {"/api/encode": {"image_id": ids[0]},
            "/api/decode": {"code": code, "image_id": ids[0], "diff": True, "client": "t", "seq": 1},
            "/api/sample": {"n": 2, "seed": 3},
            "/api/interpolate": {"image_a": ids[0], "image_b": ids[1], "steps": 3},
            "/api/command": {"image_id": ids[0], "code": code},
            "/api/download": {"image_id": ids[0], "split": "val", "code": code, "format": "npy"}}


def check(r: httpx.Response, status: int, words: str = "") -> None:
    """``r`` is ``status`` with a one-line JSON ``detail`` (containing ``words``) and no traceback."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    assert words in detail, detail


def still_serves(client: TestClient | httpx.Client, valid: dict[str, dict]) -> None:
    assert client.get("/api/runs").status_code == 200
    r = client.post("/api/decode", json=valid["/api/decode"] | {"client": None})
    assert r.status_code == 200 and r.json()["image"].startswith("data:image/png")


def post_text(client: TestClient, path: str, text: str | bytes) -> httpx.Response:
    body = text.encode() if isinstance(text, str) else text
    return client.post(path, content=body, headers={"content-type": "application/json"})


def png_header(width: int, height: int) -> bytes:
    """A valid PNG that declares ``width``×``height`` 1-bit pixels but holds a few bytes: a
    decompression bomb's header, which is all a server should ever read of one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) +
            chunk(b"IEND", b""))


def image_file(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def chunks(total: int, prefix: bytes = b'{"code": [', size: int = 2**20) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body, made as they are sent: httpx sends a generator
    chunked, with no Content-Length."""
    yield prefix
    piece = b"0.5," * (size // 4)
    for _ in range(total // len(piece)):
        yield piece
    yield b"0]}"


def assert_chunked(r: httpx.Response) -> None:
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"


# -- integers, floats, JSON ------------------------------------------------------------

BIG, NEG = 10**30, -1
INT_FIELDS = [
    ("/api/encode", "image_id"), ("/api/decode", "image_id"), ("/api/decode", "seq"), ("/api/sample", "n"),
    ("/api/sample", "seed"), ("/api/interpolate", "image_a"), ("/api/interpolate", "image_b"),
    ("/api/interpolate", "steps"), ("/api/command", "image_id"), ("/api/download", "image_id"),
]


@pytest.mark.parametrize("path, field", INT_FIELDS)
@pytest.mark.parametrize("value", [BIG, -BIG, NEG, MAX_INT + 1, 2**64, 1.5, "\"7x\"", "NaN", "Infinity", "1e400",
                                   "[1]", "{}"])
def test_every_integer_field_out_of_range_or_of_the_wrong_type_is_422(client, valid, path, field, value):
    raw = value if isinstance(value, str) else json.dumps(value)
    body = json.dumps(valid[path] | {field: "__V__"}).replace('"__V__"', raw)
    check(post_text(client, path, body), 422, field)


@pytest.mark.parametrize("path, field, value, status, words", [
    ("/api/encode", "image_id", MAX_INT, 404, f"no image with id {MAX_INT}"),  # in range, just not there
    ("/api/interpolate", "image_b", 10**6, 404, "no image with id 1000000"),
    ("/api/sample", "seed", MAX_INT, 200, ""),
    ("/api/decode", "seq", MAX_INT, 200, ""),
    ("/api/decode", "client", "x" * 65, 422, "client"),
    ("/api/decode", "run", "r" * 300, 422, "run"),
    ("/api/sample", "n", 65, 422, "n"),
    ("/api/interpolate", "steps", 1, 422, "steps"),
    ("/api/download", "image_id", MAX_INT, 404, f"no image with id {MAX_INT}"),
    ("/api/download", "upload_name", "x" * 256, 422, "upload_name"),
    ("/api/command", "upload_name", "x" * 256, 422, "upload_name"),
    ("/api/encode", "split", "test", 404, "no test split"),  # a name the run lacks
    ("/api/encode", "split", "holdout", 422, "split"),
])
def test_integers_at_and_past_their_bounds(client, valid, path, field, value, status, words):
    r = client.post(path, json=valid[path] | {field: value})
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        check(r, status, words)


@pytest.mark.parametrize("path, field", [("/api/decode", "code"), ("/api/decode", "reference"),
                                         ("/api/command", "code"), ("/api/download", "code")])
@pytest.mark.parametrize("value, words", [("NaN", "is nan"), ("Infinity", "is inf"), ("-Infinity", "is -inf"),
                                          ("1e400", "is inf"), ("1e7", "beyond")])
def test_codes_with_nan_inf_or_huge_values_are_422(client, valid, path, field, value, words):
    body = json.dumps(valid[path] | {field: ["__V__"] + [0.0] * 9}).replace('"__V__"', value)
    check(post_text(client, path, body), 422, words)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("text", ['{"code": [', "{", "", "null", "[]", '"text"', "7", "\x00", b"\xff\xfe{}",
                                  '{"run": 5}', '{"run": ["ae"]}'])
def test_malformed_json_and_wrong_shapes_are_422_on_every_endpoint(client, path, text):
    r = post_text(client, path, text)
    check(r, 422)
    if text in ('{"code": [', "{", "\x00", b"\xff\xfe{}"):
        assert "malformed JSON" in r.json()["detail"]


@pytest.mark.parametrize("params, words", [
    ({"offset": "99999999999999999999999"}, "offset"), ({"offset": str(MAX_INT + 1)}, "offset"),
    ({"offset": "-1"}, "offset"), ({"offset": "NaN"}, "offset"), ({"offset": "1e400"}, "offset"),
    ({"offset": "1.5"}, "offset"), ({"limit": str(BIG)}, "limit"), ({"limit": "-1"}, "limit"),
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"run": "r" * 300}, "run"),
    ({"at_id": str(MAX_INT + 1)}, "at_id"), ({"at_id": "-1"}, "at_id"), ({"at_id": "1.5"}, "at_id"),
    ({"split": "holdout"}, "split"),
])
def test_image_pages_with_out_of_range_queries_are_422(client, valid, params, words):
    check(client.get("/api/images", params=params), 422, words)
    still_serves(client, valid)


def test_the_largest_offset_is_an_empty_page(client):
    r = client.get("/api/images", params={"offset": MAX_INT, "limit": 200})
    assert r.status_code == 200 and r.json()["items"] == []


# -- bodies over their limit -------------------------------------------------------------

@pytest.mark.parametrize("path", POSTS)
def test_json_over_the_limit_is_413_with_a_content_length_or_chunked(client, valid, path):
    big = b'{"code": [' + b"0.5," * (JSON_LIMIT // 4) + b"0]}"
    assert len(big) > JSON_LIMIT
    check(post_text(client, path, big), 413, "the limit is 4 MB")
    r = client.post(path, content=chunks(JSON_LIMIT + 2**20), headers={"content-type": "application/json"})
    assert_chunked(r)
    check(r, 413, "over the limit of 4 MB")
    r = client.post(path, content=chunks(JSON_LIMIT - 2**20), headers={"content-type": "application/json"})
    assert_chunked(r)
    assert r.status_code not in (413,) and r.status_code < 500  # under the limit: read and validated
    still_serves(client, valid)


def test_uploads_over_the_limit_are_413_in_every_framing(client, valid):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    raw = image_file(Image.fromarray(noise))
    assert len(raw) > UPLOAD_LIMIT + MULTIPART_OVERHEAD
    check(client.post("/api/encode", content=raw, headers={"content-type": "image/png"}), 413, "upload is")
    check(client.post("/api/encode", files={"image": ("x.png", raw, "image/png")}), 413, "upload is")
    r = client.post("/api/encode", content=iter([raw[:1000], raw[1000:]]), headers={"content-type": "image/png"})
    assert_chunked(r)
    check(r, 413, "upload is over the limit")
    boundary = "xyzzy"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    r = client.post("/api/encode", content=iter([form[:5000], form[5000:]]),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_chunked(r)
    check(r, 413, "upload is over the limit")
    # a file just over the upload limit fits the multipart allowance but not the file limit
    near = raw[: UPLOAD_LIMIT + 100]
    check(client.post("/api/encode", files={"image": ("x.png", near, "image/png")}), 413, "the limit is 0.25 MB")
    still_serves(client, valid)


# -- uploads that are not images, or bombs ------------------------------------------------

@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns past 89 MP; we answer 413
@pytest.mark.parametrize("size, words", [((20000, 20000), "400,000,000 pixels"), ((10000, 10000), "10000×10000"),
                                         ((8000, 6000), "8000×6000"), ((2**31 - 1, 2**31 - 1), "pixels")])
@pytest.mark.parametrize("framing", ["multipart", "raw"])
def test_a_decompression_bomb_is_413_from_its_header(client, valid, size, words, framing):
    bomb = png_header(*size)
    assert len(bomb) < 200 and size[0] * size[1] > MAX_PIXELS
    if framing == "multipart":
        r = client.post("/api/encode", files={"image": ("bomb.png", bomb, "image/png")})
    else:
        r = client.post("/api/encode", content=bomb, headers={"content-type": "image/png"})
    check(r, 413, words)
    still_serves(client, valid)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_a_bomb_is_413_also_where_warnings_are_errors(client):
    check(client.post("/api/encode", files={"image": ("b.png", png_header(10000, 10000), "image/png")}), 413)


@pytest.mark.parametrize("raw, words", [
    (b"hello, not an image", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n broken", "not a readable image"),
    (png_header(64, 64)[:40], "not a readable image"),  # cut inside the IHDR
    (png_header(64, 64), "not a readable image"),  # declares pixels it does not hold
    (png_header(0, 10), "not a readable image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a readable image"),  # never given to Ghostscript
])
def test_a_file_that_is_not_a_usable_image_is_415(client, valid, raw, words):
    check(client.post("/api/encode", files={"image": ("x.png", raw, "image/png")}), 415, words)
    still_serves(client, valid)


def test_an_image_mode_that_cannot_be_converted_is_415():
    """PIL reads LAB TIFFs but cannot convert LAB to grayscale: a 415 for a 1-channel run, not a 500."""
    from aelab.serve.state import ServeError, read_upload

    lab = image_file(Image.new("LAB", (8, 8)), "TIFF")
    with pytest.raises(ServeError, match="colour mode LAB") as info:
        read_upload(lab, (32, 32, 1))
    assert info.value.status == 415
    assert read_upload(lab, (32, 32, 3)).shape == (32, 32, 3)


# -- no 500s, and a bug's 500 keeps the connection ----------------------------------------

def test_a_bug_is_a_one_line_json_500_that_does_not_leak(run_dir, caplog, monkeypatch):
    app = create_app([run_dir])

    def broken() -> dict:
        raise RuntimeError("secret /home/someone/path")

    monkeypatch.setattr(app.state.serve.runs["ae"], "info", broken)
    with caplog.at_level(logging.ERROR, logger="aelab.serve"):
        r = TestClient(app).get("/api/runs")  # the TestClient re-raises what escapes the app: nothing does
    check(r, 500, "internal error (RuntimeError)")
    assert "secret" not in r.text
    assert "RuntimeError: secret" in caplog.text  # the server's log keeps what happened


def test_wrong_methods_and_paths_are_their_4xx(client):
    check(client.get("/api/decode"), 405)
    check(client.put("/api/runs"), 405)
    check(client.get("/api/nothing"), 404)
    check(client.post("/api/encode?run=nope", content=b"x", headers={"content-type": "image/png"}), 404, "no run")
    check(client.post("/api/encode?run=" + "n" * 5000, content=b"x", headers={"content-type": "image/png"}), 404,
          "5000-character name")


# -- the documented status codes ---------------------------------------------------------------

def documented_statuses() -> set[int]:
    text = DOCS.read_text()
    table = text[text.index("| status | when |"):].split("\n\n")[0]
    return {int(m) for m in re.findall(r"^\| (\d{3}) \|", table, flags=re.M)}


def test_the_docs_list_exactly_the_codes_the_server_gives(client, run_dir):
    local = TestClient(create_app([run_dir], allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1")
    examples = {
        400: local.get("/api/runs", headers={"host": "evil.example"}),
        404: client.post("/api/encode", json={"image_id": 10**6}),
        405: client.get("/api/decode"),
        413: client.post("/api/encode", files={"image": ("b.png", png_header(20000, 20000), "image/png")}),
        415: client.post("/api/encode", files={"image": ("x.txt", b"text", "text/plain")}),
        422: client.get("/api/images", params={"offset": BIG}),
    }
    for status, r in examples.items():
        check(r, status)
    assert documented_statuses() == {200, *examples, 500}  # 500: documented as what a bug gives; none expected


# -- the real server: memory, and the connection ------------------------------------------------

def _vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture(scope="module")
def server(run_dir) -> Iterator[tuple[str, subprocess.Popen]]:
    """``aelab serve`` on loopback in its own process, so its memory can be measured alone."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(AELAB), "serve", str(run_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "aelab serve did not start"
            try:
                if httpx.get(base + "/api/runs", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err[-3000:]  # no request made the server log an unhandled error


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read peak memory")
@pytest.mark.slow
def test_a_50_mb_chunked_body_is_cut_off_without_growing_the_server(server, valid):
    """The old server read it whole and parsed it (peak RSS +750 MB, then a 422)."""
    base, proc = server
    with httpx.Client(base_url=base, timeout=60) as c:
        still_serves(c, valid)  # warm: the model has decoded, the page cache is filled
        before = _vm_hwm_mb(proc.pid)
        t0 = time.time()
        r = c.post("/api/decode", content=chunks(50 * 2**20), headers={"content-type": "application/json"})
        took = time.time() - t0
        assert_chunked(r)
        check(r, 413, "over the limit of 4 MB")
        declared = c.post("/api/decode", content=chunks(50 * 2**20),
                          headers={"content-type": "application/json", "content-length": str(50 * 2**20 + 13)})
        assert "transfer-encoding" not in declared.request.headers
        check(declared, 413, "the limit is 4 MB")
        upload = c.post("/api/encode", content=chunks(50 * 2**20, b"\x89PNG"), headers={"content-type": "image/png"})
        check(upload, 413, "upload is over the limit")
        growth = _vm_hwm_mb(proc.pid) - before
        assert growth < 100, f"peak RSS grew {growth:.0f} MB while refusing 50 MB bodies"
        assert took < 30
        still_serves(c, valid)


@pytest.mark.slow
def test_out_of_range_requests_keep_the_keep_alive_connection(server, valid):
    """The old server answered 10**30 with a 500 and then reset the next request on the connection."""
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        bomb = png_header(20000, 20000)
        requests = [("GET", "/api/images?offset=99999999999999999999999", None, "application/json", 422),
                    ("POST", "/api/encode", json.dumps({"image_id": 10**30}), "application/json", 422),
                    ("POST", "/api/sample", '{"seed": NaN}', "application/json", 422),
                    ("POST", "/api/decode", '{"code": [', "application/json", 422),
                    ("POST", "/api/encode", bomb, "image/png", 413),
                    ("POST", "/api/encode", b"not an image", "image/png", 415),
                    ("GET", "/api/runs", None, "application/json", 200)]
        conn.connect()
        sock = conn.sock
        for method, path, body, ctype, status in requests:
            conn.request(method, path, body=body, headers={"content-type": ctype})
            r = conn.getresponse()
            text = r.read()
            assert r.status == status, (path, r.status, text[:200])
            assert conn.sock is sock, f"the server closed the connection after {method} {path}"
    finally:
        conn.close()


# -- property-based: whatever JSON arrives, no 5xx ---------------------------------------------

EDGE_INTS = st.sampled_from([BIG, -BIG, -1, 0, 1, MAX_INT, MAX_INT + 1, 2**63, 2**64]) | st.integers()
EDGE_FLOATS = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 0.5]) | st.floats()
JSON_SCALARS = st.none() | st.booleans() | EDGE_INTS | EDGE_FLOATS | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=12)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
FIELDS = {"/api/encode": ["run", "image_id", "split"],
          "/api/decode": ["run", "code", "image_id", "split", "reference", "diff", "client", "seq"],
          "/api/sample": ["run", "n", "seed"],
          "/api/interpolate": ["run", "image_a", "image_b", "split", "steps", "mode"],
          "/api/command": ["run", "image_id", "split", "code", "reference", "upload_name"],
          "/api/download": ["run", "code", "format", "image_id", "split", "upload_name"]}
CODES = st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(), min_size=9, max_size=11)
PROPERTY = settings(deadline=None, database=None,  # examples: the AELAB_HYPOTHESIS profile (conftest.py)
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _no_5xx(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400 or r.headers["content-type"] == "application/json":  # a download's file is not
        assert isinstance(r.json()["detail"] if r.status_code >= 400 else r.json(), str | dict)


@pytest.mark.parametrize("path", POSTS)
@PROPERTY
@given(data=st.data())
@pytest.mark.slow
def test_any_json_body_gets_an_answer_below_500(client, valid, path, data):
    """A valid body with some fields replaced by arbitrary JSON (NaN, huge ints, nesting, codes of
    nearly the right length), some removed, or a body that is arbitrary JSON altogether."""
    base = dict(valid[path])
    fields = FIELDS[path]
    values = st.one_of(EDGE_INTS, EDGE_FLOATS, CODES, JSON_VALUES)  # the edges as likely as any JSON
    changes = data.draw(st.dictionaries(st.sampled_from(fields), values, max_size=len(fields)))
    dropped = data.draw(st.sets(st.sampled_from(fields), max_size=2))
    body = {k: v for k, v in (base | changes).items() if k not in dropped}
    if data.draw(st.integers(0, 9)) == 0:
        body = data.draw(JSON_VALUES)
    _no_5xx(post_text(client, path, json.dumps(body)))


@PROPERTY
@given(body=st.binary(max_size=300), ctype=st.sampled_from(["application/json", "image/png", "text/plain",
                                                             "application/octet-stream", "multipart/form-data",
                                                             "multipart/form-data; boundary=x", ""]))
def test_any_bytes_to_encode_get_an_answer_below_500(client, body, ctype):
    _no_5xx(client.post("/api/encode", content=body, headers={"content-type": ctype}))


@PROPERTY
@given(params=st.dictionaries(st.sampled_from(["run", "offset", "limit", "split", "at_id", "x"]),
                              st.text(max_size=30) | st.integers().map(str) | st.floats().map(str), max_size=3))
def test_any_image_page_query_gets_an_answer_below_500(client, params):
    _no_5xx(client.get("/api/images", params=params))


@PROPERTY
@given(params=st.dictionaries(st.sampled_from(["run", "elements", "x"]),
                              st.text(max_size=30) | st.integers().map(str) |
                              st.lists(st.integers(-5, 2**70), max_size=20).map(lambda v: ",".join(map(str, v))),
                              max_size=3))
def test_any_element_query_gets_an_answer_below_500(client, params):
    _no_5xx(client.get("/api/elements", params=params))
