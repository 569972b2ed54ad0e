import importlib
import json

import numpy as np
import pytest
import torch
from conftest import tiny_config

import aelab
from aelab.config import as_config
from aelab.errors import AelabError, RunError
from aelab.run import load_run
from aelab.train import Trainer, corrupt


def records(run):
    return run.metrics_log()


def test_run_folder_contents(tiny_run):
    names = {p.name for p in tiny_run.path.iterdir()}
    assert {"config.yaml", "model.safetensors", "metrics.jsonl", "summary.json", "figures"} <= names
    assert not {"checkpoint.safetensors", "checkpoint.json"} & names
    assert (tiny_run.path / "figures" / "loss.png").stat().st_size > 1000
    s = json.loads((tiny_run.path / "summary.json").read_text())
    assert s["parameters"] == sum(p.numel() for p in tiny_run.model.parameters())
    assert s["latent_shape"] == [4] and s["image_shape"] == [16, 16, 3] and s["n_val"] == 40
    for key in ("mse", "psnr", "ssim", "wall_time_s", "images_per_s", "final_train_loss"):
        assert isinstance(s[key], float)
    log = records(tiny_run)
    steps = [r for r in log if "loss" in r]
    epochs = [r for r in log if "val_mse" in r]
    assert len(steps) == s["steps"] == 2 * 4 and len(epochs) == 2
    assert [r["step"] for r in steps] == list(range(1, 9))


def test_training_lowers_the_loss(tmp_path):
    run = aelab.train(tiny_config(train__epochs=6), out=tmp_path / "r")
    loss = [r["loss"] for r in records(run) if "loss" in r]
    assert np.mean(loss[-4:]) < 0.7 * np.mean(loss[:4])


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_same_seed_same_weights(tmp_path):
    a = aelab.train(tiny_config(), out=tmp_path / "a")
    b = aelab.train(tiny_config(), out=tmp_path / "b")
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = aelab.train(tiny_config(seed=1), out=tmp_path / "c")
    assert not torch.equal(a.model.state_dict()["encoder.1.weight"], c.model.state_dict()["encoder.1.weight"])


def test_the_folder_holds_the_weights_training_ended_with(tmp_path):
    """The trainer's in-memory model and the model loaded back from its folder are the same numbers."""
    trainer = Trainer(as_config(tiny_config()), tmp_path / "w", progress=False)
    run = trainer.fit()
    trained, loaded = trainer.model.state_dict(), run.model.state_dict()
    assert trained.keys() == loaded.keys()
    for key in trained:
        assert torch.equal(trained[key].contiguous(), loaded[key].contiguous()), key
    assert run.evaluate()["mse"] == pytest.approx(run.summary["mse"], rel=1e-6)


def test_corrupt_masks_or_adds_noise_only_where_it_says():
    x = torch.rand(256, 3, 16, 16) * 2 - 1
    masked = corrupt(x, as_config(tiny_config(train={"input_noise": {"type": "mask", "fraction": 0.3}})))
    hit = (masked == -1).all(1)  # a masked pixel is the range's low end in every channel
    assert hit.float().mean().item() == pytest.approx(0.3, abs=0.02)
    kept = ~hit[:, None].expand_as(x)
    assert torch.equal(masked[kept], x[kept])
    noisy = corrupt(x, as_config(tiny_config(train={"input_noise": {"type": "gaussian", "std": 0.1}})))
    inside = (x > -0.6) & (x < 0.6)  # away from the clamp at ±1
    assert (noisy - x)[inside].std().item() == pytest.approx(0.1, rel=0.05)
    assert noisy.min() >= -1 and noisy.max() <= 1
    assert corrupt(x, as_config(tiny_config())) is x


def test_save_load_gives_identical_outputs(tiny_run):
    again = load_run(tiny_run.path)
    images = tiny_run.val_data().batch()
    np.testing.assert_array_equal(again.encode(images), tiny_run.encode(images))
    np.testing.assert_array_equal(again.reconstruct(images), tiny_run.reconstruct(images))


