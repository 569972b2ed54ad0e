"""Loss units (issue 14, part 2) and terminal output that never hides a number (part 7).

The training objective lives on data.range (and adds β·KL/D for a VAE); the reconstruction MSEs live on
[0, 1]. These tests hold the conversion to an independent computation, the old-log path, the figure's
axes and the tables' labels, and the CLI's output through the installed script, piped and narrow."""

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config

import aelab
from aelab.logunits import labelled, upgrade_log

VAE = tiny_config(model={"type": "vae", "backbone": "conv", "channels": [8, 16], "latent_dim": 6})


def _steps(run):
    return [r for r in run.metrics_log() if "loss" in r]


@pytest.mark.slow
def test_train_mse_01_is_the_batch_mse_on_unit_pixels(tmp_path):
    """An l1 objective on [-1, 1] with a step too small to move a weight: the one logged step's mse_01 is the
    plain MSE of the (unchanged) model's reconstructions of all 120 training images on [0, 1], computed here
    from the uint8 images / 255 in float64 -- and is not the l1 term."""
    cfg = tiny_config(train={"epochs": 1, "batch_size": 128, "lr": 1e-30, "optimizer": "sgd", "momentum": 0.0,
                             "loss": "l1"})
    run = aelab.train(cfg, out=tmp_path / "r")
    (step,) = _steps(run)
    images = run.splits.train.batch(np.arange(len(run.splits.train)))  # uint8 N×H×W×C
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        recon = run.model.train()(x).recon.double().permute(0, 2, 3, 1).numpy()
    expected = float((((recon + 1) / 2 - images / 255.0) ** 2).mean())
    assert step["mse_01"] == pytest.approx(expected, rel=1e-5)
    assert step["recon"] == pytest.approx(float(np.abs(recon - (images / 127.5 - 1)).mean()), rel=1e-5)  # l1
    assert not math.isclose(step["recon"], 4 * step["mse_01"], rel_tol=0.05)
    epoch = next(r for r in run.metrics_log() if "train_loss" in r)
    assert epoch["train_mse_01"] == step["mse_01"] == run.summary["final_train_mse_01"]
    assert run.summary["final_train_kl"] is None and "final_train_mse_01" in run.summary["units"]


def test_vae_terms_add_up_and_read_on_their_scales(trained):
    """Per step: objective = recon + β·KL/D, and mse_01 = recon / (hi − lo)² (mse on [-1, 1]); per epoch the
    batch-weighted means; the summary carries the last epoch's."""
    run = trained(VAE)
    d = math.prod(run.model.input_shape)
    for r in _steps(run):
        assert r["loss"] == pytest.approx(r["recon"] + r["kl"] / d, rel=1e-5, abs=1e-7)
        assert r["mse_01"] == pytest.approx(r["recon"] / 4, rel=1e-5)
    log, s = run.metrics_log(), run.summary
    last = [r for r in log if "train_loss" in r][-1]
    steps = [r for r in log if "loss" in r and r["epoch"] == last["epoch"]]
    n, size = s["n_train"], run.config.train.batch_size
    weights = [min(size, n - i * size) for i in range(len(steps))]
    for key, step_key in (("train_loss", "loss"), ("train_mse_01", "mse_01"), ("train_kl", "kl")):
        assert last[key] == pytest.approx(np.average([r[step_key] for r in steps], weights=weights), rel=1e-6)
    assert (s["final_train_loss"], s["final_train_mse_01"], s["final_train_kl"]) == \
        (last["train_loss"], last["train_mse_01"], last["train_kl"])
    # train and validation MSE are on one scale: within a factor of 2 here, where the objective is not
    assert 0.5 < s["final_train_mse_01"] / s["mse"] < 2 and s["final_train_loss"] / s["mse"] > 3
    assert list(labelled(s)) == ["train loss (objective)", "train MSE [0,1]", "train KL (nats)", "val MSE [0,1]",
                                 "val PSNR (dB)", "val SSIM"]


def _as_old_run(run, folder: Path) -> Path:
    """A copy of ``run`` as aelab wrote it before mse_01: no mse_01/train_mse_01/train_kl, no new summary keys."""
    shutil.copytree(run.path, folder)
    lines = [json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()]
    old = [{k: v for k, v in r.items() if k not in ("mse_01", "train_mse_01", "train_kl")} for r in lines]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    s = json.loads((folder / "summary.json").read_text())
    for key in ("final_train_mse_01", "final_train_kl", "units"):
        s.pop(key)
    (folder / "summary.json").write_text(json.dumps(s))
    return folder


