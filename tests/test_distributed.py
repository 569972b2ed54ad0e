"""Distributed training with torchrun on 2 CPU processes (gloo), against one process."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import aelab
from aelab import distributed
from aelab.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, read_checkpoint
from aelab.data.batches import epoch_batches, epoch_order, shard_batch, steps_per_epoch
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, RunError
from aelab.io import load_tensors, save_tensors

VENV = Path(sys.executable).parent
TORCHRUN = str(VENV / "torchrun")

# 128 faces, 27 held out: 101 training images, so batch 32 leaves a short last batch of 5 (3 + 2 per rank).
CONFIG = {
    "name": "dist", "seed": 3,
    "data": {"source": "builtin:faces?n=128&size=16", "val_fraction": 0.211},
    "model": {"type": "fcn", "hidden": [64, 16], "latent_dim": 4},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.003},
}
TOLERANCE = 1e-5  # relative, final loss of 2 processes vs 1 (observed: equal to all 7 logged digits)


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(aelab.__file__).parents[1])}
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# -- sharding -----------------------------------------------------------------------------

@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_range_covers_each_item_once_in_order(world):
    for n in [0, 1, 5, 7, 64, 101]:
        parts = [distributed.shard_range(n, r, world) for r in range(world)]
        assert [i for p in parts for i in p] == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError):
        distributed.shard_range(10, 2, 2)


def _memmap_set(tmp_path: Path, n: int) -> ImageSet:
    arr = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(n, 2, 2, 1))
    arr[:, 0, 0, 0] = np.arange(n) % 251
    arr.flush()
    return ImageSet(np.load(tmp_path / "x.npy", mmap_mode="r"))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_every_epoch_shards_are_disjoint_and_cover_the_global_batches(world, tmp_path):
    data = _memmap_set(tmp_path, 1000)  # memmaps get the block-shuffled order
    for n, data_arg in [(101, None), (1000, data)]:
        for epoch in range(4):
            order = epoch_order(n, seed=5, epoch=epoch, data=data_arg)
            batches = epoch_batches(order, 32, world)
            assert len(batches) == steps_per_epoch(n, 32, world)
            seen = []
            for b in batches:
                parts = [shard_batch(b, r, world) for r in range(world)]
                assert np.array_equal(np.concatenate(parts), b)  # the ranks' parts are the one-process batch
                assert all(len(p) >= 2 for p in parts)
                if len(b) == 32:
                    assert {len(p) for p in parts} == {32 // world}
                seen.extend(b.tolist())
            assert len(seen) == len(set(seen))  # no image twice in an epoch
            dropped = n - len(seen)
            assert dropped == (n % 32 if n % 32 < 2 * world else 0)  # only a last batch too short to split
            assert set(seen) <= set(range(n))
    # one process keeps the old rule: a lone last image is dropped, two are kept
    assert steps_per_epoch(33, 32) == 1 and steps_per_epoch(34, 32) == 2 and steps_per_epoch(1, 32) == 1


def test_batch_size_must_split_over_the_processes():
    assert distributed.check_batch_size(32, 4) == 8
    with pytest.raises(AelabError, match=r"train.batch_size 30 does not split evenly over 4 processes.*28 or 32"):
        distributed.check_batch_size(30, 4)


def test_single_process_helpers_are_no_ops():
    d = distributed.Dist()
    assert d.main and not d.active
    x = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(x, d) is x
    assert distributed.weighted_mean({"a": 2.0}, 4, d) == ({"a": 2.0}, 4)
    assert np.array_equal(distributed.gather_to_main(np.arange(3), d), np.arange(3))
    assert distributed.run_on_main(lambda: 7, d) == 7
    assert distributed.broadcast_object({"k": 1}, d) == {"k": 1}
    assert distributed.joined() == d  # no process group in this process
    assert np.array_equal(distributed.all_gather_rows(np.arange(4), d), np.arange(4))
    data = ImageSet(np.zeros((9, 2, 2, 1), np.uint8))
    assert distributed.shard_of(data, d) is data
    two = [distributed.shard_of(data, distributed.Dist(r, 2)) for r in range(2)]
    assert [s.ids.tolist() for s in two] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert distributed.shard_of(np.arange(9), distributed.Dist(1, 3)).tolist() == [3, 4, 5]


# -- two real processes -----------------------------------------------------------------

SCRIPT = r'''
"""Run by the tests under torchrun: helpers, an interrupted run and a reference run in one launch."""
import json, sys
from pathlib import Path

import numpy as np
import torch

import aelab
from aelab import distributed
from aelab.config import as_config
from aelab.errors import AelabError
from aelab.train import Trainer

cfg_path, root = sys.argv[1], Path(sys.argv[2])
d = distributed.setup(torch.device("cpu"))
result = {"rank": d.rank, "world": d.world, "backend": d.backend}

# scores of a shard, gathered back in id order on rank 0
part = distributed.shard_range(11, d.rank, d.world)
scores = np.arange(part.start, part.stop, dtype=np.float32) * 10
gathered = distributed.gather_to_main(scores, d)
result["gathered"] = None if gathered is None else gathered.tolist()

# an error on rank 0 stops every rank with the same message
def fail():
    raise AelabError("bad folder on rank 0")
try:
    distributed.run_on_main(fail, d)
except AelabError as exc:
    result["error"] = str(exc)

# a batch that does not split over the ranks
try:
    Trainer(as_config(cfg_path, ["train.batch_size=31"]), root / "never", dist=d)
except AelabError as exc:
    result["batch_error"] = str(exc)

# the full run (reference for the resume test) through the public API: rank 0 gets the Run
run = aelab.train(cfg_path, root / "full")
result["full_returned"] = None if run is None else str(run.path)

# `aelab score` in the same process group: each rank scores a shard, rank 0 writes the CSV and reports
import contextlib, io
from aelab.cli import main as cli
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    try:
        cli(["score", str(root / "full"), "--out", str(root / "scores.csv"), "--json", "--batch-size", "5"])
    except SystemExit as exc:
        result["score_exit"] = exc.code
result["score_stdout"] = printed.getvalue()

# the same run stopped after its first epoch's checkpoint, as if the job had been killed there
class StopAfterFirstEpoch(Trainer):
    def _finish(self):
        return None

t = StopAfterFirstEpoch(as_config(cfg_path), root / "cut", dist=d)
t.total_steps = t.per_epoch
t.fit()
(root / f"rank{d.rank}.json").write_text(json.dumps(result))
distributed.teardown(d)
'''


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return aelab.train(CONFIG, out=tmp_path_factory.mktemp("one") / "run")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    (root / "dist.yaml").write_text(yaml.safe_dump(CONFIG))
    proc = torchrun("-m", "aelab", "train", "dist.yaml", "--out", "run", "--json", cwd=root)
    return root, proc


@pytest.mark.slow(reason="torchrun starts 2 processes that import torch (and train)")
def test_two_processes_reach_the_one_process_loss(one_process, two_processes):
    root, _ = two_processes
    s1 = one_process.summary
    s2 = json.loads((root / "run" / "summary.json").read_text())
    assert s2["world_size"] == 2 and s2["backend"] == "gloo"
    assert s2["global_batch_size"] == 32 and s2["per_rank_batch_size"] == 16 and s2["lr_scaling"] == "none"
    assert s2["steps"] == s1["steps"] == 2 * 4  # 3 full batches and the short one of 5 per epoch
    assert s2["final_train_loss"] == pytest.approx(s1["final_train_loss"], rel=TOLERANCE)
    assert s2["mse"] == pytest.approx(s1["mse"], rel=TOLERANCE)
    w1, w2 = one_process.model.state_dict(), load_tensors(root / "run" / "model.safetensors")
    for k, v in w1.items():
        assert torch.allclose(v, w2[k], rtol=1e-4, atol=1e-5), k
    # metrics are global: every per-step loss equals the one-process loss of the same global batch
    log1 = [r for r in one_process.metrics_log() if "loss" in r]
    log2 = [json.loads(ln) for ln in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(log1, [r for r in log2 if "loss" in r], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=TOLERANCE)


@pytest.mark.slow(reason="torchrun starts 2 processes that import torch (and train)")
def test_only_rank_0_writes_and_reports(two_processes):
    root, proc = two_processes
    names = sorted(p.name for p in (root / "run").iterdir())
    assert names == ["analyses.json", "config.yaml", "figures", "metrics.jsonl", "model.safetensors", "summary.json"]
    log = [json.loads(ln) for ln in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, 9))  # one line per step: rank 1 wrote nothing
    assert len([r for r in log if "train_loss" in r]) == 2
    assert proc.stdout.count('"run":') == 1  # one JSON report, from rank 0
    assert json.loads(proc.stdout)["world_size"] == 2
    assert sorted(p.name for p in root.iterdir()) == ["dist.yaml", "run"]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripted")
    cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": 3, "input_noise": 0.1}}  # noise: per-rank RNG
    (root / "noisy.yaml").write_text(yaml.safe_dump(cfg))
    (root / "script.py").write_text(SCRIPT)
    torchrun("script.py", "noisy.yaml", str(root), cwd=root)
    return root, [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow(reason="torchrun starts 2 processes that import torch (and train)")
def test_helpers_on_two_processes(scripted):
    _, (r0, r1) = scripted
    assert (r0["rank"], r1["rank"], r0["world"], r0["backend"]) == (0, 1, 2, "gloo")
    assert r0["gathered"] == [i * 10.0 for i in range(11)] and r1["gathered"] is None
    assert r0["error"] == r1["error"] == "bad folder on rank 0"
    assert "train.batch_size 31 does not split evenly over 2 processes" in r0["batch_error"] == r1["batch_error"]
    assert r0["full_returned"].endswith("full") and r1["full_returned"] is None


@pytest.mark.slow(reason="torchrun starts 2 processes that import torch (and train)")
def test_score_runs_sharded_and_rank_0_writes_one_csv(scripted):
    from aelab.anomaly import analyse

    root, (r0, r1) = scripted
    assert r0["score_exit"] == r1["score_exit"] == 0
    assert json.loads(r0["score_stdout"])["n"] == 128 and r1["score_stdout"] == ""  # rank 1 reports nothing
    two = (root / "scores.csv").read_text().splitlines()
    analyse(aelab.load_run(root / "full"), None, "mse", csv=root / "one.csv")
    one = (root / "one.csv").read_text().splitlines()
    assert two[0] == one[0] == "ID,score" and len(two) == len(one) == 129
    assert [r.split(",")[0] for r in two] == [r.split(",")[0] for r in one]  # the same ids, in id order
    np.testing.assert_allclose([float(r.split(",")[1]) for r in two[1:]],
                               [float(r.split(",")[1]) for r in one[1:]], rtol=1e-6)


@pytest.mark.slow(reason="torchrun starts 2 processes that import torch (and train)")
def test_resume_of_a_distributed_run(scripted):
    root, _ = scripted
    cut = root / "cut"
    assert (cut / "checkpoint.safetensors").exists() and not (cut / "summary.json").exists()
    meta, saved = read_checkpoint(cut / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and meta["epoch"] == 1
    assert not torch.equal(saved["rng.torch"], saved["rng.torch.1"])  # each rank's own noise stream
    # another number of processes may resume it while an epoch keeps its number of steps
    shutil.copytree(cut, root / "cut1")
    one = aelab.train(root / "noisy.yaml", out=root / "cut1", resume=True)
    assert one.summary["world_size"] == 1 and one.summary["steps"] == 12
    shutil.copytree(cut, root / "cut4")
    meta4 = {**meta, "world_size": 4}  # 4 processes would have dropped the short last batch: 3 steps an epoch
    save_tensors(root / "cut4" / "checkpoint.safetensors", saved, metadata={
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "meta": json.dumps(meta4)})
    with pytest.raises(RunError, match=r"written by 4 process\(es\), 3 steps per epoch; 1 process\(es\) take 4"):
        aelab.train(root / "noisy.yaml", out=root / "cut4", resume=True)

    torchrun("-m", "aelab", "train", "noisy.yaml", "--out", "cut", "--resume", "-q", cwd=root)
    full = load_tensors(root / "full" / "model.safetensors")
    resumed = load_tensors(cut / "model.safetensors")
    for k, v in full.items():
        assert torch.allclose(v, resumed[k], atol=1e-6), k
    log = [json.loads(ln) for ln in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 13))
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 3


# -- device paths: CPU fallbacks here, the CUDA versions where a GPU is present ----------------

SMALL_CONV = {
    "name": "conv", "seed": 1,
    "data": {"source": "builtin:faces?n=96&size=16", "val_fraction": 0.25},
    "model": {"type": "conv", "channels": [4, 8], "kernel": 3},
    "train": {"epochs": 2, "batch_size": 24, "threads": 1},
}


def _with(cfg: dict, **train) -> dict:
    return {**cfg, "train": {**cfg["train"], **train}}


@pytest.mark.slow(reason="torch.compile imports and traces with dynamo: seconds before the first step")
def test_compile_on_request_trains_the_same_model(tmp_path, monkeypatch):
    train_mod = importlib.import_module("aelab.train")
    monkeypatch.setattr(train_mod, "COMPILE_BACKEND", "eager")  # dynamo's tracing without a C++ toolchain
    calls, real_compile = [], torch.compile

    def spy(model, **kwargs):
        calls.append(kwargs)
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    plain = aelab.train(SMALL_CONV, out=tmp_path / "plain")
    assert calls == []
    compiled = aelab.train(_with(SMALL_CONV, compile=True), out=tmp_path / "compiled")
    assert calls == [{"backend": "eager"}]  # the model really went through torch.compile, once
    assert compiled.summary["compile"] is True and plain.summary["compile"] is False
    assert compiled.summary["final_train_loss"] == pytest.approx(plain.summary["final_train_loss"], rel=1e-5)


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_precision_is_fp32_on_cpu_unless_asked(tmp_path):
    train_mod = importlib.import_module("aelab.train")
    cpu = torch.device("cpu")
    cfg = aelab.Config.model_validate(SMALL_CONV)
    assert train_mod._precision(cfg, cpu) is None  # auto: fp32 on CPU
    assert train_mod._precision(aelab.Config.model_validate(_with(SMALL_CONV, precision="bf16")), cpu) == torch.bfloat16
    run = aelab.train(_with(SMALL_CONV, precision="bf16", epochs=1), out=tmp_path / "bf16")
    ref = aelab.train(_with(SMALL_CONV, epochs=1), out=tmp_path / "fp32")
    assert run.summary["precision"] == "bf16" and ref.summary["precision"] == "fp32"
    assert run.summary["final_train_loss"] == pytest.approx(ref.summary["final_train_loss"], rel=0.05)
    assert run.summary["final_train_loss"] != ref.summary["final_train_loss"]  # bf16 really ran


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_resume_with_channels_last_weights_is_exact(tmp_path, monkeypatch):
    """Checkpoints store contiguous tensors; the optimiser's moments must get the weights' layout back."""
    train_mod = importlib.import_module("aelab.train")
    cfg = _with(SMALL_CONV, epochs=3)
    full = aelab.train(cfg, out=tmp_path / "full")
    assert full.summary["channels_last"] is True
    original = train_mod.Trainer._save_checkpoint

    def stop(self):
        original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "_save_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        aelab.train(cfg, out=tmp_path / "cut")
    monkeypatch.setattr(train_mod.Trainer, "_save_checkpoint", original)
    resumed = aelab.train(cfg, out=tmp_path / "cut", resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_read_ahead_copies_batches_to_the_gpu():
    from aelab.data.batches import ReadAhead

    data = ImageSet(np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8))
    batches = [np.arange(i, i + 10) for i in range(0, 100, 10)]
    got = list(ReadAhead(data, batches, device=torch.device("cuda")))
    assert all(g.is_cuda and g.dtype == torch.uint8 for g in got)
    np.testing.assert_array_equal(torch.cat(got).cpu().numpy(), data.batch(np.arange(100)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_paths(tmp_path):
    run = aelab.train(_with(SMALL_CONV, device="cuda"), out=tmp_path / "gpu")
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert run.summary["precision"] == expected and run.summary["channels_last"] is True
    assert run.summary["device"].startswith("cuda") and np.isfinite(run.summary["final_train_loss"])
