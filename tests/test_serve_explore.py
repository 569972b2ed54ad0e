"""The explorer's splits, id jumps, element facts, downloads and upload commands, through the HTTP API."""

from __future__ import annotations

import io
import json
import shlex

import numpy as np
import pytest
from _cli import aelab
from conftest import tiny_config
from fastapi.testclient import TestClient
from PIL import Image

from aelab.data.files import read_image_file
from aelab.edits import apply_edits
from aelab.latent import code_stats, element_effects, factor_table
from aelab.serve import create_app


@pytest.fixture(scope="module")
def faces(trained):
    """A tiny fcn on builtin faces (validation and training splits; the data carries its factors)."""
    return trained(tiny_config())


@pytest.fixture(scope="module")
def npz_run(trained, tmp_path_factory):
    """A tiny fcn on an npz with its own x_test: validation, training and test splits, no factors."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("npz") / "set.npz"
    base = rng.integers(0, 256, (1, 16, 16, 3))
    shade = rng.integers(-40, 40, (70, 1, 1, 1))
    images = np.clip(base + shade + rng.integers(-10, 10, (70, 16, 16, 3)), 0, 255).astype(np.uint8)
    np.savez(path, x_train=images[:50], x_test=images[50:])
    return trained(tiny_config(name="npz", data={"source": f"npz:{path}#x_train", "val_fraction": 0.2}))


@pytest.fixture(scope="module")
def client(faces, npz_run) -> TestClient:
    return TestClient(create_app([faces, npz_run]))


def png(raw: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(raw))
    assert img.format == "PNG"
    return np.asarray(img)


def png_uri(uri: str) -> np.ndarray:
    import base64

    return png(base64.b64decode(uri.split(",", 1)[1]))


def check_4xx(r, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for w in words:
        assert w in detail, detail
    return detail


# -- splits and id jumps ------------------------------------------------------------------

def test_runs_list_their_splits(client, faces, npz_run):
    by_name = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    f, n = by_name["tiny"], by_name["npz"]
    assert [s["name"] for s in f["splits"]] == ["val", "train"] and f["split"] == "val"
    assert [s["n_images"] for s in f["splits"]] == [len(faces.splits.val), len(faces.splits.train)]
    assert [s["name"] for s in n["splits"]] == ["val", "train", "test"]
    assert n["splits"][2]["n_images"] == 20 and n["splits"][2]["source"].endswith("#x_test")


def test_each_split_pages_its_own_images(client, faces, npz_run):
    for run, split, images in [("tiny", "train", faces.splits.train), ("tiny", "val", faces.splits.val),
                               ("npz", "test", npz_run.splits.full.test)]:
        model = faces if run == "tiny" else npz_run
        body = client.get("/api/images", params={"run": run, "split": split, "limit": 7, "offset": 2}).json()
        assert body["split"] == split and body["total"] == len(images)
        assert [i["id"] for i in body["items"]] == images.ids[2:9].tolist()
        want = model.preprocess.inverse(model.to_model(images.subset(np.arange(2, 9))))
        np.testing.assert_array_equal(np.stack([png_uri(i["image"]) for i in body["items"]]), want)
    # the default is the validation split
    assert client.get("/api/images", params={"run": "tiny"}).json()["split"] == "val"


def test_an_id_jump_returns_the_page_that_holds_it(client, faces):
    train = faces.splits.train
    target = int(train.ids[23])  # position 23: the page of 10 starting at position 20
    body = client.get("/api/images", params={"run": "tiny", "split": "train", "at_id": target, "limit": 10}).json()
    assert body["offset"] == 20 and target in [i["id"] for i in body["items"]]
    assert [i["id"] for i in body["items"]] == train.ids[20:30].tolist()


def test_training_image_zero_encodes_as_the_reports_edit_it(client, faces):
    # the reports edit image 0 of the training data: it is reachable, and its code is aelab.edit's
    first_train = int(faces.splits.train.ids[0])
    body = client.post("/api/encode", json={"run": "tiny", "split": "train", "image_id": first_train}).json()
    want = faces.encode(faces.data().by_ids([first_train])).reshape(-1)
    np.testing.assert_array_equal(np.float32(body["code"]), want)


def test_test_split_ids_are_rows_of_the_test_source(client, npz_run):
    test = npz_run.splits.full.test
    body = client.post("/api/encode", json={"run": "npz", "split": "test", "image_id": 4}).json()
    np.testing.assert_array_equal(np.float32(body["code"]), npz_run.encode(test.by_ids([4])).reshape(-1))
    np.testing.assert_array_equal(png_uri(body["original"]),
                                  npz_run.preprocess.inverse(npz_run.to_model(test.by_ids([4])))[0])


def test_served_ids_are_found_together_as_one_by_one(faces, npz_run):
    """``ServedImages.by_ids`` finds many ids with one lookup: the positions the one-by-one search gives."""
    from aelab.serve.splits import ServedImages, SplitError

    served = ServedImages(faces)
    for split in ("val", "train"):
        images = served.get(split)
        ids = images.ids[::-3][:20]  # out of order
        want = [int(np.flatnonzero(images.ids == i)[0]) for i in ids]
        assert served.positions(split, ids).tolist() == want
        assert [served.position(split, int(i)) for i in ids] == want
        np.testing.assert_array_equal(served.by_ids(split, ids.tolist()).batch(), images.batch(np.array(want)))
    val_id, train_id = int(served.get("val").ids[0]), int(served.get("train").ids[0])
    assert served.positions("val", [val_id, train_id, -1, 10_000]).tolist() == [0, -1, -1, -1]
    with pytest.raises(SplitError, match=f"image {train_id} is not in the validation split.*training split"):
        served.by_ids("val", [val_id, train_id])
    with pytest.raises(SplitError, match="no image with id 10000"):
        served.by_ids("train", [train_id, 10_000])
    test = ServedImages(npz_run)
    np.testing.assert_array_equal(test.by_ids("test", [4, 0]).batch(), npz_run.splits.full.test.batch(np.array([4, 0])))


def test_split_and_id_errors_are_clear(client, faces):
    val_id, train_id = int(faces.splits.val.ids[0]), int(faces.splits.train.ids[0])
    check_4xx(client.get("/api/images", params={"run": "tiny", "split": "val", "at_id": train_id}), 404,
              f"image {train_id} is not in the validation split", "it is in the training split")
    check_4xx(client.post("/api/encode", json={"run": "tiny", "split": "train", "image_id": val_id}), 404,
              "not in the training split", "it is in the validation split")
    check_4xx(client.get("/api/images", params={"run": "tiny", "at_id": 10_000}), 404,
              "no image with id 10000", "0..159")
    check_4xx(client.get("/api/images", params={"run": "tiny", "split": "test"}), 404,
              "run 'tiny'", "no test split", "val (validation), train (training)")
    check_4xx(client.get("/api/images", params={"split": "holdout"}), 422, "split")
    check_4xx(client.get("/api/images", params={"at_id": -1}), 422, "at_id")
    check_4xx(client.get("/api/images", params={"at_id": 2**53}), 422, "at_id")
    check_4xx(client.post("/api/encode", json={"image_id": 2**60, "split": "train"}), 422, "image_id")
    check_4xx(client.post("/api/interpolate", json={"run": "tiny", "split": "train", "image_a": train_id,
                                                    "image_b": val_id}), 404, "validation split")


def test_diff_and_interpolation_take_the_split(client, faces):
    a, b = (int(i) for i in faces.splits.train.ids[:2])
    enc = client.post("/api/encode", json={"run": "tiny", "split": "train", "image_id": a}).json()
    body = client.post("/api/decode", json={"run": "tiny", "code": enc["code"], "diff": True, "image_id": a,
                                            "split": "train"}).json()
    assert body["diff_max"] == 0.0
    frames = client.post("/api/interpolate", json={"run": "tiny", "split": "train", "image_a": a, "image_b": b,
                                                   "steps": 3}).json()["images"]
    np.testing.assert_array_equal(png_uri(frames[0]), png_uri(enc["reconstruction"]))


# -- what each element moves ------------------------------------------------------------------

def test_element_facts_are_traverse_factors_and_measured_effects(client, faces, monkeypatch):
    import aelab.latent

    measured = []  # the elements each decode-measuring call was asked for
    real_effects = aelab.latent.element_effects
    monkeypatch.setattr(aelab.latent, "element_effects", lambda *a, dims, **k: measured.append(list(dims))
                        or real_effects(*a, dims=dims, **k))
    body = client.get("/api/elements", params={"run": "tiny", "elements": "3,0"}).json()
    assert [e["element"] for e in body["elements"]] == [3, 0] and body["factors_note"] is None
    val = faces.splits.val
    table = factor_table(faces, val)
    loaded_low, loaded_high = (np.asarray(v, np.float32) for v in
                               (client.get("/api/runs").json()["runs"][0][k] for k in ("low", "high")))
    mean = code_stats(faces, val)["mean"].astype(np.float32)
    want_effects = element_effects(faces, mean, (loaded_low, loaded_high), dims=[3, 0])
    for e in body["elements"]:
        assert len(e["factors"]) == 2
        rs = table[e["element"]]["all"]
        strongest = sorted(rs, key=lambda k: -abs(rs[k]))[:2]
        assert [f["factor"] for f in e["factors"]] == strongest
        assert [f["r"] for f in e["factors"]] == [rs[k] for k in strongest]
        assert abs(e["factors"][0]["r"]) >= abs(e["factors"][1]["r"])
        assert e["effect"] == pytest.approx(want_effects[e["element"]], rel=1e-6) and e["effect"] > 0
    # the default is every slider; elements 3 and 0 are answered from the cache (not measured again),
    # the others measured once, and a repeated call measures nothing
    measured.clear()
    again = client.get("/api/elements", params={"run": "tiny"}).json()["elements"]
    assert [e["element"] for e in again] == list(range(faces.latent_size))
    assert [e["effect"] for e in again if e["element"] in (0, 3)] == [body["elements"][1]["effect"],
                                                                       body["elements"][0]["effect"]]
    assert sorted(d for dims in measured for d in dims) == [d for d in range(faces.latent_size) if d not in (0, 3)]
    measured.clear()
    assert client.get("/api/elements", params={"run": "tiny"}).json()["elements"] == again and measured == []


def test_element_facts_without_factors_say_why(client):
    body = client.get("/api/elements", params={"run": "npz"}).json()
    assert "carries no generating factors" in body["factors_note"]
    assert all(e["factors"] is None and e["effect"] >= 0 for e in body["elements"])


@pytest.mark.parametrize("elements, status, words", [
    ("4", 422, ("outside the code of 4 elements", "0..3")), ("99999999999999999", 422, ("outside",)),
    ("x", 422, ("elements",)), ("", 422, ("elements",)), (",".join(["0"] * 300), 422, ("at most 256",)),
    ("1" * 5000, 422, ("elements",))])
def test_element_facts_bad_query(client, elements, status, words):
    check_4xx(client.get("/api/elements", params={"run": "tiny", "elements": elements}), status, *words)


# -- downloads ---------------------------------------------------------------------------------

def test_downloads_round_trip_to_the_shown_decode(client, faces):
    image_id = int(faces.splits.val.ids[1])
    code = np.float32(client.post("/api/encode", json={"run": "tiny", "image_id": image_id}).json()["code"])
    code[2] += 1.75
    shown = png_uri(client.post("/api/decode", json={"run": "tiny", "code": code.tolist()}).json()["image"])
    req = {"run": "tiny", "code": code.tolist(), "image_id": image_id, "split": "val"}

    r = client.post("/api/download", json={**req, "format": "png"})
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == f'attachment; filename="tiny-val{image_id}-edited.png"'
    np.testing.assert_array_equal(png(r.content), shown)

    r = client.post("/api/download", json={**req, "format": "npy"})
    assert r.headers["content-disposition"].endswith('-code.npy"')
    saved = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert saved.dtype == np.float32 and saved.shape == tuple(faces.latent_shape)
    np.testing.assert_array_equal(saved.reshape(-1), code)
    np.testing.assert_array_equal(faces.decode(saved[None])[0], shown)  # the file decodes to what was shown

    r = client.post("/api/download", json={**req, "format": "json"})
    body = json.loads(r.content)
    assert body["image_id"] == image_id and body["split"] == "val" and body["latent_shape"] == list(faces.latent_shape)
    again = np.asarray(body["code"], np.float32).reshape(body["latent_shape"])
    np.testing.assert_array_equal(again.reshape(-1), code)
    via_api = client.post("/api/decode", json={"run": "tiny", "code": body["code"]}).json()["image"]
    np.testing.assert_array_equal(png_uri(via_api), shown)


def test_download_bad_input(client, faces):
    code = [0.0] * faces.latent_size
    check_4xx(client.post("/api/download", json={"run": "tiny", "code": code, "format": "gif"}), 422, "format")
    check_4xx(client.post("/api/download", json={"run": "tiny", "code": [0.0], "format": "png"}), 422,
              "1 elements", "4 elements")
    check_4xx(client.post("/api/download", json={"run": "tiny", "code": code, "format": "npy",
                                                  "image_id": 2**53}), 422, "image_id")
    check_4xx(client.post("/api/download", json={"run": "tiny", "code": code, "format": "npy",
                                                  "upload_name": "x" * 300}), 422, "upload_name")
    r = client.post("/api/download", json={"run": "tiny", "code": code, "format": "json", "upload_name": "a b.png"})
    assert r.status_code == 200 and json.loads(r.content)["upload"] == "a b.png"
    assert r.headers["content-disposition"] == 'attachment; filename="tiny-upload-code.json"'


# -- copy as command -------------------------------------------------------------------------

def test_command_for_a_training_and_a_test_image(client, faces, npz_run):
    train_id = int(faces.splits.train.ids[5])
    body = client.post("/api/command", json={"run": "tiny", "split": "train", "image_id": train_id,
                                             "code": [0.5] * 4}).json()
    argv = shlex.split(body["command"])
    assert argv[argv.index("--id") + 1] == str(train_id) and "--data" not in argv  # ids are rows of the source
    test = client.post("/api/command", json={"run": "npz", "split": "test", "image_id": 2, "code": [0.0] * 4}).json()
    argv = shlex.split(test["command"])
    assert argv[argv.index("--data") + 1] == npz_run.splits.full.test.name


@pytest.mark.slow
def test_command_for_an_upload_runs_and_makes_the_same_code(client, faces, tmp_path):
    # an upload of another size: the command's --image reads it exactly as the upload was read
    original = faces.splits.val.batch([0])[0]
    path = tmp_path / "my face.png"
    Image.fromarray(original).resize((40, 40)).save(path)
    enc = client.post("/api/encode", files={"image": (path.name, path.read_bytes(), "image/png")},
                      data={"run": "tiny"}).json()
    code = np.float32(enc["code"])
    edited = code.copy()
    edited[1] = 2.25
    body = client.post("/api/command", json={"run": "tiny", "code": edited.tolist(), "reference": code.tolist(),
                                             "upload_name": path.name}).json()
    assert body["changed"] == [1] and body["image"] == path.name
    argv = shlex.split(body["command"])
    assert argv[argv.index("--image") + 1] == path.name and "--id" not in argv
    np.testing.assert_array_equal(apply_edits(code, body["edit"]), edited)
    want = faces.encode(read_image_file(path, faces.image_shape)[None]).reshape(-1)
    np.testing.assert_array_equal(want, code)
    out = tmp_path / "edit.png"
    argv[argv.index("--out") + 1] = str(out)
    got = json.loads(aelab(*argv[1:], "--json", cwd=tmp_path).stdout)
    np.testing.assert_array_equal(np.float32(got["edits"][0]["code"]), edited)
    assert out.exists()
    # without the file's name: a placeholder; without the upload's code: a clear 422
    body = client.post("/api/command", json={"run": "tiny", "code": edited.tolist(), "reference": code.tolist()})
    assert "--image IMAGE.png" in body.json()["command"]
    check_4xx(client.post("/api/command", json={"run": "tiny", "code": edited.tolist()}), 422, "reference")
