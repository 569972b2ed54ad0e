"""The command line end to end, as a user runs it: real processes, exit codes, stderr."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _cli import aelab, aelab_each
from _cli import one_line_exit_2 as bad
from conftest import tiny_config

from aelab.run import load_run


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_config(tmp / "c.yaml", tiny_config())
    res = aelab("train", cfg, "--out", tmp / "run", "--json", "--set", "train.epochs=1")
    assert res.returncode == 0, res.stderr
    return tmp / "run", json.loads(res.stdout)


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_train_json(cli_run):
    path, out = cli_run
    assert out["run"] == str(path) and out["epochs"] == 1 and out["family"] == "fcn"
    assert (path / "summary.json").exists()


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_info_json_and_diagram(tmp_path):
    res = aelab("info", "configs/deep-fcn.yaml", "--json", "--input-shape", "64x64x3", "--diagram",
                tmp_path / "arch.png")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["parameters"] == 25_739_146 and out["latent_shape"] == [10]
    assert [r["output_shape"] for r in out["layers"] if r["type"].startswith("Linear")][3] == [10]
    assert (tmp_path / "arch.png").stat().st_size > 5000


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_info_of_a_run_and_table_output(cli_run):
    res = aelab("info", cli_run[0])
    assert res.returncode == 0 and "parameters" in res.stdout and "Linear" in res.stdout


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_evaluate_and_reconstruct(cli_run, tmp_path):
    path, _ = cli_run
    res, other, recon = aelab_each(
        ("evaluate", path, "--json"), ("evaluate", path, "--json", "--data", "builtin:faces?n=12&size=16&seed=5"),
        ("reconstruct", path, "--ids", "0,5,9", "--data", "builtin:faces?n=12&size=16", "--out", tmp_path / "r.png",
         "--json"))
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["n"] == 40 and 0 < out["ssim"] <= 1 and out["psnr"] > 5
    # the numbers are the run's own measurement of its validation split, recomputed here from the images
    run = load_run(path)
    images = run.val_data().batch()
    recon_images = run.reconstruct(images).astype(np.float64) / 255
    assert out["mse"] == pytest.approx(((recon_images - images / 255) ** 2).mean(), rel=0.02)
    assert out["psnr"] == pytest.approx(run.evaluate()["psnr"], rel=1e-6)
    assert json.loads(other.stdout)["n"] == 12
    out = json.loads(recon.stdout)
    assert recon.returncode == 0 and out["ids"] == [0, 5, 9] and len(out["psnr"]) == 3
    assert (tmp_path / "r.png").stat().st_size > 2000


@pytest.mark.slow(reason="16 aelab processes that import torch (~2 s of start-up each), two at a time")
def test_bad_inputs_give_one_line_and_exit_2(tmp_path, cli_run):
    import shutil

    from PIL import Image

    cfg = write_config(tmp_path / "c.yaml", tiny_config())
    unknown = write_config(tmp_path / "unknown.yaml", {**tiny_config(), "train": {"epochs": 1, "lrr": 0.1}})
    np.save(tmp_path / "nan.npy", np.full((4, 16, 16, 3), np.nan, np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((4, 10), np.uint8))
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "a.png")
    Image.new("RGB", (20, 16)).save(tmp_path / "imgs" / "b.png")
    mixed = write_config(tmp_path / "mixed.yaml", tiny_config(data={"source": f"folder:{tmp_path / 'imgs'}"}))
    shutil.copytree(cli_run[0], tmp_path / "garbled")
    (tmp_path / "garbled" / "model.safetensors").write_bytes(b"garbage")
    cases = [  # (arguments, what the one line must name)
        (("reconstruct", cli_run[0], "--ids", "0", "--out", tmp_path / "r.xyz"), ("r.xyz", ".png")),
        (("evaluate", cli_run[0], "--labels", tmp_path / "l.npy"), ("--labels", "--data")),
        (("train", tmp_path / "missing.yaml"), ("config file not found", "missing.yaml")),
        (("train", unknown, "--out", tmp_path / "u"), ("unknown config key 'train.lrr'", "did you mean 'lr'")),
        (("train", cfg, "--set", "train.lr=-1", "--out", tmp_path / "n"), ("train.lr", "-1")),
        (("train", cfg, "--set", "train.batch_size=0", "--out", tmp_path / "z"), ("train.batch_size",)),
        (("train", cfg, "--set", f"data.source=npy:{tmp_path / 'nan.npy'}", "--out", tmp_path / "x"),
         ("NaN", "nan.npy")),
        (("train", cfg, "--set", f"data.source=npy:{tmp_path / 'flat.npy'}", "--out", tmp_path / "y"),
         ("shape (4, 10)", "flat.npy")),
        (("train", cfg, "--set", "data.select_labels=[7]", "--out", tmp_path / "s"), ("keeps no image",)),
        (("train", mixed, "--out", tmp_path / "m"), ("images of different sizes", "resize")),
        (("evaluate", tmp_path / "no-run"), ("run folder not found",)),
        (("evaluate", cli_run[0], "--data", "builtin:faces?n=4&size=32"), ("expects (3, 16, 16)", "32×32×3")),
        (("evaluate", tmp_path / "garbled"), ("model.safetensors", "not a readable safetensors file")),
        (("reconstruct", cli_run[0], "--ids", "0,999", "--out", tmp_path / "q.png"), ("no image with id 999",)),
    ]
    debug, *results = aelab_each(("--debug", "train", tmp_path / "missing.yaml"), *(args for args, _ in cases))
    for res, (_, needles) in zip(results, cases, strict=True):
        bad(res, *needles)
    assert debug.returncode != 0 and "Traceback" in debug.stderr  # --debug shows what the one line hides
    # Nothing half-written looks finished
    assert not (tmp_path / "r.xyz").exists()
    for name in ("u", "n", "z", "x", "y", "s", "m"):
        assert not (tmp_path / name / "summary.json").exists()


@pytest.mark.slow(reason="trains and analyses the quick demo's two runs in a process")
def test_demo_quick_json(tmp_path):
    res = aelab("demo", "--quick", "--out", tmp_path / "demo", "--json", timeout=900)  # ~40 s on an idle machine
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert [r["family"] for r in out["table"]] == ["fcn", "vae"]
    assert all(r["val PSNR (dB)"] > 10 for r in out["table"])
    assert (tmp_path / "demo" / "deep-fcn" / "figures" / "architecture.png").exists()
    from aelab.demo import DEMO_FOLDER
    from aelab.runfolder import foreign_files

    assert foreign_files(tmp_path / "demo", DEMO_FOLDER) == []  # all the demo's own: a second demo reuses it


# -- the installed console script: usage errors, --version, every --help ------------------------------------------
HEAVY = ("torch", "torchmetrics", "scipy", "matplotlib", "numpy", "sklearn", "skimage", "fastapi", "uvicorn", "PIL")


def usage_error(res, *needles):
    """Exit 2, stderr = one line naming the problem + the usage line, nothing on stdout, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr and res.stdout == "", res.stderr
    assert len(lines) == 2 and lines[0].startswith("aelab: error: ") and lines[1].startswith("Usage: aelab"), lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines


