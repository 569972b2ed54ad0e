"""Model cards and the HTML report: sections follow the data, the page is self-contained, and it renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config
from typer.testing import CliRunner

import aelab
import aelab.cli  # noqa: F401  (registers the commands)
from aelab.cards import FIELDS, PAPER_FIELDS, card, cards_for, check_cards, load_cards
from aelab.cli.common import app
from aelab.errors import AelabError, RunError
from aelab.models import families
from aelab.report import build_report
from aelab.report.browser import find_chromium

ARTIFACTS = Path(__file__).parent / "artifacts"


# -- model cards ---------------------------------------------------------------------------------------------------
def test_every_registered_family_has_a_complete_card():
    cards = load_cards()
    assert check_cards() == []
    for family in families():
        c = cards[family]
        assert c.kind == "family"
        for key in FIELDS:
            assert getattr(c, key), f"{family}: {key} is empty"
        for key in PAPER_FIELDS:
            assert c.paper[key], f"{family}: paper.{key} is empty"
        assert c.paper["url"].startswith("https://")
        assert len(re.findall(r"[.!?](\s|$)", c.what)) >= 3, f"{family}: 'what' should be about three sentences"
    assert {"denoising", "beta_vae"} <= set(cards)


def test_the_reference_papers_named_in_the_issue():
    assert card("vae").paper["authors"].endswith("Welling") and card("vae").paper["year"] == 2013
    assert card("vae").paper["url"] == "https://arxiv.org/abs/1312.6114"
    assert card("denoising").paper["authors"].startswith("P. Vincent") and card("denoising").paper["year"] == 2008
    assert card("β-VAE") is card("beta-vae") is card("beta_vae")
    assert card("beta_vae").paper["authors"].startswith("I. Higgins") and card("beta_vae").paper["year"] == 2017
    assert card("beta_vae").short_ref == "Higgins et al. 2017" and card("vae").short_ref == "Kingma & Welling 2013"


def test_cards_for_a_config_follow_its_settings():
    ids = lambda over: [c.id for c in cards_for(aelab.Config.model_validate(tiny_config(**over)))]  # noqa: E731
    assert ids({}) == ["fcn"]
    assert ids({"model": {"type": "vae", "beta": 4.0}}) == ["vae", "beta_vae"]
    assert ids({"model": {"type": "vae", "beta": 1.0}}) == ["vae"]
    assert ids({"model": {"type": "conv"}, "train": {"input_noise": 0.2}}) == ["conv", "denoising"]


def test_unknown_card_names_the_closest():
    with pytest.raises(AelabError, match=r"no model card 'vea' \(did you mean 'vae'\?\)"):
        card("vea")


def test_cli_models_lists_and_shows_cards():
    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    listed = json.loads(res.output)
    assert [c["id"] for c in listed][0] == "fcn" and set(families()) <= {c["id"] for c in listed}
    res = CliRunner().invoke(app, ["models", "vae"])
    assert res.exit_code == 0
    assert "Auto-Encoding Variational Bayes" in res.output and "https://arxiv.org/abs/1312.6114" in res.output
    for label in ("What it is", "Loss", "Advantage over the vanilla AE", "Disadvantage", "Reference"):
        assert label in res.output
    proc = subprocess.run([sys.executable, "-m", "aelab", "models", "vea"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("aelab: error: no model card 'vea'")
    assert len(proc.stderr.strip().splitlines()) == 1


# -- the report ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    """A plain fcn autoencoder and a conv VAE, trained briefly on 16×16 faces."""
    root = tmp_path_factory.mktemp("report-runs")
    ae = aelab.train(tiny_config(name="ae"), out=root / "ae")
    vae = aelab.train(tiny_config(name="vae", model={"type": "vae", "backbone": "conv", "channels": [8, 16],
                                                      "latent_dim": 6}), out=root / "vae")
    return ae, vae


@pytest.fixture(scope="session")
def built(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report([pair[0].path, pair[1].path], out), out


def _ids(page: str) -> list[str]:
    return re.findall(r'<section class="[^"]*" id="([^"]+)"', page)


def test_report_sections_follow_the_runs(built, pair):
    result, out = built
    ae, vae = pair
    sections = result["sections"]
    assert sections[str(ae.path)] == ["metrics", "architecture", "loss", "reconstructions", "latent", "card"]
    assert sections[str(vae.path)] == ["metrics", "architecture", "loss", "reconstructions", "latent", "generation",
                                       "card"]
    page = out.read_text()
    ids = _ids(page)
    assert ids.index("overview") < ids.index("discussion") < ids.index(next(i for i in ids if i.endswith("-ae")))
    # figures were drawn into the runs' own folders, and reused next time
    for name in ("architecture.png", "reconstructions.png", "edits.png", "traversal.png"):
        assert (ae.path / "figures" / name).is_file()
    assert (vae.path / "figures" / "samples.png").is_file() and (vae.path / "figures" / "noise_compare.png").is_file()
    assert not (ae.path / "figures" / "samples.png").exists()  # samples are a VAE section
    assert result["warnings"] == []
    # numbers in the page are the runs' summaries
    assert f"{vae.summary['psnr']:.2f} dB" in page and f"{ae.summary['parameters']:,}" in page
    assert "Auto-Encoding Variational Bayes" in page and "Hinton" in page
    assert "Anomaly detection" not in page


def test_report_is_self_contained(built):
    _, out = built
    page = out.read_text()
    srcs = re.findall(r'<img src="([^"]{0,40})', page)
    assert srcs and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in srcs)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert external and all(re.search(r'<a href="' + re.escape(u), page) for u in external)  # links, never loads
    assert page.count("<img ") == 12


def test_sections_without_data_are_left_out(pair, tmp_path):
    ae = pair[0]
    bare = tmp_path / "bare"
    shutil.copytree(ae.path, bare)
    shutil.rmtree(bare / "figures")
    result = build_report([bare], tmp_path / "r.html", generate=False)
    assert result["sections"][str(bare)] == ["metrics", "architecture", "card"]  # the layer table needs no figure
    page = (tmp_path / "r.html").read_text()
    assert "<img " not in page and "<h3>Loss</h3>" not in page and "Reconstructions" not in page
    assert "overview" not in _ids(page)  # one run: nothing to compare


def test_anomaly_and_quality_sections_appear_with_their_data(pair, tmp_path):
    vae = pair[1]
    run = tmp_path / "scored"
    shutil.copytree(vae.path, run)
    (run / "quality.json").write_text(json.dumps({"n": 40, "generated_from": "the VAE prior N(0, I)",
                                                  "fd_generated": 12.3456, "fd_reconstructed": 4.5,
                                                  "fd_train_vs_held_out": 1.25}))
    from aelab import anomaly
    loaded = aelab.load_run(run)
    from aelab.figures.anomaly import draw_maps

    res = anomaly.analyse(loaded, "builtin:faces?n=48&size=16&anomaly_fraction=0.25")
    res.figures = draw_maps(res, anomaly.heatmaps(loaded, res), run / "figures" / "anomaly")
    anomaly.record(loaded, res)
    assert (run / "anomaly.json").is_file()
    record = json.loads((run / "anomaly.json").read_text())
    result = build_report([run], tmp_path / "r.html")
    assert "anomaly" in result["sections"][str(run)] and "generation" in result["sections"][str(run)]
    page = (tmp_path / "r.html").read_text()
    assert "12.35" in page and "the VAE prior N(0, I)" in page  # quality numbers
    assert f"{record['metrics']['roc_auc']:.4g}" in page
    assert page.count('alt="ROC curve"') == 1 and 'alt="the highest-scoring images' in page


def test_sweep_report_puts_the_comparison_first(tmp_path):
    from aelab.sweep import run_sweep

    base = tiny_config(train={"epochs": 1, "batch_size": 32, "lr": 0.003})
    run_sweep({"name": "s", "base": base, "grid": {"model.type": ["fcn", "vae"]}}, tmp_path / "sw")
    shutil.rmtree(tmp_path / "sw" / "vae" / "figures")
    (tmp_path / "sw" / "vae" / "summary.json").unlink()  # an unfinished run
    result = build_report([tmp_path / "sw"], tmp_path / "r.html", generate=False)
    page = (tmp_path / "r.html").read_text()
    ids = _ids(page)
    assert ids[0].startswith("sweep-") and "overview" not in ids
    assert result["runs"] == [str(tmp_path / "sw" / "fcn")]
    assert "Not finished, left out: vae" in page
    assert page.index('alt="training loss of every run') < page.index("<h3>Metrics</h3>")
    table = page[page.index("<table"):page.index("</table>")]
    assert table.count("<tr>") == 2 and "val PSNR (dB)" in table


def test_bad_targets_are_named(tmp_path, pair):
    with pytest.raises(AelabError, match="not a run folder .* or a sweep folder"):
        build_report([tmp_path], tmp_path / "r.html")
    half = tmp_path / "half"
    shutil.copytree(pair[0].path, half)
    (half / "summary.json").unlink()
    with pytest.raises(RunError, match="not a finished run"):
        build_report([half], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    proc = subprocess.run([sys.executable, "-m", "aelab", "report", str(tmp_path), "--out", str(tmp_path / "x.html")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_cli_report_json(pair, tmp_path):
    res = CliRunner().invoke(app, ["report", str(pair[0].path), "--out", str(tmp_path / "r.html"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["report"] == str(tmp_path / "r.html") and data["images"] >= 4 and data["runs"] == [str(pair[0].path)]


def test_pdf_without_a_browser_says_how_to_install_one(pair, tmp_path, monkeypatch):
    import aelab.report.browser as browser

    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "no-browsers"))
    with pytest.raises(AelabError, match="apt-get install chromium"):
        build_report([pair[0].path], tmp_path / "r.html", pdf=True)


# -- in a real browser -------------------------------------------------------------------------------------------------
needs_browser = pytest.mark.skipif(find_chromium() is None,
                                   reason="no headless chromium here (CI installs Debian's: apt-get install chromium)")


@pytest.mark.browser
@needs_browser
@pytest.mark.parametrize("width", [1200, 420])
def test_report_renders_in_chromium(built, width):
    from aelab.report.browser import inspect

    _, out = built
    ARTIFACTS.mkdir(exist_ok=True)
    seen = inspect(out, width=width, screenshot=ARTIFACTS / f"report-{width}.png",
                   full_page=ARTIFACTS / f"report-{width}-full.png")
    assert seen["images"] == 12 and seen["broken"] == []
    assert seen["scroll_width"] <= seen["inner_width"], seen["too_wide"]
    assert seen["too_wide"] == []
    assert seen["network_requests"] == []
    assert seen["parts"].count("Model card") == 2 and "Generated samples" in seen["parts"]


@pytest.mark.browser
@needs_browser
def test_report_prints_to_pdf(built, tmp_path):
    from aelab.report.browser import render_pdf

    _, out = built
    pdf = render_pdf(out, tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 50_000
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 3


def test_demo_section_writes_the_report_over_every_demo_run(pair, tmp_path):
    from types import SimpleNamespace

    from aelab.demo import SECTIONS
    from aelab.report.build import demo_section

    assert SECTIONS[-1] is demo_section  # the report is drawn last, over what the other sections drew
    for run, name in ((pair[0], "ae"), (pair[1], "vae"), (pair[0], "anomaly")):
        shutil.copytree(run.path, tmp_path / name)
    demo = SimpleNamespace(out=tmp_path, result={},
                           runs={"ae": aelab.load_run(tmp_path / "ae"), "vae": aelab.load_run(tmp_path / "vae")})
    lines = demo_section(demo)
    assert lines == [f"report: {tmp_path / 'report.html'}"]
    assert list(demo.result["report"]["sections"]) == [str(tmp_path / n) for n in ("ae", "vae", "anomaly")]
    assert "aelab demo: ae (fcn) vs vae (vae) on builtin:faces" in (tmp_path / "report.html").read_text()
