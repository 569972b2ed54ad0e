"""The architecture graph (``aelab.graph``) and its picture: real structure, measured shapes, every config."""

from __future__ import annotations

import json
from graphlib import TopologicalSorter
from pathlib import Path

import pytest
import torch
from _cli import aelab
from PIL import Image

from aelab.config import load_config
from aelab.graph import build_graph
from aelab.info import summary
from aelab.models import create_model

CONFIGS = sorted(Path("configs").glob("*.yaml"))
SMALL = (3, 16, 16)  # C, H, W: every shipped config builds on it, and fast


def model_of(config: Path | str, *overrides: str, shape=SMALL):
    cfg = load_config(config, list(overrides))
    return create_model(cfg.model, shape), cfg


def links(graph: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    ids = [n["id"] for n in graph["nodes"]]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in graph["edges"]:
        preds[b].append(a)
        succs[a].append(b)
    return preds, succs


def ancestors(node: str, preds: dict[str, list[str]]) -> set[str]:
    seen, todo = set(), [node]
    while todo:
        for p in preds[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def by_kind(graph: dict, kind: str) -> list[dict]:
    return [n for n in graph["nodes"] if n["kind"] == kind]


def real_shapes(model) -> tuple[list[int], list[int]]:
    """The code's and the reconstruction's shape per image, from the model itself."""
    model.eval()
    with torch.no_grad():
        x = torch.zeros(2, *model.input_shape)
        return list(model.encode(x).shape[1:]), list(model(x).recon.shape[1:])


@pytest.mark.parametrize("dims", [[1, 1, 1], [2, 1, 3]])
def test_multi_encoder_branches_run_side_by_side_into_one_concatenation(dims):
    encoders = ",".join(f"{{hidden: [32, {8 + i}], code_dim: {d}}}" for i, d in enumerate(dims))
    model, _ = model_of("configs/multi-encoder.yaml", f"model.encoders=[{encoders}]")
    graph = build_graph(model).to_dict()
    preds, succs = links(graph)
    (concat,) = by_kind(graph, "concat")
    assert concat["code"] and concat["shape"] == real_shapes(model)[0] == [sum(dims)]
    branch_ends = preds[concat["id"]]
    assert len(branch_ends) == 3
    # three parallel paths: each starts at the input, and no node is shared between two branches
    branches = [ancestors(end, preds) - {"input"} | {end} for end in branch_ends]
    assert all("input" in ancestors(end, preds) for end in branch_ends)
    assert not (branches[0] & branches[1] or branches[0] & branches[2] or branches[1] & branches[2])
    assert sorted(next(k for k, b in enumerate(branches) if s in b) for s in succs["input"]) == [0, 1, 2]
    for i, (branch, d) in enumerate(zip(branches, dims, strict=True)):
        nodes = [n for n in graph["nodes"] if n["id"] in branch]
        assert {n["part"] for n in nodes} == {f"encoder{i + 1}"}
        assert graph["nodes"][[n["id"] for n in graph["nodes"]].index(branch_ends[i])]["shape"] == [d]
        folded = next(n for n in nodes if n["repeat"] > 1)  # Linear + BatchNorm1d + ReLU twice: 32, then 8 + i
        assert folded["shapes"] == [[32], [8 + i]] and "BatchNorm1d" in folded["label"]


@pytest.mark.parametrize("config", ["configs/conv-vae.yaml", "configs/fcn-vae.yaml"])
def test_vae_heads_feed_one_sampling_node_and_the_kl_term(config):
    model, _ = model_of(config)
    graph = build_graph(model).to_dict()
    preds, succs = links(graph)
    heads = by_kind(graph, "head")
    assert sorted(h["label"].split(" head")[0] for h in heads) == ["log σ²", "μ"]
    code = real_shapes(model)[0]
    assert all(h["shape"] == code for h in heads)
    (sample,) = by_kind(graph, "sample")
    assert sorted(preds[sample["id"]]) == sorted(h["id"] for h in heads)
    assert sample["code"] and sample["shape"] == code and "μ + σ·ε" in sample["label"]
    (kl,) = by_kind(graph, "loss")
    assert sorted(preds[kl["id"]]) == sorted(h["id"] for h in heads) and "KL" in kl["label"] and not succs[kl["id"]]
    (body_end,) = {p for h in heads for p in preds[h["id"]]}  # both heads read the one encoder body
    assert [n["part"] for n in graph["nodes"] if n["id"] == succs[sample["id"]][0]] == ["decoder"]
    assert body_end in ancestors(sample["id"], preds)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_is_one_connected_dag_from_input_to_output(config):
    model, cfg = model_of(config)
    graph = json.loads(json.dumps(summary(model, cfg)["graph"]))  # what --json prints
    ids = [n["id"] for n in graph["nodes"]]
    assert len(set(ids)) == len(ids) and all(a in ids and b in ids for a, b in graph["edges"])
    preds, succs = links(graph)
    order = list(TopologicalSorter(preds).static_order())  # raises CycleError on a cycle
    (start,) = [i for i in order if not preds[i]]
    (inp,), (out,) = by_kind(graph, "input"), by_kind(graph, "output")
    assert start == inp["id"] and ancestors(out["id"], preds) | {out["id"]} >= {
        n["id"] for n in graph["nodes"] if n["kind"] != "loss"}
    assert {i for i in ids if not succs[i]} <= {out["id"]} | {n["id"] for n in by_kind(graph, "loss")}
    code, recon = real_shapes(model)
    assert inp["shape"] == list(SMALL) and out["shape"] == recon == list(SMALL)
    (code_node,) = [n for n in graph["nodes"] if n["code"]]
    assert code_node["shape"] == code == list(model.latent_shape)
    blocks = by_kind(graph, "block")
    assert sum(n["parameters"] for n in graph["nodes"]) == sum(p.numel() for p in model.parameters())
    assert blocks and all(n["shapes"][-1] == n["shape"] and len(n["shapes"]) >= n["repeat"] for n in blocks)
    noisy = cfg.train.input_noise is not None
    assert (by_kind(graph, "noise") != []) == noisy
    if noisy:
        assert preds["noise"] == [inp["id"]] and succs[inp["id"]] == ["noise"]


def test_a_deep_chain_folds_its_repeated_blocks():
    hidden = [256, 224, 192, 160, 128, 112, 96, 80, 64, 48, 32, 24]
    deep, _ = model_of("configs/deep-fcn.yaml", f"model.hidden={hidden}")
    shallow, _ = model_of("configs/deep-fcn.yaml")
    graph = build_graph(deep).to_dict()
    assert len(graph["nodes"]) == len(build_graph(shallow).nodes) == 7
    down, up = (n for n in by_kind(graph, "block") if n["repeat"] == 12)
    assert down["shapes"] == [[h] for h in hidden] and down["label"] == "flatten, (Linear + ReLU) × 12"
    assert up["shapes"] == [[h] for h in reversed(hidden)]


def test_spatial_codes_and_maxpool_blocks_keep_their_shapes():
    model, _ = model_of("configs/conv-maxpool.yaml", "model.latent_dim=null", "model.batchnorm=true")
    graph = build_graph(model).to_dict()
    (down, up) = (n for n in by_kind(graph, "block") if n["repeat"] > 1)
    assert down["shapes"] == [[32, 8, 8], [64, 4, 4], [128, 2, 2]] and "MaxPool2d(2)" in down["label"]
    assert up["label"].startswith("(Upsample + Conv2d k3 same + BatchNorm2d + ReLU) × 2")
    assert [n["shape"] for n in graph["nodes"] if n["code"]] == [[128, 2, 2]]


PICTURES = [(c, ()) for c in CONFIGS] + [
    (Path("configs/deep-fcn.yaml"), ("model.hidden=[512,512,256,256,128,128,64,64,32,32,16,16]",)),
    (Path("configs/multi-encoder.yaml"), ("model.encoders=[" + ",".join(["{hidden: [64, 32, 16]}"] * 8) + "]",))]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "overrides"), PICTURES, ids=[c.stem + ("-deep" if o else "") for c, o in PICTURES])
