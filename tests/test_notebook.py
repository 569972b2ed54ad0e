"""Results that show themselves in Jupyter (``aelab.notebook``), the notebook progress bar, ``aelab.show``,
and the example notebooks run top to bottom in a real kernel."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

import aelab
from aelab.errors import AelabError
from aelab.notebook import html, register, shown

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def pngs(markup: str) -> list[tuple[int, int]]:
    """The sizes of the PNGs embedded in ``markup`` (each must decode as a PNG)."""
    found = IMG.findall(markup)
    sizes = []
    for data in found:
        raw = base64.b64decode(data)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append(Image.open(io.BytesIO(raw)).size)
    return sizes


def g4(x: float) -> str:
    return f"{x:.4g}"


# -- every result type shows its figure and its numbers ----------------------------------------------------------------

def test_run_card(tiny_run):
    s = tiny_run.summary
    markup = html(tiny_run)
    assert len(pngs(markup)) == 2  # the loss curve and the reconstructions
    assert 'class="aelab-run"' in markup and tiny_run.name in markup and tiny_run.model.family in markup
    assert f"{s['parameters']:,}" in markup
    assert f"PSNR {s['psnr']:.2f} dB" in markup and f"SSIM {s['ssim']:.4f}" in markup
    assert f"MSE {s['mse']:.5f}" in markup
    assert " × ".join(map(str, tiny_run.image_shape)) + " → " + " × ".join(map(str, tiny_run.latent_shape)) in markup
    assert "https://" in markup  # the family's model card links its paper
    assert html(tiny_run) is markup  # drawn once per Run


@pytest.mark.slow
def test_edit_traverse_interpolate(tiny_run):
    face, other = tiny_run.val_data().subset(np.arange(1)), tiny_run.val_data().subset(np.arange(1, 2))
    edited = aelab.edit(tiny_run, face, ["0*=2", "1+=1"])
    markup = html(edited)
    assert len(pngs(markup)) == 1
    for e in edited.edited:
        assert e.edit in markup and g4(e.psnr) in markup and g4(e.mean_abs_change) in markup
    swept = aelab.traverse(tiny_run, face, top=3, factors=True)
    markup = html(swept)
    assert len(pngs(markup)) == 1
    for d, effect, f in zip(swept.dims, swept.effect, swept.factors, strict=True):
        assert f"<td style=\"padding:2px 8px;border-bottom:1px solid #eaeef2;text-align:right\">{d}</td>" in markup
        assert g4(float(effect)) in markup and f["factor"] in markup
    path = aelab.interpolate(tiny_run, face, other, steps=5)
    markup = html(path)
    assert len(pngs(markup)) == 1 and "5 steps" in markup
    assert all(g4(float(c)) in markup for c in path.step_change)


@pytest.mark.slow
def test_samples_augment_and_the_same_noise(tiny_run, tiny_vae_run):
    samples = aelab.sample(tiny_run, 6, seed=3)
    markup = html(samples)
    assert len(pngs(markup)) == 1 and "6 samples" in markup and samples.prior.describe() in markup
    aug = aelab.augment(tiny_run, "1-3,7", variants=2, sigma=0.5, seed=1)
    markup = html(aug)
    assert len(pngs(markup)) == 1 and "1, 2, 3, 7" in markup and "4 × 2 variants = 8" in markup
    both = aelab.compare_noise(tiny_run, tiny_vae_run, tiny_run.splits.full.by_ids([0, 5]), variants=2)
    a, b, numbers = both  # still unpacks as before
    assert a is both.a and numbers is both.numbers
    markup = html(both)
    assert len(pngs(markup)) == 1
    for key in ("a", "b"):
        assert g4(numbers[key]["psnr"]) in markup and g4(numbers[key]["diversity"]) in markup
    assert [r["model"] for r in both.table] == ["a", "b"] and both.table[1]["code_size"] == tiny_vae_run.latent_size


@pytest.mark.slow
def test_anomaly_scores_show_roc_auc_from_an_independent_computation(tiny_run, tmp_path):
    from sklearn.metrics import roc_auc_score

    res = aelab.anomaly.analyse(tiny_run, "builtin:faces?n=80&size=16&seed=2&anomaly_fraction=0.25",
                                csv=tmp_path / "scores.csv")
    markup = html(res)
    assert len(pngs(markup)) == 2  # histogram and ROC
    auc = roc_auc_score(res.anomalous, res.scores)
    assert res.metrics["roc_auc"] == pytest.approx(auc)
    assert f">{g4(auc)}<" in markup and str(tmp_path / "scores.csv") in markup
    rows = res.table
    assert len(rows) == res.n and rows[0] == {"ID": int(res.ids[0]), "score": float(res.scores[0]),
                                              "anomalous": bool(res.anomalous[0])}
    markup = html(aelab.anomaly.analyse(tiny_run, np.asarray(tiny_run.val_data().images)))
    assert len(pngs(markup)) == 1 and "no labels" in markup  # no ROC without labels
    markup = html(aelab.anomaly.analyse(tiny_run, tiny_run.val_data()))  # labelled, all normal
    assert len(pngs(markup)) == 1 and "only normal images" in markup


@pytest.mark.slow
def test_sweep_table(tmp_path):
    sweep = {"name": "nb", "base": tiny_config(), "grid": {"train.epochs": [1, 2]}}
    result = aelab.run_sweep(sweep, tmp_path / "sweep")
    markup = html(result)
    assert len(pngs(markup)) >= 1  # losses.png, embedded from the file the sweep wrote
    assert len(result.table) == 2 and result.table is result.rows
    for row in result.rows:
        assert g4(row["val_psnr"]) in markup
    assert "e1: trained" in markup


@pytest.mark.slow
def test_oneclass_table(tmp_path):
    result = aelab.oneclass(tiny_config(), "builtin:faces?n=160&size=16&anomaly_fraction=0.25", normal=0,
                            out=tmp_path / "oc")
    assert isinstance(result, dict) and json.loads((tmp_path / "oc" / "oneclass.json").read_text()) == result
    markup = html(result)
    assert len(pngs(markup)) == 1
    assert f"{result['mean_roc_auc']:.4f}" in markup and g4(result.table[0]["roc_auc"]) in markup


def test_model_card_links_its_paper():
    card = aelab.cards.card("vae")
    markup = html(card)
    assert f'href="{card.paper["url"]}"' in markup and card.title in markup


def test_no_display_for_other_objects():
    with pytest.raises(AelabError, match="no display for a list"):
        html([1, 2])


def test_to_pandas_without_pandas_says_how_to_install_it(tiny_run, monkeypatch):
    res = aelab.anomaly.analyse(tiny_run, tiny_run.val_data())
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(AelabError, match="pip install pandas"):
        res.to_pandas()


def test_to_pandas_with_pandas(tiny_run):
    pytest.importorskip("pandas")
    res = aelab.anomaly.analyse(tiny_run, tiny_run.val_data())
    frame = res.to_pandas()
    assert list(frame.columns) == ["ID", "score"] and np.allclose(frame["score"], res.scores)


# -- registration in IPython, show, start-up ----------------------------------------------------------------------

def test_formatters_registered_in_an_ipython_shell(tiny_run):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert register(shell)
    data, _ = shell.display_formatter.format(tiny_run)
    assert 'class="aelab-run"' in data["text/html"] and data["text/plain"] == repr(tiny_run)
    data, _ = shell.display_formatter.format(aelab.sample(tiny_run, 4))
    assert "aelab-samples" in data["text/html"]


def test_an_aelab_error_in_ipython_is_one_line(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    register(shell)
    result = shell.run_cell("import aelab\naelab.load_run('/no/such/run')")
    assert isinstance(result.error_in_exec, AelabError)  # the cell still fails
    out = capsys.readouterr().out
    assert "RunError: run folder not found: /no/such/run" in out and "Traceback" not in out


def test_show(tiny_run, capsys, tmp_path):
    figure = tiny_run.path / "figures" / "loss.png"
    assert figure.exists()
    assert len(pngs(shown(figure)._repr_html_())) == 1
    assert 'class="aelab-run"' in shown(tiny_run.path)._repr_html_()
    assert len(pngs(shown(tiny_run.path / "figures")._repr_html_())) >= 1
    aelab.show(figure)  # outside IPython: prints what it would show
    assert capsys.readouterr().out.strip() == str(figure)
    with pytest.raises(AelabError, match="no such file"):
        shown(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AelabError, match="not a figure"):
        shown(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AelabError, match="no figures"):
        shown(tmp_path / "empty")


PROBE = """
import json, sys
{setup}
print(json.dumps(sorted(m for m in ("IPython", "matplotlib", "torch", "aelab.notebook") if m in sys.modules)))
"""


@pytest.mark.parametrize(("setup", "expected"), [
    ("from aelab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass", []),
    ("import aelab", []),
    # inside IPython the formatters are registered by type name: nothing heavy is imported for it
    ("from IPython.core.interactiveshell import InteractiveShell\nInteractiveShell.instance()\nimport aelab",
     ["IPython", "aelab.notebook"]),
])
def test_startup_imports(setup, expected):
    res = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == expected


# -- in a real kernel ------------------------------------------------------------------------------------------

def execute(cells: list[str], cwd: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.slow
def test_training_in_a_kernel_shows_an_updating_bar_then_the_run_card(tmp_path):
    config = json.dumps(tiny_config())
    nb = execute([f"import aelab\nrun = aelab.train({config}, 'shown')",
                  f"quiet = aelab.train({config}, 'quiet', progress=False)"], tmp_path)
    shown_outputs, quiet_outputs = nb.cells[0].outputs, nb.cells[1].outputs
    assert [o.output_type for o in shown_outputs] == ["display_data", "display_data"]  # bar, card; nothing on stderr
    bar, card = (o.data["text/html"] for o in shown_outputs)
    assert "aelab-progress" in bar and "8/8" in bar  # updated in place to the last step
    assert bar.count("epoch 1/2  step 4") == 1 and "epoch 2/2  step 8" in bar  # the epoch lines, once each
    assert "aelab-run" in card and len(pngs(card)) == 2
    assert quiet_outputs == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(notebook):
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "QUICK" in code[0].source  # the small settings are named in the first cell


def test_both_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} == {"hw8_latent_study.ipynb", "hw2_conv_ae_vae.ipynb"}


@pytest.mark.slow
def test_the_example_notebooks_run_top_to_bottom(tmp_path):
    import nbformat

    res = subprocess.run([sys.executable, str(EXAMPLES / "run_notebooks.py"), "--quick", "--out", str(tmp_path / "out"),
                          "--cwd", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for notebook in NOTEBOOKS:
        nb = nbformat.read(tmp_path / "out" / notebook.name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        markup = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        assert markup.count('class="aelab-run"') >= 2 and len(pngs(markup)) >= 8
    hw8, hw2 = tmp_path / "runs" / "hw8-notebook", tmp_path / "runs" / "hw2-notebook"
    assert (hw8 / "scores.csv").read_text().startswith("ID,score\n")
    data = np.load(hw2 / "hw2_data.npy")
    assert data.shape == (1500, 3, 50, 50) and data.dtype == np.float32 and data.min() >= 0 and data.max() <= 1
    aug, labels = np.load(hw2 / "aug" / "aug_data.npy"), np.load(hw2 / "aug" / "aug_label.npy")
    assert len(aug) == len(labels) == 20 * 5
    assert aug.shape == (100, 3, 50, 50) and aug.dtype == np.float32  # the data's own layout and dtype
    ids = np.load(hw2 / "aug" / "aug_ids.npy")[::5]  # the homework's ids, counted from 1
    assert np.array_equal(ids, [*range(1, 6), *range(226, 231), *range(841, 846), *range(1471, 1476)])
    assert np.array_equal(labels[::5], np.load(hw2 / "hw2_labels.npy")[ids - 1])


def test_cli_and_notebook_write_a_number_the_same_way():
    from aelab.cli.common import fmt
    from aelab.notebook import number

    cases = {None: "-", True: "True", 1234567: "1,234,567", 0.0123456: "0.01235", 123456.7: "123,457",
             float("nan"): "-", "a<b": "a<b"}
    for value, text in cases.items():
        assert fmt(value) == text
        assert number(value) == text.replace("<", "&lt;")  # the notebook's cell is HTML
    assert number([64, 64, 3]) == "64 × 64 × 3"
    from aelab.report.html import fmt as report_number  # the report: the same numbers, its own words around them

    for value, text in ((1234567, "1,234,567"), (0.0123456, "0.01235"), (123456.7, "123,457"), (float("nan"), "-")):
        assert report_number(value) == text
    assert report_number(0.0123456, digits=2) == "0.012"
    assert (report_number(None), report_number(True), report_number([64, 64, 3])) == ("–", "yes", "64×64×3")
