"""--force replaces only aelab's own folders; names and --out paths cannot reach elsewhere (issue #12)."""

import os
from pathlib import Path

import pytest
import yaml
from _cli import aelab as aelab_cli
from _cli import aelab_each, one_line_exit_2
from conftest import tiny_config

import aelab
from aelab import runfolder
from aelab.config import as_config
from aelab.errors import ConfigError, RunError
from aelab.runfolder import RUN, check_replaceable, foreign_files, make_folder, open_folder, replace_folder, state

QUICK = ["--set", "train.max_steps=2", "--set", "train.epochs=1", "-q"]
CLI_PROCESS = pytest.mark.slow(reason="an aelab process that imports torch (~3 s of start-up)")


def config_file(tmp_path: Path, **over) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**over)))
    return path


def fake_run(folder: Path, finished: bool) -> Path:
    """A Run folder's files without training: config, log, and a checkpoint (unfinished) or summary."""
    folder.mkdir()
    (folder / "config.yaml").write_text("name: x\n")
    (folder / "metrics.jsonl").write_text("")
    if finished:
        for name in ("model.safetensors", "summary.json", "anomaly.json", "scores.csv"):
            (folder / name).write_text("{}")
        (folder / "figures").mkdir()
        (folder / "figures" / "loss.png").write_bytes(b"png")
    else:
        (folder / "checkpoint.safetensors").write_bytes(b"st")
        (folder / "checkpoint.json").write_text("{}")
    return folder


# -- state -------------------------------------------------------------------------------------------------------------
def test_state_of_absent_empty_unfinished_finished_and_foreign(tmp_path):
    assert state(tmp_path / "none") == "absent"
    (tmp_path / "empty").mkdir()
    assert state(tmp_path / "empty") == "empty"
    assert state(fake_run(tmp_path / "cut", finished=False)) == "unfinished"
    assert state(fake_run(tmp_path / "done", finished=True)) == "finished"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("data")
    assert state(tmp_path / "mine") == "foreign"
    assert state(tmp_path / "mine" / "data.txt") == "foreign"  # a file is no run folder


# -- what may be replaced ----------------------------------------------------------------------------------------------
def test_foreign_files_are_named_relative_and_searched_into_subfolders(tmp_path):
    run = fake_run(tmp_path / "r", finished=True)
    assert foreign_files(run) == []
    (run / "figures" / "notes.txt").write_text("mine")
    (run / "quality").mkdir()
    (run / "quality" / "features-abc").mkdir()
    (run / "quality" / "features-abc" / "config.yaml").write_text("name: f\n")
    (run / "data").mkdir()
    (run / ".config.yaml.x1.tmp").write_text("")  # a killed atomic write is aelab's
    os.symlink(tmp_path, run / "link")
    assert foreign_files(run) == ["data/", "figures/notes.txt", "link"]
    with pytest.raises(RunError, match=r"it holds data/, figures/notes.txt, link\)") as info:
        replace_folder(run)
    assert "\n" not in str(info.value) and (run / "summary.json").exists()


def test_a_folder_without_a_run_marker_is_foreign_as_a_whole(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "results.json").write_text("{}")  # *.json is a run's, but only in a run folder
    with pytest.raises(RunError, match="not only an aelab run folder .it holds results.json."):
        check_replaceable(folder)


def test_the_message_names_the_first_few_and_counts_the_rest(tmp_path):
    folder = fake_run(tmp_path / "r", finished=True)
    for i in range(5):
        (folder / f"mine{i}.txt").write_text("x")
    with pytest.raises(RunError, match=r"it holds mine0.txt, mine1.txt, mine2.txt and 2 more\)"):
        replace_folder(folder)


def test_replace_removes_a_run_and_accepts_absent_and_empty(tmp_path):
    for finished in (True, False):
        folder = fake_run(tmp_path / f"r{finished}", finished)
        replace_folder(folder, RUN)
        assert not folder.exists()
    replace_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    replace_folder(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_a_file_or_a_link_is_never_replaced(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(RunError, match="is a file, not a folder"):
        replace_folder(tmp_path / "file")
    run = fake_run(tmp_path / "r", finished=True)
    os.symlink(run, tmp_path / "link")
    with pytest.raises(RunError, match="symbolic link"):
        replace_folder(tmp_path / "link")
    assert (tmp_path / "file").read_text() == "data" and (run / "summary.json").exists()


def test_make_folder_creates_the_last_level_only(tmp_path):
    assert make_folder(tmp_path / "a").is_dir()
    make_folder(tmp_path / "a")  # already there: fine
    with pytest.raises(RunError, match=f"its parent folder {tmp_path / 'b'} does not exist"):
        make_folder(tmp_path / "b" / "c")
    assert not (tmp_path / "b").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunError, match=f"{tmp_path / 'f'} is a file"):
        make_folder(tmp_path / "f")
    with pytest.raises(RunError, match="is a file"):
        make_folder(tmp_path / "f" / "c")


def test_open_folder_reuses_its_kind_and_refuses_a_stranger(tmp_path):
    from aelab.sweep import SWEEP_FOLDER

    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text("name: s\n")
    fake_run(sweep / "e1", finished=True)
    assert open_folder(sweep, SWEEP_FOLDER) == sweep
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "table.csv").write_text("mine")  # a sweep's file name, but no sweep here
    with pytest.raises(RunError, match=r"not an aelab sweep folder \(it holds table.csv\)"):
        open_folder(tmp_path / "mine", SWEEP_FOLDER)
    assert (tmp_path / "mine" / "table.csv").read_text() == "mine"


