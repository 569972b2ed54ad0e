"""Sweeps: grid expansion and naming, resume, the table against the Run folders, figures, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

import aelab
import aelab.cli  # noqa: F401  (registers the commands)
from aelab.analyse import sweep_figures
from aelab.cli.common import app
from aelab.errors import AelabError, ConfigError
from aelab.sweep import cores, run_state, run_sweep
from aelab.sweepfile import label, load_sweep, load_sweep_dir, run_name
from aelab.sweeptable import sweep_table, table_md

BASE = tiny_config(train={"epochs": 1, "batch_size": 32, "lr": 0.003})


def spec(**extra) -> dict:
    return {"name": "t", "base": BASE, **extra}


@pytest.fixture(scope="session")
def done_sweep(tmp_path_factory):
    """AE and VAE × 1 and 2 epochs, all finished."""
    out = tmp_path_factory.mktemp("sweeps") / "ae-vae"
    result = run_sweep(spec(grid={"model.type": ["fcn", "vae"], "train.epochs": [1, 2]}), out)
    result.files.update(sweep_figures(out))  # what `aelab sweep` adds after the runs
    return result


# -- expansion and naming ------------------------------------------------------------------------------------------
def test_grid_expands_to_every_combination_with_readable_names():
    s = load_sweep(spec(grid={"model.type": ["fcn", "vae"], "train.epochs": [5, 10, 15]}))
    assert [v.name for v in s.variants] == ["fcn_e5", "fcn_e10", "fcn_e15", "vae_e5", "vae_e10", "vae_e15"]
    assert s.varied == ["model.type", "train.epochs"]
    v = s.variants[4]
    assert v.settings == {"model.type": "vae", "train.epochs": 10}
    assert v.config.model.type == "vae" and v.config.train.epochs == 10 and v.config.name == "vae_e10"
    # everything not varied comes from the base
    assert v.config.model.hidden == [64, 16] and v.config.data.source == BASE["data"]["source"]
    assert v.label == "vae, epochs=10"


def test_variants_times_grid_and_a_list_of_grids_is_a_union():
    s = load_sweep(spec(variants=[{"name": "ae"}, {"name": "b4", "model.type": "vae", "model.beta": 4.0}],
                        grid={"train.lr": [0.001, 0.0003]}))
    assert [v.name for v in s.variants] == ["ae_lr0.001", "ae_lr0.0003", "b4_lr0.001", "b4_lr0.0003"]
    assert s.variants[3].config.model.beta == 4.0 and s.variants[3].config.train.lr == 0.0003
    u = load_sweep(spec(base={**BASE, "model": {"type": "conv", "channels": [8, 16]}},
                        grid=[{"model.latent_dim": [4, 8]},
                              {"model.latent_dim": [None], "model.channels": [[8, 2], [8, 4]]}]))
    assert [v.name for v in u.variants] == ["z4", "z8", "spatial_ch8-2", "spatial_ch8-4"]
    assert u.variants[2].config.model.latent_dim is None and u.variants[2].config.model.channels == [8, 2]


def test_run_name_and_label_rules():
    assert run_name({"model.type": "vae", "train.epochs": 5}) == "vae_e5"
    assert run_name({"model.latent_dim": None}) == "spatial"
    assert run_name({"train.lr": 3e-4, "model.hidden": [64, 16], "data.val_fraction": 0.2}) == \
        "lr0.0003_h64-16_valfraction0.2"
    assert run_name({"train.input_noise": {"type": "gaussian", "std": 0.2}}) == "noisegaussian-0.2"
    assert run_name({}) == "base"
    assert label({"model.type": "fcn", "model.latent_dim": 16}) == "fcn, latent_dim=16"


def test_identical_names_get_their_own_folders():
    s = load_sweep(spec(variants=[{"name": "x", "train.lr": 0.001}, {"name": "x", "train.lr": 0.002}]))
    assert [v.name for v in s.variants] == ["x", "x-2"]


def test_overrides_change_the_base_and_the_grid_still_varies():
    s = load_sweep(spec(grid={"train.epochs": [1, 2]}), overrides=["train.epochs=9", "train.lr=0.01"])
    assert [v.config.train.epochs for v in s.variants] == [1, 2]
    assert all(v.config.train.lr == 0.01 for v in s.variants)


def test_base_from_a_file_next_to_the_sweep_and_from_a_preset(tmp_path):
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"train.epochs": [1, 3]}}))
    s = load_sweep(tmp_path / "s.yaml")
    assert s.name == "s" and [v.config.train.epochs for v in s.variants] == [1, 3]
    preset = load_sweep({"base": "deep-fcn", "set": {"train.epochs": 2}})
    assert preset.variants[0].config.model.hidden == [1024, 256, 64] and preset.variants[0].config.train.epochs == 2
    assert [v.name for v in load_sweep("examples/sweep-epochs.yaml").variants] == \
        ["fcn_e5", "fcn_e10", "fcn_e15", "vae_e5", "vae_e10", "vae_e15"]
    assert len(load_sweep("examples/sweep-latent.yaml").variants) == 9


@pytest.mark.parametrize("bad, message", [
    ({"grid": {"train.epochs": 5}}, "grid key 'train.epochs' needs a non-empty list"),
    ({"grdi": {}}, "unknown sweep key 'grdi'"),
    ({"grid": {"train.epocs": [1]}}, "run 'epocs1': unknown config key 'train.epocs' (did you mean 'epochs'?)"),
    ({"base": "no-such-config"}, "base config 'no-such-config' not found"),
    ({"variants": ["fcn"]}, "'variants' must be a list of mappings"),
])
def test_bad_sweeps_name_the_problem(bad, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_sweep(spec(**bad) if "base" not in bad else {"name": "t", **bad})
    assert message in str(err.value)


# -- running and resuming ------------------------------------------------------------------------------------------
def test_sweep_trains_every_run_and_writes_the_outputs(done_sweep):
    out = done_sweep.out
    assert {p.name for p in out.iterdir()} >= {"fcn_e1", "fcn_e2", "vae_e1", "vae_e2", "sweep.yaml", "table.csv",
                                                "table.md", "losses.png"}
    assert not (out / "latent.png").exists()  # every run has the same code size
    assert (out / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(done_sweep.states.values()) == {"new"}
    assert json.loads((out / "vae_e2" / "summary.json").read_text())["epochs"] == 2
    from aelab.runfolder import foreign_files
    from aelab.sweep import SWEEP_FOLDER

    assert foreign_files(out, SWEEP_FOLDER) == []  # every file is the sweep's own: running it again reuses the folder


def test_table_matches_the_run_folders(done_sweep):
    out = done_sweep.out
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert list(rows[0]) == ["run", "model.type", "train.epochs", "parameters", "latent_size", "compression",
                             "final_train_loss", "final_train_mse_01", "val_mse", "val_psnr", "val_ssim", "time_s"]
    assert [r["run"] for r in rows] == ["fcn_e1", "fcn_e2", "vae_e1", "vae_e2"]
    for r in rows:
        s = json.loads((out / r["run"] / "summary.json").read_text())
        cfg = aelab.load_config(out / r["run"] / "config.yaml")
        assert r["model.type"] == cfg.model.type == s["family"]
        assert int(r["train.epochs"]) == cfg.train.epochs == s["epochs"]
        assert int(r["parameters"]) == s["parameters"]
        assert int(r["latent_size"]) == s["latent_size"] == 4
        assert float(r["compression"]) == pytest.approx(16 * 16 * 3 / 4)
        for col, key in (("final_train_loss", "final_train_loss"), ("final_train_mse_01", "final_train_mse_01"),
                         ("val_mse", "mse"), ("val_psnr", "psnr"),
                         ("val_ssim", "ssim"), ("time_s", "wall_time_s")):
            assert float(r[col]) == pytest.approx(s[key], rel=1e-12)
        # the final train loss is the mean of the last epoch's per-iteration losses, batch-weighted
        log = [json.loads(ln) for ln in (out / r["run"] / "metrics.jsonl").read_text().splitlines()]
        assert s["final_train_loss"] == [x for x in log if "train_loss" in x][-1]["train_loss"]
        steps = [x for x in log if "loss" in x and x["epoch"] == s["epochs"]]
        size, n = cfg.train.batch_size, s["n_train"]
        weights = [min(size, n - i * size) for i in range(len(steps))]
        assert sum(weights) == n
        assert s["final_train_loss"] == pytest.approx(np.average([x["loss"] for x in steps], weights=weights),
                                                      rel=1e-6)
        assert s["final_train_mse_01"] == pytest.approx(np.average([x["mse_01"] for x in steps], weights=weights),
                                                        rel=1e-6)
    # the independent evaluation of a run gives the table's validation numbers
    run = aelab.load_run(out / "vae_e2")
    assert run.evaluate()["psnr"] == pytest.approx(float(rows[3]["val_psnr"]), rel=1e-5)
    md = (out / "table.md").read_text().splitlines()
    assert md[0].startswith("| run | model.type | train.epochs | parameters |") and len(md) == 2 + 4
    assert "| vae_e2 | vae | 2 |" in md[5]


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_a_half_done_sweep_resumes(tmp_path, monkeypatch):
    from aelab.train import Trainer

    s = load_sweep(spec(grid={"train.epochs": [1, 3]}))
    out = tmp_path / "half"
    out.mkdir()  # train creates only the last level of its folder
    first, second = s.variants
    aelab.train(first.config, out / first.name)
    weights_mtime = (out / first.name / "model.safetensors").stat().st_mtime_ns

    save = Trainer._save_checkpoint

    def stop_after_first_epoch(self):
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        aelab.train(second.config, out / second.name)
    monkeypatch.undo()
    assert (out / "e3" / "checkpoint.safetensors").exists() and not (out / "e3" / "summary.json").exists()
    assert run_state(out / "e3", second.config) == "resume"

    lines = []
    result = run_sweep(s, out, log=lines.append)
    assert result.states == {"e1": "done", "e3": "resume"}
    assert (out / "e1" / "model.safetensors").stat().st_mtime_ns == weights_mtime  # not retrained
    assert any("e3: resumed and finished" in line for line in lines)
    log = [json.loads(ln) for ln in (out / "e3" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, len(steps) + 1))  # no step lost or repeated across the interruption
    assert [r["epoch"] for r in log if "train_loss" in r] == [1, 2, 3]
    assert [r["run"] for r in result.rows] == ["e1", "e3"]
    # a straight run of the same config ends with the same weights: the resume continued, not restarted
    straight = aelab.train(second.config, tmp_path / "straight")
    assert aelab.load_run(out / "e3").summary["mse"] == pytest.approx(straight.summary["mse"], rel=1e-6)


def test_folder_states_and_a_changed_config(tmp_path):
    s = load_sweep(spec())
    v = s.variants[0]
    assert run_state(tmp_path / "nothing", v.config) == "new"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("name: x\n")
    assert run_state(tmp_path / "broken", v.config) == "restart"
    run_sweep(s, tmp_path / "sw")
    changed = load_sweep(spec(), overrides=["train.lr=0.002"])
    with pytest.raises(AelabError, match=r"holds a finished run of another config \(train.lr: 0.003 in the folder, "
                                         r"0.002 in the sweep\); use --force"):
        run_sweep(changed, tmp_path / "sw")
    again = run_sweep(changed, tmp_path / "sw", force=True)
    assert again.states == {"base": "different"}
    assert aelab.load_run(tmp_path / "sw" / "base").config.train.lr == 0.002


@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_latent_sweep_draws_the_code_size_figure(tmp_path):
    s = load_sweep(spec(grid={"model.latent_dim": [2, 8]}, set={"data.source": "builtin:faces?n=64&size=16"}))
    result = run_sweep(s, tmp_path / "lat")
    assert "latent" not in result.files  # the runner draws nothing: figures are drawn above it
    result.files.update(sweep_figures(tmp_path / "lat"))
    assert Path(result.files["latent"]).name == "latent.png" and (tmp_path / "lat" / "latent.png").stat().st_size
    assert [r["latent_size"] for r in result.rows] == [2, 8]
    assert [r["compression"] for r in result.rows] == [384.0, 96.0]
    from aelab.sweep import finished, input_elements

    assert input_elements(tmp_path / "lat", finished(tmp_path / "lat", s)) == 3 * 16 * 16  # the compression axis


@pytest.mark.slow(reason="two sweep jobs in worker processes that import torch")
def test_jobs_split_the_threads(tmp_path):
    s = load_sweep(spec(grid={"seed": [0, 1]}, set={"data.source": "builtin:faces?n=64&size=16"}))
    result = run_sweep(s, tmp_path / "j", jobs=2)
    assert sorted(result.states) == ["seed0", "seed1"]
    for r in result.rows:
        assert json.loads((tmp_path / "j" / r["run"] / "summary.json").read_text())["threads"] == max(1, cores() // 2)


def test_load_sweep_dir_and_table_of_a_folder(done_sweep):
    again = load_sweep_dir(done_sweep.out)
    assert [v.name for v in again.variants] == ["fcn_e1", "fcn_e2", "vae_e1", "vae_e2"]
    assert sweep_table(done_sweep.out) == done_sweep.rows
    assert table_md(done_sweep.rows) == (done_sweep.out / "table.md").read_text()
    with pytest.raises(AelabError, match="not a sweep folder"):
        load_sweep_dir(done_sweep.out / "fcn_e1")


# -- the command ---------------------------------------------------------------------------------------------------
@pytest.mark.slow(reason="trains runs of its own (~0.5-1 s)")
def test_cli_sweep_json_and_set(tmp_path):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec(grid={"model.latent_dim": [3]})))
    res = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o"), "--set",
                                   "data.source=builtin:faces?n=64&size=16", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["runs"] == 1 and data["table"][0]["run"] == "z3" and data["states"] == {"z3": "new"}
    assert aelab.load_run(tmp_path / "o" / "z3").config.data.source == "builtin:faces?n=64&size=16"
    res = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o"), "--set",
                                   "data.source=builtin:faces?n=64&size=16"])
    assert res.exit_code == 0 and "z3: already finished, skipped" in res.output and "table_md:" in res.output
    assert "losses:" in res.output and (tmp_path / "o" / "losses.png").is_file()
    assert (tmp_path / "o" / "z3" / "figures" / "loss.png").is_file()  # each run's own curve, as `aelab train` draws


def test_cli_bad_sweep_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {train.epochs: 5}\n")
    proc = subprocess.run([sys.executable, "-m", "aelab", "sweep", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"aelab: error: {bad}: grid key 'train.epochs' needs a non-empty "
                                                "list of values, got 5"]