def test_encode_decode_api(tiny_run):
    images = tiny_run.val_data().batch()
    codes = tiny_run.encode(images)
    assert codes.shape == (len(images), 4) and codes.dtype == np.float32
    out = tiny_run.decode(codes)
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, tiny_run.reconstruct(images))
    assert tiny_run.encode(images[0]).shape == (1, 4)  # one image is a batch of one
    with pytest.raises(AelabError, match="become .* but run .* expects"):
        tiny_run.encode(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(AelabError, match="codes of shape"):
        tiny_run.decode(np.zeros((1, 5)))
    metrics = tiny_run.evaluate()
    assert metrics["n"] == 40 and 0 < metrics["ssim"] < 1
    manual = ((tiny_run.reconstruct(images) / 255.0 - images / 255.0) ** 2).reshape(40, -1).mean(1).mean()
    assert metrics["mse"] == pytest.approx(manual, rel=0.05)  # uint8 rounding of the reconstruction


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_resume_continues_to_the_same_weights(tmp_path, monkeypatch):
    full = aelab.train(tiny_config(train__epochs=3), out=tmp_path / "full")
    train_mod = importlib.import_module("aelab.train")

    calls = {"n": 0}
    original = train_mod.Trainer._save_checkpoint

    def stop_after_first_epoch(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "_save_checkpoint", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        aelab.train(tiny_config(train__epochs=3), out=tmp_path / "cut")
    monkeypatch.setattr(train_mod.Trainer, "_save_checkpoint", original)
    assert not (tmp_path / "cut" / "summary.json").exists()
    with pytest.raises(RunError, match="not a finished run"):
        load_run(tmp_path / "cut")
    with pytest.raises(RunError, match="--resume"):
        aelab.train(tiny_config(train__epochs=3), out=tmp_path / "cut")
    resumed = aelab.train(tiny_config(train__epochs=3), out=tmp_path / "cut", resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-6), k
    assert [r["step"] for r in records(resumed) if "loss" in r] == list(range(1, 13))


def test_weights_that_do_not_match_the_config(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    cfg = (copy / "config.yaml").read_text().replace("latent_dim: 4", "latent_dim: 5")
    (copy / "config.yaml").write_text(cfg)
    with pytest.raises(RunError, match="weights do not match the run's config"):
        load_run(copy)


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_denoising_vae_and_max_steps(tmp_path):
    cfg = tiny_config(model={"type": "vae", "hidden": [32], "latent_dim": 3},
                      train={"epochs": 5, "max_steps": 3, "batch_size": 32, "input_noise": {"type": "mask",
                                                                                              "fraction": 0.3}})
    run = aelab.train(cfg, out=tmp_path / "v")
    assert run.summary["steps"] == 3
    log = [r for r in records(run) if "loss" in r]
    assert all("kl" in r for r in log)
    mean, logvar = run.encode_stats(run.data().batch())
    np.testing.assert_array_equal(mean, run.encode(run.data().batch()))


def test_select_labels_and_errors(tmp_path):
    cfg = tiny_config(data={"source": "builtin:digits", "select_labels": [3], "val_fraction": 0.2},
                      model={"type": "conv", "channels": [4], "kernel": 3})
    run = aelab.train(cfg, out=tmp_path / "d")
    assert run.summary["n_train"] + run.summary["n_val"] == 183  # the threes in sklearn's digits
    bad = tiny_config(data={"source": "builtin:digits", "select_labels": [42]})
    with pytest.raises(AelabError, match="keeps no image"):
        aelab.train(bad, out=tmp_path / "e")
    assert not (tmp_path / "e" / "summary.json").exists()


def test_minmax_fit_is_fitted_on_the_training_split(tmp_path):
    cfg = tiny_config(data={"source": "builtin:digits", "val_fraction": 0.2, "range": [0, 1],
                            "preprocess": ["gcn_l1", {"minmax": "fit"}]},
                      model={"type": "fcn", "hidden": [16], "latent_dim": 3}, train={"epochs": 1, "batch_size": 64})
    run = aelab.train(cfg, out=tmp_path / "m")
    lo, hi = run.config.data.preprocess[1]["minmax"]
    x = run.splits.train.batch().astype(np.float64) / 255.0  # independent: gcn_l1 by hand over the training split
    c = x - x.mean(axis=(1, 2, 3), keepdims=True)
    g = c / np.maximum(np.abs(c).mean(axis=(1, 2, 3), keepdims=True), 1e-6)
    assert lo == pytest.approx(g.min(), rel=1e-5) and hi == pytest.approx(g.max(), rel=1e-5)
    assert "minmax: fit" not in (run.path / "config.yaml").read_text()
    images = run.splits.train.batch([0, 1, 2, 3])
    np.testing.assert_array_equal(load_run(run.path).encode(images), run.encode(images))


# -- training options (issue #15 part 6) ------------------------------------------------------------------------------

def _lrs(schedule_cfg: dict, total: int = 12, per_epoch: int = 4, metrics: list[float] | None = None) -> list[float]:
    """The lr of each step under a schedule, driven as the loop drives it (epoch metrics for plateau)."""
    from aelab.config import LRScheduleConfig
    from aelab.schedule import Schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = Schedule(opt, LRScheduleConfig(**schedule_cfg), 0.1, total, per_epoch)
    used = []
    for step in range(1, total + 1):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.after_step(step)
        if step % per_epoch == 0 and metrics:
            sched.after_epoch({"step": step, "val_mse": metrics[step // per_epoch - 1]})
    return used


def test_lr_schedules():
    assert _lrs({}) == [0.1] * 12
    warm = _lrs({"type": "cosine", "warmup_steps": 4, "min_lr": 0.01})
    assert warm[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # linear warmup up to lr
    assert warm[4] == pytest.approx(0.1) and warm[-1] == pytest.approx(0.01)  # cosine from lr to min_lr at the end
    assert all(a > b for a, b in zip(warm[4:], warm[5:], strict=False))
    assert _lrs({"type": "step", "step_size": 2, "gamma": 0.5}) == pytest.approx([0.1] * 8 + [0.05] * 4)  # epochs
    # plateau: the metric stalls after epoch 1; patience 1 cuts after the second epoch without improvement
    plateau = _lrs({"type": "plateau", "patience": 1, "factor": 0.5}, total=16, metrics=[1.0, 1.0, 1.0, 1.0])
    assert plateau == pytest.approx([0.1] * 12 + [0.05] * 4)


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_early_stopping_and_keep_best(tmp_path):
    from aelab.runfolder import foreign_files

    cfg = tiny_config(train={"epochs": 6, "batch_size": 32, "lr": 0.003, "keep_best": "val_psnr",
                             "early_stopping": {"metric": "val_mse", "patience": 2, "min_delta": 1.0}})
    run = aelab.train(cfg, out=tmp_path / "es")
    s = run.summary
    epochs = [r for r in records(run) if "train_loss" in r]
    # nothing beats epoch 1 by 1.0: two epochs without improvement, then stop
    assert s["stopped_early"] is True and s["stopped_at_epoch"] == 3 and len(epochs) == 3 and s["steps"] == 12
    best = max(epochs, key=lambda r: r["val_psnr"])
    assert s["best"] == {"metric": "val_psnr", "value": best["val_psnr"], "step": best["step"],
                         "epoch": best["epoch"], "file": "best.safetensors"}
    on_best = load_run(run.path, weights="best")
    assert on_best.weights == "best" and on_best.evaluate()["psnr"] == pytest.approx(best["val_psnr"], abs=1e-4)
    if best["epoch"] == 3:  # the last epoch was the best: the two files hold the same weights
        assert all(torch.equal(v, on_best.model.state_dict()[k]) for k, v in run.model.state_dict().items())
    assert foreign_files(run.path) == []  # --force may replace it
    with pytest.raises(RunError, match="no best weights"):
        load_run(aelab.train(tiny_config(), out=tmp_path / "plain").path, weights="best")
    with pytest.raises(AelabError, match="must be last or best"):
        load_run(run.path, weights="first")


def test_best_weights_are_the_best_epochs(tmp_path, monkeypatch):
    """best.safetensors holds the weights of the best epoch, not the last, when the metric gets worse."""
    train_mod = importlib.import_module("aelab.train")
    original, seen = train_mod.Trainer._epoch_record, {}

    def record(self, train_loss):
        rec = original(self, train_loss)
        seen[self.epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
        rec["val_mse"] = [0.5, 0.1, 0.3][self.epoch - 1]  # epoch 2 is the best
        return rec

    monkeypatch.setattr(train_mod.Trainer, "_epoch_record", record)
    run = aelab.train(tiny_config(train={"epochs": 3, "batch_size": 32, "keep_best": "val_mse"}), out=tmp_path / "b")
    assert run.summary["best"]["epoch"] == 2 and run.summary["best"]["value"] == 0.1
    best = load_run(run.path, weights="best").model.state_dict()
    assert all(torch.equal(best[k], seen[2][k].contiguous()) for k in best)
    assert not torch.equal(best["encoder.1.weight"], run.model.state_dict()["encoder.1.weight"])
    from aelab.codestats import weights_hash  # cached code statistics are keyed on the weights actually loaded

    assert weights_hash(load_run(run.path, weights="best")) != weights_hash(load_run(run.path))


def test_grad_clip_and_weight_decay_are_applied_and_recorded(tmp_path):
    cfg = as_config(tiny_config(train={"epochs": 1, "max_steps": 1, "batch_size": 32, "lr": 0.1, "optimizer": "sgd",
                                       "momentum": 0.0, "grad_clip": 1e-3, "weight_decay": 0.01}))
    trainer = Trainer(cfg, tmp_path / "c", progress=False)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    run = trainer.fit()
    after = run.model.state_dict()
    step = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before))
    decay = 0.1 * 0.01 * torch.sqrt(sum((before[k] ** 2).sum() for k in before if "weight" in k or "bias" in k))
    assert step <= 0.1 * 1e-3 + decay + 1e-6  # lr × the clipped norm, plus the decay's share
    assert run.summary["grad_clip"] == 1e-3 and run.summary["weight_decay"] == 0.01
    assert [r["grad_norm"] for r in records(run) if "loss" in r][0] > 1e-3  # logged before the clip


def test_metrics_csv_matches_the_log(tmp_path):
    import csv

    run = aelab.train(tiny_config(train={"epochs": 2, "batch_size": 32, "log": ["csv"]}), out=tmp_path / "l")
    rows = list(csv.DictReader((run.path / "metrics.csv").open()))
    epochs = [r for r in records(run) if "train_loss" in r]
    assert len(rows) == len(epochs) == 2
    for row, rec in zip(rows, epochs, strict=True):
        assert row.keys() == rec.keys()
        assert {k: float(v) for k, v in row.items()} == pytest.approx({k: float(v) for k, v in rec.items()}, rel=1e-12)


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_tensorboard_events_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = aelab.train(tiny_config(train={"epochs": 2, "batch_size": 32, "log": ["tensorboard"]}), out=tmp_path / "t")
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    assert {"loss", "train_loss", "val_mse", "val_psnr", "val_ssim", "lr"} <= set(events.Tags()["scalars"])
    epochs = [r for r in records(run) if "train_loss" in r]
    got = [(e.step, e.value) for e in events.Scalars("val_mse")]
    assert got == [(r["step"], pytest.approx(r["val_mse"], rel=1e-6)) for r in epochs]
    assert len(events.Scalars("loss")) == run.summary["steps"]


def test_tensorboard_missing_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        find_spec(name, *a))
    with pytest.raises(AelabError, match=r"tensorboard, which is not installed; install it with pip install "
                                         r"'aelab\[tensorboard\]'"):
        aelab.train(tiny_config(train={"log": ["tensorboard"]}), out=tmp_path / "t")
    assert not (tmp_path / "t").exists()


# -- feedback (part 5) -------------------------------------------------------------------------------------------------

@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_progress_in_a_plain_log_prints_epoch_lines_only(tmp_path, capsys):
    aelab.train(tiny_config(), out=tmp_path / "quiet")  # progress=None: nobody watching pytest's captured stderr
    assert capsys.readouterr().err == ""
    aelab.train(tiny_config(), out=tmp_path / "p", progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # no bar frames in a log
    assert lines[0].startswith("epoch 1/2  step 4  train_loss ") and "val_psnr" in lines[0] and " dB" in lines[0]
    assert lines[1].startswith("epoch 2/2  step 8  ") and lines[1].endswith(" s")


def test_epoch_line_with_early_stop_message(tmp_path, capsys):
    cfg = tiny_config(train={"epochs": 5, "batch_size": 32, "early_stopping": {"patience": 1, "min_delta": 1.0}})
    aelab.train(cfg, out=tmp_path / "p", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and err[-1].startswith("early stopping: val_mse did not improve on ")
    assert err[-1].endswith("for 1 epoch(s); stopped after epoch 2")


# -- part of the data, the cores (part 7) ------------------------------------------------------------------------------

def test_data_limit_first_and_random(tmp_path):
    from aelab.config import config_from_dict
    from aelab.data.splits import make_splits

    def ids(**data):
        faces = {"source": "builtin:faces?n=160&size=16", "val_fraction": 0.25}
        cfg = config_from_dict(tiny_config(data={**faces, **data}))
        s = make_splits(cfg.data, cfg.seed)
        return sorted([*s.train.ids, *s.val.ids]), len(s.train), len(s.val)

    assert ids(limit=40) == (list(range(40)), 30, 10)  # the validation split comes out of the limited set
    picked, n_train, n_val = ids(limit=40, limit_mode="random")
    assert (n_train, n_val) == (30, 10) and picked != list(range(40)) and max(picked) >= 40
    assert ids(limit=40, limit_mode="random")[0] == picked  # seeded
    assert ids(limit=1000)[0] == list(range(160))  # more than there are: all of them
    run = aelab.train(tiny_config(data={"source": "builtin:faces?n=160&size=16", "val_fraction": 0.25, "limit": 40}),
                      out=tmp_path / "lim")
    assert run.summary["n_train"] == 30 and run.summary["data_limit"] == 40
    assert run.summary["data_limit_mode"] == "first"


def test_unknown_keys_suggest_the_closest():
    from aelab.config import config_from_dict
    from aelab.errors import ConfigError

    for raw, hint in [({"data": {"limitt": 5}}, "'limit'"), ({"train": {"limit": 5}}, "'data.limit'"),
                      ({"train": {"lr_schedule": {"warmup": 5}}}, "'warmup_steps'"),
                      ({"data": {"epochs": 5}}, "'train.epochs'")]:
        with pytest.raises(ConfigError, match=f"did you mean {hint}"):
            config_from_dict(raw)
    with pytest.raises(ConfigError, match="needs a validation split"):
        config_from_dict(tiny_config(data={"val_fraction": 0}, train={"early_stopping": {"patience": 2}}))


def test_threads_option(tmp_path, capsys):
    from aelab.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(tiny_config(train={"epochs": 1, "batch_size": 32})))
    before = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exc:
            main(["train", str(cfg), "--out", str(tmp_path / "r"), "--threads", "1", "--json"])
    finally:
        torch.set_num_threads(before)
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    assert load_run(tmp_path / "r").config.train.threads == 1


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_weights_option_on_the_cli(tmp_path, capsys):
    from safetensors import safe_open

    from aelab.cli import main
    from aelab.io import save_tensors

    run = aelab.train(tiny_config(train={"epochs": 2, "batch_size": 32, "keep_best": "val_mse"}), out=tmp_path / "r")
    # the best epoch is often the last: move the last weights away from the best so the two files differ
    with safe_open(str(run.path / "model.safetensors"), "pt") as fh:
        meta, last = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    save_tensors(run.path / "model.safetensors", {k: v + 0.05 for k, v in last.items()}, metadata=meta)
    capsys.readouterr()
    mse = {}
    for choice in ("best", "last"):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", str(run.path), "--weights", choice, "--json"])
        assert exc.value.code == 0
        mse[choice] = json.loads(capsys.readouterr().out)["mse"]
        assert mse[choice] == pytest.approx(load_run(run.path, weights=choice).evaluate()["mse"], rel=1e-6)
    assert mse["best"] == pytest.approx(run.summary["best"]["value"], abs=1e-6)
    assert abs(mse["last"] - mse["best"]) > 0.1 * mse["best"]  # the two weights told apart
    plain = aelab.train(tiny_config(), out=tmp_path / "plain")
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", str(plain.path), "--weights", "best", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "no best weights" in err and len(err.strip().splitlines()) == 1
