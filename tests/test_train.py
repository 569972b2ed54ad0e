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