def test_every_picture_fits_report_width(config, overrides, tmp_path):
    from aelab.figures.info import diagram

    model, cfg = model_of(config, *overrides, shape=(3, 64, 64) if "multi" not in config.stem else SMALL)
    path = diagram(summary(model, cfg), tmp_path / "a.png")
    width, height = Image.open(path).size
    assert 600 <= width <= 1600 and height <= 2000


@pytest.mark.slow
def test_cli_info_json_holds_the_graph_it_draws(tmp_path):
    res = aelab("info", "configs/multi-encoder.yaml", "--json", "--input-shape", "16x16x3", "--diagram",
                tmp_path / "m.png")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (concat,) = [n for n in out["graph"]["nodes"] if n["kind"] == "concat"]
    assert concat["shape"] == out["latent_shape"] == [3]
    assert sum(1 for a, b in out["graph"]["edges"] if b == concat["id"]) == 3
    assert Image.open(tmp_path / "m.png").size[0] <= 1600


def test_a_family_of_ones_own_gets_a_graph_or_a_clear_error():
    from torch import nn

    from aelab.models import Autoencoder, Part

    class Chain(Autoencoder):
        family = "mine"

        def __init__(self):
            super().__init__(None, (1, 4, 4))
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 2))
            self.decoder = nn.Sequential(nn.Linear(2, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4)))
            self.latent_shape = (2,)

        def encode(self, x):
            return self.encoder(x)

        def decode(self, z):
            return self.decoder(z)

    graph = build_graph(Chain()).to_dict()  # the default parts(): a chain through encoder and decoder
    assert [(n["label"], n["shape"]) for n in graph["nodes"]] == [
        ("input", [1, 4, 4]), ("flatten, Linear 16→8 + GELU", [8]), ("Linear 8→2", [2]), ("code", [2]),
        ("Linear 2→16 + Sigmoid, unflatten", [1, 4, 4]), ("output", [1, 4, 4])]

    class Miswired(Chain):
        def parts(self):
            return [Part("input", "input"), Part("encoder", "layers", ("inptu",), self.encoder)]

    with pytest.raises(ValueError, match=r"Miswired.parts\(\): 'encoder' reads \['inptu'\]"):
        build_graph(Miswired())
