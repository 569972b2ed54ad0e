"""The latent explorer's HTTP API: every endpoint against the Python API, and every bad input giving its 4xx."""

from __future__ import annotations

import base64
import io
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from _cli import AELAB, aelab_each, one_line_exit_2
from fastapi.testclient import TestClient
from PIL import Image

from aelab.edits import apply_edits, edit_command
from aelab.errors import AelabError
from aelab.latent import code_stats, data_ranges, top_elements
from aelab.serve import create_app

FACES = "builtin:faces?n=200&seed=3"


def _config(name: str, model: dict, epochs: int = 1) -> dict:
    return {"name": name, "seed": 0, "data": {"source": FACES, "val_fraction": 0.15}, "model": model,
            "train": {"epochs": epochs, "batch_size": 32, "lr": 2e-3}}


@pytest.fixture(scope="session")
def run_dirs(trained) -> dict[str, Path]:
    """A fcn AE (10-element code), a conv VAE (8) and a conv AE with a spatial 8×8×8 code (512)."""
    return {
        "ae": trained(_config("ae", {"type": "fcn", "hidden": [64], "latent_dim": 10}, epochs=2)).path,
        "vae": trained(_config("vae", {"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 8})).path,
        "big": trained(_config("big", {"type": "conv", "channels": [4, 8, 8], "latent_dim": None})).path,
    }


@pytest.fixture(scope="session")
def app(run_dirs):
    return create_app([run_dirs["ae"], run_dirs["vae"], run_dirs["big"]], top=6)


@pytest.fixture(scope="session")
def client(app) -> TestClient:
    return TestClient(app)


def served(run):
    """What the explorer shows without --data: the run's validation split."""
    return run.splits.val


def runs_of(app):
    return {k: v.run for k, v in app.state.serve.runs.items()}


def png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.format == "PNG"
    arr = np.asarray(img)
    return arr[..., None] if arr.ndim == 2 else arr


def png_file(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    (img.convert(mode) if mode else img).save(buf, format="PNG")
    return buf.getvalue()


def first_ids(client, run="ae", n=2) -> list[int]:
    return [i["id"] for i in client.get("/api/images", params={"run": run, "limit": n}).json()["items"]]


# -- runs and images ---------------------------------------------------------------

def test_runs_lists_each_run_with_ranges_and_sliders(client, app):
    body = client.get("/api/runs").json()
    assert [r["name"] for r in body["runs"]] == ["ae", "vae", "big"]
    assert body["max_upload_mb"] == 10 and body["data"] is None
    runs = runs_of(app)
    for info in body["runs"]:
        run = runs[info["name"]]
        assert info["latent_size"] == run.latent_size and info["family"] == run.model.family
        assert info["variational"] == run.variational
        assert info["image_shape"] == [64, 64, 3]
        assert info["n_images"] == len(served(run))
        low, high = data_ranges(run, served(run))
        live = high - low > 1e-6  # the data's mean ± 2 std where the element varies at all
        np.testing.assert_allclose(np.asarray(info["low"])[live], low[live], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(info["high"])[live], high[live], rtol=1e-6)
        # a dead element keeps its centre but gets the typical width, so its slider moves
        np.testing.assert_allclose((np.asarray(info["low"]) + info["high"])[~live] / 2, low[~live], atol=1e-6)
        typical = np.median((high - low)[live])
        np.testing.assert_allclose((np.asarray(info["high"]) - info["low"])[~live], typical, rtol=1e-5)
    ae, vae, big = body["runs"]
    assert ae["sliders"] == list(range(10)) and ae["slider_order"] == "all"
    assert vae["sliders"] == list(range(8))
    assert big["latent_size"] == 512 and len(big["sliders"]) == 6 and big["slider_order"] in ("spread", "effect")


@pytest.mark.slow(reason="measures every element's effect on a 512-element code (~0.8 s)")
def test_large_codes_get_their_top_elements_by_measured_effect(client, app):
    loaded = app.state.serve.runs["big"]
    assert loaded.wait_ranking(300)
    info = next(r for r in client.get("/api/runs").json()["runs"] if r["name"] == "big")
    assert info["slider_order"] == "effect"
    run = loaded.run
    mean = code_stats(run, served(run))["mean"].astype(np.float32)
    assert info["sliders"] == top_elements(run, mean, 6, ranges=data_ranges(run, served(run)))


def test_shutdown_stops_the_background_ranking(run_dirs):
    app = create_app([run_dirs["big"]], top=4)
    with TestClient(app) as c:  # the context runs the app's lifespan: leaving it is the server's shutdown
        assert c.get("/api/runs").json()["runs"][0]["slider_order"] in ("spread", "effect")
    loaded = app.state.serve.runs["big"]
    loaded._ranking_thread.join(60)
    assert not loaded._ranking_thread.is_alive()
    stopped = create_app([run_dirs["big"]], top=4).state.serve.runs["big"]
    stopped.stop()
    assert not stopped.wait_ranking(60)
    sliders, order = stopped.ranking()
    assert order == "spread" and len(sliders) == 4


def test_images_are_paged_with_stable_ids_and_show_what_the_model_sees(client, app):
    run = runs_of(app)["ae"]
    data = served(run)
    body = client.get("/api/images", params={"run": "ae", "offset": 3, "limit": 5}).json()
    assert body["total"] == len(data) and body["offset"] == 3
    assert [i["id"] for i in body["items"]] == data.ids[3:8].tolist()
    expected = run.preprocess.inverse(run.to_model(data.subset(np.arange(3, 8))))
    np.testing.assert_array_equal(np.stack([png(i["image"]) for i in body["items"]]), expected)
    tail = client.get("/api/images", params={"run": "ae", "offset": len(data) - 2, "limit": 10}).json()
    assert len(tail["items"]) == 2
    assert client.get("/api/images", params={"offset": len(data) + 5}).json()["items"] == []


@pytest.mark.parametrize("params, status", [({"run": "nope"}, 404), ({"limit": 0}, 422), ({"limit": 10_000}, 422),
                                            ({"offset": -1}, 422), ({"offset": "x"}, 422)])
def test_images_bad_query(client, params, status):
    r = client.get("/api/images", params=params)
    assert r.status_code == status
    assert isinstance(r.json()["detail"], str) and "\n" not in r.json()["detail"]


# -- encode and decode ---------------------------------------------------------------

def test_encode_by_id_matches_the_python_api(client, app):
    run = runs_of(app)["ae"]
    image_id = first_ids(client)[1]
    body = client.post("/api/encode", json={"run": "ae", "image_id": image_id}).json()
    assert body["image_id"] == image_id and body["run"] == "ae"
    subset = served(run).by_ids([image_id])
    code = run.encode(subset).reshape(-1)
    np.testing.assert_allclose(body["code"], code, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(png(body["original"]), run.preprocess.inverse(run.to_model(subset))[0])
    recon = run.decode(np.asarray(body["code"], np.float32)[None])[0]
    np.testing.assert_array_equal(png(body["reconstruction"]), recon)


def test_encode_defaults_to_the_first_run_and_works_for_a_vae(client, app):
    image_id = first_ids(client, "vae")[0]
    assert client.post("/api/encode", json={"image_id": image_id}).json()["run"] == "ae"
    body = client.post("/api/encode", json={"run": "vae", "image_id": image_id}).json()
    vae = runs_of(app)["vae"]
    mean, _ = vae.encode_stats(served(vae).by_ids([image_id]))
    np.testing.assert_allclose(body["code"], mean.reshape(-1), rtol=1e-5, atol=1e-6)


def test_decode_gives_the_decoded_code_and_an_edit_changes_it(client, app):
    run = runs_of(app)["ae"]
    image_id = first_ids(client)[0]
    enc = client.post("/api/encode", json={"run": "ae", "image_id": image_id}).json()
    same = client.post("/api/decode", json={"run": "ae", "code": enc["code"], "image_id": image_id,
                                            "diff": True}).json()
    assert same["image"] == enc["reconstruction"] and same["diff_max"] == 0.0 and not same["superseded"]
    edited_code = list(enc["code"])
    edited_code[2] += 4.0
    edited = client.post("/api/decode", json={"run": "ae", "code": edited_code, "image_id": image_id,
                                              "diff": True}).json()
    img = png(edited["image"])
    np.testing.assert_array_equal(img, run.decode(np.asarray(edited_code, np.float32)[None])[0])
    assert (img != png(enc["reconstruction"])).any()
    # the diff map's scale: mean |edited - reconstruction| over channels, pixels in [0, 1]
    with_diff = run.preprocess.to_unit(run.decode_tensor(np.asarray([edited_code, enc["code"]], np.float32)))
    expected = float((with_diff[0] - with_diff[1]).abs().mean(0).max())
    assert edited["diff_max"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    diff = png(edited["diff"])
    assert diff.shape == (64, 64, 3) and diff.std() > 0
    # without diff: no map; against a reference code instead of an image id
    assert client.post("/api/decode", json={"run": "ae", "code": edited_code}).json()["diff"] is None
    ref = client.post("/api/decode", json={"run": "ae", "code": edited_code, "reference": enc["code"],
                                           "diff": True}).json()
    assert ref["diff_max"] == pytest.approx(edited["diff_max"], rel=1e-4)


def _raw_decode(client, text: str):
    return client.post("/api/decode", content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("body, status, words", [
    ('{"run": "ae", "code": [1, 2, 3]}', 422, "3 elements; run 'ae' decodes codes of 10"),
    ('{"run": "ae", "code": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', 422, "element 0 is nan"),
    ('{"run": "ae", "code": [0, Infinity, 0, 0, 0, 0, 0, 0, 0, 0]}', 422, "element 1 is inf"),
    ('{"run": "ae", "code": [0, 0, 1e400, 0, 0, 0, 0, 0, 0, 0]}', 422, "element 2 is inf"),
    ('{"run": "ae", "code": [0, 0, 0, 1e9, 0, 0, 0, 0, 0, 0]}', 422, "element 3 is 1e+09"),
    ('{"run": "ae", "code": [0, 0, 0, 0, "x", 0, 0, 0, 0, 0]}', 422, "code.4"),
    ('{"run": "ae", "code": "zeros"}', 422, "code"),
    ('{"run": "ae"}', 422, "code: Field required"),
    ('{"run": "ae", "code": [', 422, "JSON"),
    ('{"run": "aee", "code": [0]}', 404, "did you mean 'ae'"),
    ('{"run": "ae", "code": [0,0,0,0,0,0,0,0,0,0], "image_id": 100000, "diff": true}', 404, "no image with id 100000"),
    ('{"run": "ae", "code": [0,0,0,0,0,0,0,0,0,0], "reference": [1], "diff": true}', 422, "reference has 1"),
])
def test_decode_bad_input_is_a_clear_4xx(client, body, status, words):
    r = _raw_decode(client, body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail and "Traceback" not in detail


def test_decode_codes_for_the_spatial_run_are_flat(client, app):
    big = runs_of(app)["big"]
    image_id = first_ids(client, "big")[0]
    enc = client.post("/api/encode", json={"run": "big", "image_id": image_id}).json()
    assert len(enc["code"]) == 512
    np.testing.assert_allclose(enc["code"], big.encode(served(big).by_ids([image_id])).reshape(-1), rtol=1e-5,
                               atol=1e-6)
    r = client.post("/api/decode", json={"run": "big", "code": enc["code"][:64]})
    assert r.status_code == 422 and "shape (8, 8, 8)" in r.json()["detail"]


# -- coalescing ------------------------------------------------------------------------

def test_an_overtaken_decode_is_skipped(client):
    code = client.post("/api/encode", json={"run": "ae", "image_id": first_ids(client)[0]}).json()["code"]
    newer = client.post("/api/decode", json={"run": "ae", "code": code, "client": "tab-1", "seq": 7}).json()
    assert not newer["superseded"] and newer["image"]
    older = client.post("/api/decode", json={"run": "ae", "code": code, "client": "tab-1", "seq": 6}).json()
    assert older == {"run": "ae", "superseded": True, "seq": 6, "image": None, "diff": None, "diff_max": None}
    other = client.post("/api/decode", json={"run": "ae", "code": code, "client": "tab-2", "seq": 1}).json()
    assert not other["superseded"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(app):
    """The app on a real uvicorn server in a thread: (base url, app)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_decodes_queued_behind_a_busy_model_are_coalesced_to_the_latest(live, app):
    """While the model is busy, three slider states arrive; only the newest is decoded."""
    loaded = app.state.serve.runs["ae"]
    code = loaded.encode_id(int(loaded.data.ids[0])).code.tolist()
    results: dict[int, dict] = {}

    def send(seq: int) -> None:
        with httpx.Client(base_url=live, timeout=30) as c:
            results[seq] = c.post("/api/decode", json={"run": "ae", "code": code, "client": "drag", "seq": seq}).json()

    threads = [threading.Thread(target=send, args=(s,)) for s in (1, 2, 3)]
    with loaded.lock:  # the model is busy with an earlier frame
        for t in threads:
            t.start()
            time.sleep(0.05)
        deadline = time.time() + 20
        while loaded.latest._seen.get("drag") != 3 and time.time() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert results[3]["superseded"] is False and results[3]["image"]
    assert results[1]["superseded"] and results[2]["superseded"]


# -- sample, interpolate, command ----------------------------------------------------------

def test_sample_draws_from_the_vae_prior(client, app):
    vae = runs_of(app)["vae"]
    body = client.post("/api/sample", json={"run": "vae", "n": 3, "seed": 5}).json()
    assert body["seed"] == 5 and "prior" in body["drawn_from"]
    codes = np.asarray(body["codes"], np.float32)
    assert codes.shape == (3, 8)
    np.testing.assert_allclose(codes, np.random.default_rng(5).standard_normal((3, 8)), rtol=1e-6)
    np.testing.assert_array_equal(np.stack([png(i) for i in body["images"]]), vae.decode(codes))
    again = client.post("/api/sample", json={"run": "vae", "n": 3, "seed": 5}).json()
    assert again["codes"] == body["codes"]
    fresh = client.post("/api/sample", json={"run": "vae"}).json()
    assert len(fresh["codes"]) == 1 and isinstance(fresh["seed"], int)


def test_sample_for_a_plain_autoencoder_uses_a_fitted_gaussian(client, app):
    ae = runs_of(app)["ae"]
    body = client.post("/api/sample", json={"run": "ae", "n": 64, "seed": 1}).json()
    assert "Gaussian" in body["drawn_from"]
    codes = np.asarray(body["codes"])
    train_codes = ae.encode(ae.splits.train)
    np.testing.assert_allclose(codes.mean(0), train_codes.mean(0), atol=5 * train_codes.std(0).max() / 8)
    assert np.corrcoef(codes.std(0), train_codes.std(0))[0, 1] > 0.8


@pytest.mark.parametrize(("body", "status"), [({"n": 0}, 422), ({"n": 65}, 422), ({"seed": -1}, 422),
                                              ({"run": "x"}, 404)])
def test_sample_bad_input(client, body, status):
    assert client.post("/api/sample", json=body).status_code == status


def test_interpolate_runs_from_one_reconstruction_to_the_other(client, app):
    ae = runs_of(app)["ae"]
    a, b = first_ids(client, "ae", 2)
    body = client.post("/api/interpolate", json={"run": "ae", "image_a": a, "image_b": b, "steps": 5}).json()
    assert body["t"] == [0, 0.25, 0.5, 0.75, 1] and body["mode"] == "linear"
    frames = np.stack([png(i) for i in body["images"]]).astype(int)
    ends = ae.reconstruct(served(ae).by_ids([a, b])).astype(int)
    assert np.abs(frames[0] - ends[0]).max() <= 1 and np.abs(frames[-1] - ends[1]).max() <= 1
    za, zb = ae.encode(served(ae).by_ids([a, b]))
    middle = ae.decode((0.5 * za + 0.5 * zb)[None])[0].astype(int)
    assert np.abs(frames[2] - middle).max() <= 1
    slerp = client.post("/api/interpolate", json={"run": "ae", "image_a": a, "image_b": b, "mode": "slerp"})
    assert slerp.status_code == 200 and len(slerp.json()["images"]) == 9


@pytest.mark.parametrize("body, status", [({"image_a": 0, "image_b": 100000}, 404), ({"image_a": 0}, 422),
                                          ({"image_a": 0, "image_b": 1, "steps": 1}, 422),
                                          ({"image_a": 0, "image_b": 1, "mode": "cubic"}, 422)])
def test_interpolate_bad_input(client, body, status):
    r = client.post("/api/interpolate", json={"run": "ae", **body})
    assert r.status_code == status and isinstance(r.json()["detail"], str)


def test_copy_as_command_reproduces_the_edited_code(client, app, run_dirs):
    image_id = first_ids(client)[0]
    code = np.asarray(client.post("/api/encode", json={"run": "ae", "image_id": image_id}).json()["code"],
                      np.float32)
    edited = code.copy()
    edited[1], edited[7] = 2.5, code[7] - 1.0 / 3.0
    body = client.post("/api/command", json={"run": "ae", "image_id": image_id, "code": edited.tolist()}).json()
    assert body["changed"] == [1, 7]
    argv = shlex.split(body["command"])
    assert argv[:3] == ["aelab", "edit", str(run_dirs["ae"])]
    assert argv[argv.index("--id") + 1] == str(image_id)
    edit = argv[argv.index("--edit") + 1]
    assert edit == body["edit"]
    np.testing.assert_array_equal(apply_edits(code, edit), edited)
    unchanged = client.post("/api/command", json={"run": "ae", "image_id": image_id, "code": code.tolist()}).json()
    assert unchanged["edit"] is None and unchanged["changed"] == []
    assert unchanged["command"] == edit_command(run_dirs["ae"], image_id, [])  # runs, and only reconstructs
    bad = client.post("/api/command", json={"run": "ae", "image_id": image_id, "code": [0.0]})
    assert bad.status_code == 422


# -- uploads ----------------------------------------------------------------------------------

def test_upload_of_a_data_image_encodes_like_its_id(client, app):
    run = runs_of(app)["ae"]
    image_id = first_ids(client)[0]
    raw = png_file(served(run).by_ids([image_id]).batch()[0])
    by_upload = client.post("/api/encode", files={"image": ("face.png", raw, "image/png")}, data={"run": "ae"}).json()
    by_id = client.post("/api/encode", json={"run": "ae", "image_id": image_id}).json()
    assert by_upload["image_id"] is None
    assert by_upload["code"] == by_id["code"] and by_upload["original"] == by_id["original"]
    raw_body = client.post("/api/encode?run=ae", content=raw, headers={"content-type": "image/png"}).json()
    assert raw_body["code"] == by_id["code"]


@pytest.mark.parametrize("size, mode", [((100, 80), "RGB"), ((30, 90), "L"), ((64, 64), "RGBA"), ((50, 50), "P")])
def test_upload_of_any_size_and_mode_is_resized_and_converted(client, size, mode):
    rng = np.random.default_rng(0)
    raw = png_file(rng.integers(0, 256, (*size, 3), dtype=np.uint8), mode)
    body = client.post("/api/encode", files={"image": ("x.png", raw, "image/png")}, data={"run": "vae"}).json()
    assert png(body["original"]).shape == (64, 64, 3) and len(body["code"]) == 8


def test_upload_is_centre_cropped_then_resized(client, app):
    """A wide image with the data image in its middle third comes back as that image."""
    run = runs_of(app)["ae"]
    face = served(run).by_ids([first_ids(client)[0]]).batch()[0]
    wide = np.concatenate([np.zeros_like(face), face, np.zeros_like(face)], axis=1)
    body = client.post("/api/encode", files={"image": ("w.png", png_file(wide), "image/png")}).json()
    np.testing.assert_array_equal(png(body["original"]), face)


def test_upload_errors_are_clear_4xx(run_dirs):
    small = TestClient(create_app([run_dirs["ae"]], max_upload_mb=0.01))
    noise = png_file(np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    assert len(noise) > 0.01 * 2**20
    checks = [
        (small.post("/api/encode", files={"image": ("x.png", noise, "image/png")}), 413, "limit is 0.01 MB"),
        (small.post("/api/encode", content=noise, headers={"content-type": "image/png"}), 413, "0.01 MB"),
        (small.post("/api/encode", files={"image": ("x.txt", b"hello, not an image", "text/plain")}), 415,
         "not a readable image"),
        (small.post("/api/encode", files={"other": ("x.png", png_file(np.zeros((8, 8, 3), np.uint8)))}), 422,
         "file field named 'image'"),
        (small.post("/api/encode", content=b"\x89PNG\r\n\x1a\n broken", headers={"content-type": "image/png"}), 415,
         "not a readable image"),
        (small.post("/api/encode", content=b"x", headers={"content-type": "multipart/form-data"}), 400, "upload"),
        (small.post("/api/encode", files={"image": ("x.png", png_file(np.zeros((8, 8, 3), np.uint8))),
                                          "run": ("r.txt", b"ae")}), 400, "Maximum number of files is 1"),
        (small.post("/api/encode", files={"run": ("r.png", png_file(np.zeros((8, 8, 3), np.uint8)))},
                    data={"image": "text"}), 422, "file field named 'image'"),
        (small.post("/api/encode", json={"image_id": "seven"}), 422, "image_id"),
        (small.post("/api/encode", json={"image_id": 100000}), 404, "no image with id 100000"),
        (small.post("/api/encode", json={"run": "zz", "image_id": 0}), 404, "no run 'zz'"),
    ]
    for r, status, words in checks:
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]


def test_any_oversized_request_is_refused_unread(run_dirs):
    from aelab.serve.app import JSON_LIMIT

    small = TestClient(create_app([run_dirs["ae"]], max_upload_mb=0.01))
    junk = b"[" + b"0," * ((JSON_LIMIT + 20_000) // 2) + b"0]"
    r = small.post("/api/decode", content=junk, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "the limit is" in r.json()["detail"]


def test_upload_with_too_many_pixels_is_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, format="PNG")
    r = client.post("/api/encode", files={"image": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and "8000×6000" in r.json()["detail"]


# -- the app as a whole ----------------------------------------------------------------------

def test_openapi_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/runs", "/api/images", "/api/encode", "/api/decode", "/api/sample", "/api/interpolate"):
        assert path in schema["paths"], path
    encode_body = schema["paths"]["/api/encode"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(encode_body)
    names = [p["name"] for ops in schema["paths"].values() for op in ops.values() for p in op.get("parameters", [])]
    assert not {"path", "file", "folder", "source"} & set(names)


def test_page_and_static_files_are_served_and_nothing_else(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/state.py").status_code == 404
    assert client.get("/api/nothing").status_code == 404


def test_host_header_is_checked_when_asked(run_dirs):
    local = TestClient(create_app([run_dirs["ae"]], allowed_hosts=["127.0.0.1", "localhost", "[::1]"]),
                       base_url="http://127.0.0.1")
    for host in ("127.0.0.1", "127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "[::1]"):
        assert local.get("/api/runs", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "[::2]:80", ""):
        r = local.get("/api/runs", headers={"host": host})
        assert r.status_code == 400 and "is not served here" in r.json()["detail"], host


def test_host_name():
    from aelab.serve.app import host_name

    assert host_name("127.0.0.1:8765") == "127.0.0.1" and host_name("[::1]:80") == "::1"
    assert host_name("Example.com") == "example.com" and host_name("::1") == "::1" and host_name("") == ""


def test_create_app_rejects_bad_arguments(run_dirs, tmp_path):
    with pytest.raises(AelabError, match="not found"):
        create_app([tmp_path / "missing"])
    with pytest.raises(AelabError, match="no run"):
        create_app([])
    with pytest.raises(AelabError, match="positive"):
        create_app([run_dirs["ae"]], max_upload_mb=0)


def test_range_option_sets_the_slider_ranges(run_dirs):
    fixed = TestClient(create_app([run_dirs["ae"]], range_kind="-3:3")).get("/api/runs").json()["runs"][0]
    assert fixed["range"] == "-3:3" and set(fixed["low"]) == {-3.0} and set(fixed["high"]) == {3.0}
    prior = TestClient(create_app([run_dirs["vae"]], range_kind="prior")).get("/api/runs").json()["runs"][0]
    np.testing.assert_allclose(prior["high"], 1.959964, rtol=1e-5)
    np.testing.assert_allclose(prior["low"], -1.959964, rtol=1e-5)
    with pytest.raises(AelabError, match="prior"):
        create_app([run_dirs["ae"]], range_kind="prior")
    with pytest.raises(AelabError, match="range"):
        create_app([run_dirs["ae"]], range_kind="wide")


def test_same_folder_name_twice_gets_distinct_names(run_dirs):
    body = TestClient(create_app([run_dirs["ae"], run_dirs["ae"]])).get("/api/runs").json()
    assert [r["name"] for r in body["runs"]] == ["ae", "ae-2"]


def test_data_option_serves_that_source(run_dirs):
    c = TestClient(create_app([run_dirs["ae"]], data="builtin:faces?n=12&seed=9"))
    assert c.get("/api/runs").json()["runs"][0]["n_images"] == 12
    body = c.get("/api/images", params={"limit": 50}).json()
    assert [i["id"] for i in body["items"]] == list(range(12))
    cmd = c.post("/api/command", json={"image_id": 3, "code": [0.0] * 10}).json()["command"]
    assert "--data 'builtin:faces?n=12&seed=9'" in cmd


# -- the command ------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_missing_run_and_bad_range_are_one_line_errors(tmp_path, run_dirs):
    missing, prior = aelab_each(("serve", tmp_path / "nope"), ("serve", run_dirs["ae"], "--range", "prior"))
    one_line_exit_2(missing, "run folder not found")
    one_line_exit_2(prior, "range 'prior' needs a VAE")


def _serve(args: list[str], port: int) -> subprocess.Popen:
    return subprocess.Popen([str(AELAB), "serve", *args, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"server at {url} did not start")


@pytest.mark.slow
def test_cli_serves_on_loopback_and_prints_its_address(run_dirs):
    port = _free_port()
    proc = _serve([str(run_dirs["ae"]), str(run_dirs["vae"])], port)
    try:
        _wait_up(f"http://127.0.0.1:{port}/api/runs", proc)
        runs = httpx.get(f"http://127.0.0.1:{port}/api/runs").json()["runs"]
        assert [r["name"] for r in runs] == ["ae", "vae"]
        foreign = httpx.get(f"http://127.0.0.1:{port}/api/runs", headers={"host": "attacker.example"})
        assert foreign.status_code == 400
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert out.splitlines()[0] == f"aelab explorer: http://127.0.0.1:{port}/"
    assert "warning" not in err


@pytest.mark.slow
def test_cli_warns_when_not_bound_to_loopback(run_dirs):
    port = _free_port()
    proc = _serve([str(run_dirs["ae"]), "--host", "0.0.0.0"], port)
    try:
        _wait_up(f"http://127.0.0.1:{port}/api/runs", proc)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert f"aelab explorer: http://0.0.0.0:{port}/" in out
    assert "warning: listening on 0.0.0.0, not loopback" in " ".join(err.split())


def test_is_loopback():
    from aelab.cli.serve import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
