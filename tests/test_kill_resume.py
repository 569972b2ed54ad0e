"""Kill harness: a run SIGKILLed anywhere, then resumed, ends with the uninterrupted run's exact weights and log.

Separate processes run ``aelab train`` (forked from a server that imported aelab once: see
_forked_cli.py); ``AELAB_TEST_PAUSE_AT`` (aelab/_testhooks.py) parks one at a named point inside a
durable write (before the fsync, before the rename, after it), where the test kills it, so the points
a random kill rarely hits are each hit every time.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import random
import shutil
import signal
import time
from pathlib import Path

import _forked_cli
import pytest
import torch
import yaml
from conftest import tiny_config
from safetensors import safe_open

import aelab
from aelab.checkpoint import read_checkpoint
from aelab.errors import RunError
from aelab.io import load_tensors, save_tensors
from aelab.runfolder import CHECKPOINT

# 4 epochs of 8 steps: four checkpoints to be killed around
CFG = tiny_config(train={"epochs": 4, "batch_size": 16, "lr": 0.003, "threads": 1})


CTX = multiprocessing.get_context("forkserver")
# The server imports aelab once; every run is a fork of it. (The server does not get the tests' sys.path,
# so it preloads aelab itself; each child then imports _forked_cli, which costs nothing more.)
# torch._dynamo is what torch.optim imports on first use: 5-9 s here, once instead of per run.
CTX.set_forkserver_preload(["torch._dynamo", "aelab.cli", "aelab.cli.core", "aelab.train", "aelab.plots",
                            "aelab.data.builtin", "_forked_cli"])


def _start(cfg: Path, out: Path, resume: bool, **env: str) -> multiprocessing.Process:
    argv = ["train", str(cfg), "--out", str(out), "-q", *(["--resume"] if resume else [])]
    proc = CTX.Process(target=_forked_cli.run, args=(argv, env, str(out.parent / f"{out.name}.log")))
    proc.start()
    return proc


def _run(cfg: Path, out: Path, resume: bool) -> tuple[int | None, str]:
    """Exit status and output of one ``aelab train`` left to finish."""
    proc = _start(cfg, out, resume)
    proc.join(300)
    return proc.exitcode, (out.parent / f"{out.name}.log").read_text()


def _kill_at(cfg: Path, out: Path, resume: bool, point: str) -> None:
    """Start a run that parks at ``point``, wait for it to get there, SIGKILL it."""
    marker = out.parent / f"{out.name}.paused"
    marker.unlink(missing_ok=True)
    proc = _start(cfg, out, resume, AELAB_TEST_PAUSE_AT=point, AELAB_TEST_PAUSE_MARKER=str(marker))
    deadline = time.monotonic() + 240
    while not marker.exists():
        if not proc.is_alive():
            log = (out.parent / f"{out.name}.log").read_text()
            raise AssertionError(f"never reached {point} (exit {proc.exitcode}): {log[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {point}")
        time.sleep(0.02)
    proc.kill()  # SIGKILL
    proc.join()
    assert proc.exitcode == -signal.SIGKILL


def _checkpoint_epoch(out: Path) -> int | None:
    return read_checkpoint(out / CHECKPOINT, tensors=False)[0]["epoch"] if (out / CHECKPOINT).exists() else None


def _assert_same_run(out: Path, ref: Path) -> None:
    assert (out / "summary.json").exists() and not (out / CHECKPOINT).exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    got, want = load_tensors(out / "model.safetensors"), load_tensors(ref / "model.safetensors")
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    # every record (per-step losses, per-epoch validation) exactly as in the uninterrupted run
    assert (out / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    cfg = tmp_path_factory.mktemp("kill") / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    return cfg


@pytest.fixture(scope="module")
def reference(config_file) -> tuple[Path, Path]:
    """The config file and an uninterrupted run of it, trained by the same CLI the kills use."""
    code, log = _run(config_file, config_file.parent / "ref", resume=False)
    assert code == 0, log
    return config_file, config_file.parent / "ref"


@pytest.mark.slow(reason="compares with the reference run, trained in a forked CLI process")
def test_resumed_in_process_equals_uninterrupted(reference, cut):
    """What the harness relies on: stopping after a checkpoint and resuming gives bit-identical weights."""
    cfg, folder = cut
    aelab.train(cfg, out=folder, resume=True)
    _assert_same_run(folder, reference[1])


# Each entry: where the process is killed, and the epoch of the checkpoint the folder must then hold.
# One chain: every kill is followed by a --resume that is itself killed at the next point.
CHAIN = [
    ("checkpoint-before-fsync", None),  # the first checkpoint's temp file, never renamed
    ("checkpoint-after-replace", 1),  # renamed, the folder not yet fsynced
    ("checkpoint-before-replace", 1),  # epoch 2's checkpoint written and fsynced, not renamed
    ("checkpoint-before-fsync@2", 2),  # epoch 3's (the resumed process writes epoch 2's, then this)
    ("model-before-replace", 4),  # the final weights not yet in place
    ("model-after-replace", 4),  # weights in place, no summary.json: unfinished
    ("summary-before-replace", 4),
    ("summary-after-replace", 4),  # summary.json in place, the checkpoint not yet removed
    ("checkpoint-after-remove", None),  # finished: nothing left to resume
]


@pytest.mark.slow(reason="9 training processes, each killed on its way")
def test_kills_inside_every_durable_write_then_resume(reference, tmp_path):
    cfg, ref = reference
    out = tmp_path / "run"
    for i, (point, epoch) in enumerate(CHAIN):
        _kill_at(cfg, out, resume=i > 0, point=point)
        assert _checkpoint_epoch(out) == epoch, point
        if point == "checkpoint-before-replace":
            # a kill in the middle of appending a log line leaves a torn last line
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write('{"step": 17, "epoch": 3, "lo')
    _assert_same_run(out, ref)
    code, log = _run(cfg, out, resume=True)  # a finished run refuses, in one line
    assert code == 2 and "already finished" in log and "Traceback" not in log


@pytest.mark.slow(reason="3 killed training processes and 3 resumed")
def test_kills_between_writes_then_resume(reference, tmp_path):
    """Kills at the points each stage of the finish leaves behind, each followed by one plain --resume."""
    cfg, ref = reference
    for point in ("checkpoint-after-replace@3", "model-after-replace", "summary-after-replace"):
        out = tmp_path / point.replace("@", "-")
        _kill_at(cfg, out, resume=False, point=point)
        code, log = _run(cfg, out, resume=True)
        assert code == 0, log
        _assert_same_run(out, ref)


@pytest.mark.slow
def test_random_kills_then_resume(reference, tmp_path):
    """SIGKILL at random times (start-up, mid-epoch, inside writes), resume until finished, 12 times over."""
    cfg, ref = reference
    rng = random.Random(12)
    total_kills = 0
    started = time.monotonic()
    assert _run(cfg, tmp_path / "timing", resume=False)[0] == 0
    span = time.monotonic() - started
    for trial in range(12):
        out = tmp_path / f"r{trial}"
        kills = 0
        for _ in range(3):  # up to three kills of the same folder, then a resume left alone
            proc = _start(cfg, out, resume=out.exists())
            time.sleep(rng.uniform(0.0, span))
            if proc.is_alive():
                proc.kill()
                kills += 1
            proc.join()
            if (out / "summary.json").exists() and not (out / CHECKPOINT).exists():
                break
        if not ((out / "summary.json").exists() and not (out / CHECKPOINT).exists()):
            code, log = _run(cfg, out, resume=out.exists())
            assert code == 0, (trial, kills, log)
        _assert_same_run(out, ref)
        total_kills += kills
    print(f"random kills: {total_kills} over 12 trials, all resumed bit-identical")
    assert total_kills >= 12  # the loop really interrupted runs


# -- a checkpoint that does not hold together is refused, in one line naming the file --------------------------------

def stop_after_epoch(cfg: dict, out: Path, epoch: int, monkeypatch) -> None:
    """Train ``cfg`` into ``out`` and interrupt it right after the checkpoint of ``epoch``."""
    train_mod = importlib.import_module("aelab.train")
    original = train_mod.Trainer._save_checkpoint

    def stop(self):
        original(self)
        if self.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "_save_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        aelab.train(cfg, out=out)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def cut_once(config_file) -> Path:
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_after_epoch(config_file, config_file.parent / "cut", 2, monkeypatch)
    return config_file.parent / "cut"


@pytest.fixture()
def cut(config_file, cut_once, tmp_path) -> tuple[Path, Path]:
    """A run stopped after its second checkpoint: a fresh copy of one such run for each test."""
    shutil.copytree(cut_once, tmp_path / "cut")
    return config_file, tmp_path / "cut"


def _rewrite(path: Path, edit_meta=None, edit_tensors=None) -> None:
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta = json.loads(header["meta"])
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_tensors(path, tensors, metadata={**header, "meta": json.dumps(meta)})


def test_truncated_checkpoint_is_one_line_exit_2(cut, capsys):
    from aelab.cli import main

    cfg, out = cut
    data = (out / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--out", str(out), "--resume", "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert str(out / CHECKPOINT) in err and "not a readable checkpoint" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("edit_meta", "edit_tensors", "match"), [
    (lambda m: m.update(step=m["step"] + 8, epoch=m["epoch"] + 1), None, "optimiser state is at step 16"),
    (lambda m: m.update(step=m["step"] - 1), None, "optimiser state is at step 16"),
    (None, lambda t: t.update({"optim.0.step": t["optim.0.step"] + 8}), "optimiser state is at step 24"),
    (None, lambda t: t.update({"model.decoder.0.bias": torch.zeros(3)}), "weights do not match the model"),
    (None, lambda t: t.pop("model.decoder.0.bias"), "weights do not match the model"),
    (None, lambda t: t.update({"optim.1.exp_avg": torch.zeros(2, 2)}), "optim.1.exp_avg does not match"),
    (lambda m: m["param_groups"][0].update(params=[0, 1]), None, "other parameters"),
    (lambda m: m.update(epoch=3), None, "step count and the epoch do not belong"),
])
def test_checkpoint_parts_that_do_not_belong_together(cut, edit_meta, edit_tensors, match):
    cfg, out = cut
    _rewrite(out / CHECKPOINT, edit_meta, edit_tensors)
    with pytest.raises(RunError, match=match):
        aelab.train(cfg, out=out, resume=True)


def test_a_log_short_of_the_checkpoint_is_refused(cut):
    cfg, out = cut
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines[:-3]))
    with pytest.raises(RunError, match=r"metrics.jsonl: 14 step and 1 epoch records up to step 16, .* needs 16 and 2;"):
        aelab.train(cfg, out=out, resume=True)
    (out / "metrics.jsonl").write_text("".join(ln + "\n" for ln in [lines[0], "{oops", *lines[1:]]))
    with pytest.raises(RunError, match="metrics.jsonl: line 2 is not a log record"):
        aelab.train(cfg, out=out, resume=True)


def test_old_two_file_checkpoints_and_other_versions_are_refused(cut):
    cfg, out = cut
    _rewrite(out / CHECKPOINT)
    (out / "checkpoint.json").write_text("{}")
    with pytest.raises(RunError, match="checkpoint.json: an older two-file checkpoint"):
        aelab.train(cfg, out=out, resume=True)
    (out / "checkpoint.json").unlink()
    with safe_open(str(out / CHECKPOINT), framework="pt") as fh:
        header, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    save_tensors(out / CHECKPOINT, tensors, metadata={**header, "version": "3"})
    with pytest.raises(RunError, match="checkpoint format version 3; this aelab reads version 2"):
        aelab.train(cfg, out=out, resume=True)


# -- the training options keep the property: state in the checkpoint, resumed == uninterrupted ----------------------

OPTIONS = {
    "cosine-warmup": {"lr_schedule": {"type": "cosine", "warmup_steps": 6, "min_lr": 1e-4}, "grad_clip": 0.5},
    # plateau cutting every epoch without improvement, early stopping and the best weights, all in one run
    "plateau": {"lr_schedule": {"type": "plateau", "metric": "val_ssim", "patience": 0, "factor": 0.5,
                                "min_delta": 1.0},
                "early_stopping": {"metric": "val_ssim", "patience": 2, "min_delta": 1.0}, "keep_best": "val_psnr",
                "log": ["csv"]},
}


@pytest.mark.slow(reason="two trainings per option (~1 s)")
@pytest.mark.parametrize("name", list(OPTIONS))
def test_resumed_after_epoch_1_equals_uninterrupted_with_options(name, tmp_path, monkeypatch):
    cfg = {**CFG, "train": {**CFG["train"], **OPTIONS[name]}}
    ref = aelab.train(cfg, out=tmp_path / "ref")
    assert ref.summary["final_lr"] < cfg["train"]["lr"]  # the schedule did change the rate
    assert ref.summary["stopped_early"] == ("early_stopping" in cfg["train"])  # after epoch 3 of 4
    stop_after_epoch(cfg, tmp_path / "cut", 1, monkeypatch)
    resumed = aelab.train(cfg, out=tmp_path / "cut", resume=True)
    _assert_same_run(resumed.path, ref.path)
    _assert_same_best(resumed.path, ref.path)
    assert _read(resumed.path / "metrics.csv") == _read(ref.path / "metrics.csv")
    keys = ("final_lr", "stopped_early", "stopped_at_epoch", "best", "steps")
    assert {k: resumed.summary[k] for k in keys} == {k: ref.summary[k] for k in keys}


@pytest.mark.slow(reason="3 training processes, one killed")
def test_kill_after_the_best_weights_before_the_checkpoint(tmp_path):
    """best.safetensors is written before the epoch's checkpoint: a kill between the two redoes the epoch."""
    cfg_dict = {**CFG, "train": {**CFG["train"], "keep_best": "val_mse"}}
    cfg = tmp_path / "best.yaml"
    cfg.write_text(yaml.safe_dump(cfg_dict))
    assert _run(cfg, tmp_path / "ref", resume=False)[0] == 0
    out = tmp_path / "run"
    _kill_at(cfg, out, resume=False, point="best-after-replace@2")
    assert _checkpoint_epoch(out) == 1 and (out / "best.safetensors").exists()
    code, log = _run(cfg, out, resume=True)
    assert code == 0, log
    _assert_same_run(out, tmp_path / "ref")
    _assert_same_best(out, tmp_path / "ref")


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _assert_same_best(out: Path, ref: Path) -> None:
    """The same best weights (safetensors' header order varies from write to write, so tensors, not bytes)."""
    assert (out / "best.safetensors").exists() == (ref / "best.safetensors").exists()
    if (ref / "best.safetensors").exists():
        got, want = load_tensors(out / "best.safetensors"), load_tensors(ref / "best.safetensors")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