@pytest.mark.slow
def test_an_old_run_loads_and_reads_in_todays_terms(trained, tmp_path):
    run = trained(VAE)
    old = aelab.load_run(_as_old_run(run, tmp_path / "old"))
    got, want = [r["mse_01"] for r in _steps(old)], [r["mse_01"] for r in _steps(run)]
    assert got == pytest.approx(want, abs=2e-7)  # both rounded to 7 places
    assert labelled(old.summary)["train MSE [0,1]"] is None  # not recorded, and said so ("-"), not guessed
    from aelab.analyse import analyse_run

    analyse_run(old, ["loss"], redo=True)
    assert (old.path / "figures" / "loss.png").stat().st_size > 1000
    # an l1 run's recon term is no MSE: nothing is derived from it
    recs = [{"step": 1, "epoch": 1, "loss": 0.3, "recon": 0.3}]
    assert upgrade_log(recs, {"train": {"loss": "l1"}}) == recs
    assert upgrade_log(recs, {"data": {"range": [0, 1]}})[0]["mse_01"] == 0.3


def test_an_old_logs_epochs_get_train_mse_01_only_where_the_objective_is_that_mse():
    steps = [{"step": 1, "epoch": 1, "loss": 0.4, "recon": 0.4}, {"step": 2, "epoch": 1, "loss": 0.2, "recon": 0.2}]
    epoch = {"step": 2, "epoch": 1, "train_loss": 0.3, "val_mse": 0.07}
    got = upgrade_log([*steps, epoch], {"data": {"range": [-1, 1]}})
    assert [r["mse_01"] for r in got[:2]] == [0.1, 0.05] and got[2]["train_mse_01"] == 0.075  # 0.3 / 2²
    for config, records in (({"model": {"type": "vae"}}, [*steps, epoch]),  # the objective adds β·KL/D
                            ({}, [{**steps[0], "kl": 3.0}, epoch])):  # a KL term logged
        assert "train_mse_01" not in upgrade_log(records, config)[-1]
    assert upgrade_log([*steps, epoch], {"train": {"loss": "l1"}}) == [*steps, epoch]


def test_loss_figure_puts_each_unit_on_its_own_axis(monkeypatch, tmp_path):
    """The first panel holds train mse_01 and validation MSE (both on [0, 1]); the objective and the KL have
    their own labelled panels; the training loss never shares the MSE axis."""
    import aelab.figures.run as fr

    captured = {}
    monkeypatch.setattr(fr, "save", lambda fig, path: captured.setdefault("fig", fig) and Path(path))
    steps = [{"step": i, "epoch": 1 + (i > 4), "loss": 0.3 - 0.01 * i, "recon": 0.2, "kl": 2.0 + i,
              "mse_01": 0.05 - 0.001 * i} for i in range(1, 9)]
    epochs = [{"step": 4, "epoch": 1, "train_loss": 0.25, "val_mse": 0.045},
              {"step": 8, "epoch": 2, "train_loss": 0.21, "val_mse": 0.041}]
    fr.loss_figure(steps[:4] + epochs[:1] + steps[4:] + epochs[1:], tmp_path / "l.png", objective="mse on [-1, 1]")
    mse_ax, loss_ax, kl_ax = captured["fig"].axes
    assert "[0, 1]" in mse_ax.get_ylabel() and "mse on [-1, 1]" in loss_ax.get_ylabel()
    assert "nats" in kl_ax.get_ylabel() and kl_ax.get_xlabel() == "iteration"
    mse_lines = {tuple(np.round(line.get_ydata(), 6)) for line in mse_ax.get_lines()}
    assert mse_lines == {tuple(np.round([r["mse_01"] for r in steps], 6)), (0.045, 0.041)}
    assert [list(line.get_ydata()) for line in loss_ax.get_lines()] == [[r["loss"] for r in steps]]
    fr.plt.close(captured.pop("fig"))
    older = [{k: v for k, v in r.items() if k not in ("mse_01", "kl")} for r in steps + epochs]
    fr.loss_figure(older, tmp_path / "o.png")  # a log from before mse_01: validation alone, and says so
    mse_ax, _ = captured["fig"].axes
    assert [tuple(line.get_ydata()) for line in mse_ax.get_lines()] == [(0.045, 0.041)]
    assert "validation only" in mse_ax.get_title()
    fr.plt.close(captured["fig"])


# -- part 7: numbers and paths whole wherever stdout goes --------------------------------------------------------------

def _script() -> str:
    """The installed `aelab` console script (PYTHONPATH points it at this checkout's code)."""
    found = Path(sys.executable).parent / "aelab"
    return str(found if found.exists() else shutil.which("aelab"))