@pytest.mark.parametrize("args, needles, usage", [
    (["train", "--bogus"], ["No such option", "--bogus"], "Usage: aelab train "),
    (["evaluate"], ["Missing argument"], "Usage: aelab evaluate "),
    (["nosuchcommand"], ["No such command", "nosuchcommand"], "Usage: aelab [OPTIONS] COMMAND"),
    (["sample", "run", "-n", "many", "--out", "s.png"], ["Invalid value for '-n'"], "Usage: aelab sample "),
    (["data", "pack", "folder:x"], ["Missing option", "--out"], "Usage: aelab data pack "),
])
def test_usage_errors_are_one_line_and_the_usage(args, needles, usage):
    lines = usage_error(aelab(*args), *needles)
    assert lines[1].startswith(usage)


def test_version():
    import aelab as package

    res = aelab("--version")
    assert res.returncode == 0 and res.stdout == f"aelab {package.__version__}\n" and res.stderr == ""


def test_bare_command_prints_its_help():
    res = aelab()
    assert res.returncode == 2 and "Usage: aelab" in res.stdout and "Traceback" not in res.stderr


def _command_paths() -> list[list[str]]:
    """Every registered command and group, e.g. ['train'], ['data'], ['data', 'pack']."""
    import typer.main

    from aelab.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_every_command_is_registered():
    paths = {" ".join(p) for p in _command_paths()}
    assert {"", "train", "evaluate", "models", "serve", "data", "data pack", "compare-noise"} <= paths
    assert len(paths) >= 20


@pytest.mark.slow(reason="one process per command (~25); test_bare_command_prints_its_help stays fast")
@pytest.mark.parametrize("path", [" ".join(p) for p in _command_paths()])
def test_help_of_every_command(path):
    res = aelab(*path.split(), "--help")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert f"Usage: aelab {path}".rstrip() in " ".join(res.stdout.split())


# -- start-up: nothing heavy is imported to parse arguments, print help or list the models -------------------------
PROBE = """
import json, sys
{setup}
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("setup", [
    "import aelab",
    "import aelab.cli",
    *(f"from aelab.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass"
      for args in (["--help"], ["train", "--help"], ["--version"], ["models"], ["models", "vae", "--json"],
                   ["train", "--bogus"])),
])
def test_startup_imports_nothing_heavy(setup):
    code = PROBE.format(setup=setup, heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stderr.strip().splitlines()[-1]) == [], setup


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_lazy_package_keeps_its_api():
    """`import aelab` is lazy but `aelab.train` is still the function (the facade that also draws the loss
    curve), even once its module is imported."""
    code = ("import aelab, types; facade = aelab.train; import aelab.train; from aelab.train import train\n"
            "assert aelab.train is facade and facade is not train and facade.__module__ == 'aelab'\n"
            "assert not isinstance(aelab.train, types.ModuleType)\n"
            "assert callable(aelab.load_run) and aelab.rankmetrics.metrics and 'Run' in dir(aelab)\n"
            "assert set(aelab.__all__) == {*aelab._EXPORTS, *aelab._FACADES, '__version__'}\n"
            "assert set(aelab.__all__) <= set(dir(aelab))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    import aelab as package

    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_models_lists_the_registered_families():
    """`aelab models` reads the cards (no torch); every registered family has one card of kind family."""
    from aelab.cards import load_cards
    from aelab.models import families

    assert {c.id for c in load_cards().values() if c.kind == "family"} == set(families())


@pytest.mark.slow(reason="aelab processes that import torch (~2 s of start-up each)")
def test_report_pdf_without_playwright_names_the_extra(cli_run, tmp_path):
    """playwright is the optional `pdf` extra: without it, --pdf fails at once, saying how to install it."""
    code = ("import sys\nsys.modules['playwright'] = None  # as if not installed\n"
            "from aelab.cli import main\nmain(sys.argv[1:])")
    out = tmp_path / "r.html"
    res = subprocess.run([sys.executable, "-c", code, "report", str(cli_run[0]), "--pdf", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    bad(res, "pip install 'aelab[pdf]'")
    assert not out.exists()