# -- names ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "conv-vae", "e3_lr0.001", "lr1e+06", "A.b-c_d", "..x", "x.."])
def test_good_names(name):
    assert as_config(tiny_config(name=name)).name == name


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", "a\\b", "/abs", "/", "a b", "x\n", "ü"])
def test_bad_names_are_config_errors_naming_the_key_and_value(name):
    with pytest.raises(ConfigError, match=r"config key 'name' = .*: must be one folder name") as info:
        as_config(tiny_config(name=name))
    assert repr(name) in str(info.value)


# -- through the command line ------------------------------------------------------------------------------------------
@CLI_PROCESS
def test_force_replaces_a_finished_run(tmp_path):
    out = fake_run(tmp_path / "done", finished=True)
    res = aelab_cli("train", config_file(tmp_path), *QUICK, "--out", out, "--force")
    assert res.returncode == 0, res.stderr
    assert state(out) == "finished" and not (out / "anomaly.json").exists()  # the old run's files went with it


def test_force_replaces_an_interrupted_run(tmp_path, monkeypatch):
    from aelab.train import Trainer

    save = Trainer._save_checkpoint

    def stop(self):
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        aelab.train(tiny_config(train__max_steps=2), out=tmp_path / "cut")
    monkeypatch.undo()
    assert state(tmp_path / "cut") == "unfinished" and foreign_files(tmp_path / "cut") == []
    with pytest.raises(RunError, match="--resume to continue it, --force to replace it"):
        aelab.train(tiny_config(train__max_steps=2, seed=1), out=tmp_path / "cut")
    run = aelab.train(tiny_config(train__max_steps=2, seed=1), out=tmp_path / "cut", force=True)
    assert state(run.path) == "finished" and run.config.seed == 1


def test_out_naming_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match=f"{tmp_path / 'file'} is a file"):
        aelab.train(tiny_config(train__max_steps=2), out=tmp_path / "file", force=True)
    assert (tmp_path / "file").read_text() == "x"


def test_default_out_still_creates_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    aelab.train(tiny_config(train__max_steps=2))
    assert state(tmp_path / "runs" / "tiny") == "finished"


def test_without_force_a_foreign_folder_is_named_not_a_run(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.txt").write_text("a")
    with pytest.raises(RunError, match="not an aelab run folder"):
        aelab.train(tiny_config(train__max_steps=2), out=out)
    assert [p.name for p in out.iterdir()] == ["a.txt"]


# -- sweep, one-class, demo ---------------------------------------------------------------------------------------
def foreign_folder(parent: Path) -> Path:
    out = parent / "mine"
    out.mkdir(parents=True)
    (out / "mydata.txt").write_text("data")
    return out


def assert_untouched(out: Path) -> None:
    assert [p.name for p in out.iterdir()] == ["mydata.txt"] and (out / "mydata.txt").read_text() == "data"


@pytest.mark.slow(reason="6 aelab processes, two at a time")
def test_the_cli_refuses_to_write_where_it_must_not(tmp_path):
    """Each refusal: exit 2, one line naming the folder, nothing written or deleted."""
    cfg = config_file(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    victim = work / "victim"  # where runs/../victim would land, run from work/
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    nr = tmp_path / "nr"
    nr.mkdir()
    (nr / "mydata.txt").write_bytes(b"data\x00\xff")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"base": tiny_config(train__max_steps=2), "grid": {"train.epochs": [1]}}))
    sweep_out, oneclass_out, demo_out = (foreign_folder(tmp_path / kind) for kind in ("sweep", "oneclass", "demo"))
    results = aelab_each(
        ("train", cfg, *QUICK, "--out", nr, "--force"),
        ("train", cfg, *QUICK, "--set", "name=../victim", "--force"),
        ("train", cfg, *QUICK, "--out", tmp_path / "no" / "run"),
        ("sweep", spec, "--out", sweep_out, "--force", "-q"),
        ("oneclass", cfg, "--out", oneclass_out, "--force", "-q"),
        ("demo", "--quick", "--out", demo_out),
        cwd=work)
    needles = [("--force refuses to replace", "mydata.txt"), ("config key 'name' = '../victim'",),
               (f"its parent folder {tmp_path / 'no'} does not exist",),
               ("not an aelab sweep folder (it holds mydata.txt)",),
               ("not an aelab one-class folder (it holds mydata.txt)",),
               ("not an aelab demo folder (it holds mydata.txt)",)]
    for res, want in zip(results, needles, strict=True):
        one_line_exit_2(res, *want)
    assert sorted(p.name for p in nr.iterdir()) == ["mydata.txt"]
    assert (nr / "mydata.txt").read_bytes() == b"data\x00\xff"
    assert (victim / "keep.txt").read_text() == "keep" and not (work / "runs").exists()
    assert not (tmp_path / "no").exists()
    for out in (sweep_out, oneclass_out, demo_out):
        assert_untouched(out)


def test_a_run_sub_folder_with_a_foreign_file_blocks_the_sweep(tmp_path):
    from aelab.sweep import run_sweep
    from aelab.sweepfile import load_sweep

    out = tmp_path / "sw"
    out.mkdir()
    (out / "sweep.yaml").write_text("name: s\n")
    fake_run(out / "e1", finished=True)
    (out / "e1" / "notes.txt").write_text("mine")
    s = load_sweep({"base": tiny_config(train__max_steps=2), "grid": {"train.epochs": [1]}})
    with pytest.raises(RunError, match=r"it holds e1/notes.txt\)"):
        run_sweep(s, out, force=True)
    assert (out / "e1" / "notes.txt").read_text() == "mine"


def test_constants_are_re_exported_from_run():
    from aelab import run

    assert (run.CONFIG, run.SUMMARY, run.WEIGHTS, run.METRICS) == (
        runfolder.CONFIG, runfolder.SUMMARY, runfolder.WEIGHTS, runfolder.METRICS)