def _piped(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "40", "OMP_NUM_THREADS": "1"}
    env.pop("FORCE_TERMINAL", None)
    return subprocess.run([_script(), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_table_headers_read_as_they_always_have():
    """The sweep's table.md and the report's per-epoch table take their headers from ``logunits``; pinned
    here as written, so a label changed in one place shows in every table on purpose, not by accident."""
    import re

    from aelab.report.sections import _epochs
    from aelab.sweeptable import table_md

    row = {"run": "z3", "final_train_loss": 0.1, "final_train_mse_01": 0.02, "val_mse": 0.03, "val_psnr": 20.0,
           "val_ssim": 0.5, "time_s": 1.0, "latent_size": 3, "compression": 256.0}
    assert table_md([row]).splitlines()[0] == (
        "| run | train loss (objective) | train MSE [0,1] | val MSE [0,1] | val PSNR (dB) | val SSIM | time (s) "
        "| code size | compression |")
    record = {"epoch": 1, "train_loss": 0.1, "train_mse_01": 0.02, "train_kl": 3.0, "val_mse": 0.03,
              "val_psnr": 20.0, "val_ssim": 0.5}
    vae = ["epoch", "train loss (objective)", "train MSE [0,1]", "train KL (nats)", "val MSE [0,1]",
           "val PSNR (dB)", "val SSIM"]
    assert re.findall(r"<th(?: [^>]*)?>(.*?)</th>", _epochs([record])) == vae
    ae = {k: v for k, v in record.items() if k != "train_kl"}
    assert re.findall(r"<th(?: [^>]*)?>(.*?)</th>", _epochs([ae])) == [h for h in vae if "KL" not in h]


@pytest.mark.slow
def test_train_and_sweep_tables_keep_every_number_and_path_in_a_narrow_pipe(tmp_path):
    from aelab.cli.common import fmt
    from aelab.sweeptable import MD_HEADERS, format_cell

    deep = tmp_path / "a folder with a rather long name" / "and another one below it"
    deep.mkdir(parents=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1, "batch_size": 32, "lr": 0.003})))
    res = _piped("train", cfg, "--out", deep / "run-with-a-long-name", "-q")
    assert res.returncode == 0, res.stderr
    s = json.loads((deep / "run-with-a-long-name" / "summary.json").read_text())
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout
    assert any(ln.startswith("run ") and ln[3:].strip() == str(deep / "run-with-a-long-name") for ln in lines)
    for label, value in labelled(s).items():  # each number whole, on its labelled line
        assert any(ln.startswith(label) and ln[len(label):].strip() == fmt(value) for ln in lines), (label, lines)
    assert "train loss: the objective the optimiser minimised (mse on [-1, 1])" in res.stdout

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "narrow", "base": tiny_config(train={"epochs": 1, "batch_size": 32}),
                                    "grid": {"model.latent_dim": [3, 5]}}))
    res = _piped("sweep", spec, "--out", deep / "sweep-out", "-q")
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout and f"table_csv: {deep / 'sweep-out' / 'table.csv'}" in res.stdout.splitlines()
    import csv

    rows = list(csv.DictReader((deep / "sweep-out" / "table.csv").open()))
    header = next(ln for ln in res.stdout.splitlines() if ln.startswith("run "))
    for key in ("final_train_loss", "final_train_mse_01", "val_mse", "val_psnr"):
        assert MD_HEADERS[key] in header
    for r in rows:
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(r["run"] + " "))
        for key in ("final_train_loss", "final_train_mse_01", "val_mse", "val_psnr", "val_ssim"):
            assert format_cell(key, float(r[key])) in line.split(), (key, line)


def test_a_narrow_terminal_folds_cells_and_cuts_nothing(monkeypatch):
    """In a terminal 40 columns wide the rich table folds its cells onto more lines: every character of a
    long path and of each number is still there, no ellipsis."""
    from rich.console import Console

    from aelab.cli import common

    term = Console(force_terminal=True, width=40, color_system=None, record=True, file=io.StringIO())
    monkeypatch.setattr(common, "console", term)
    path = "/tmp/runs/a folder with a rather long name/and another/run-with-a-long-name"
    common.table([{"run": path, "val MSE [0,1]": 0.0123456, "parameters": 123456789, "val PSNR (dB)": 19.64}])
    text = term.export_text()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 40
    body = [ln.split("│")[1:-1] for ln in text.splitlines() if ln.startswith("│")]
    columns = ["".join(row[j] for row in body).replace(" ", "") for j in range(4)]  # each cell's pieces, joined
    assert columns == [path.replace(" ", ""), "0.01235", "123,456,789", "19.64"]
