"""Model cards, ``aelab analyse`` and the HTML report: analyse records what it draws, the report only reads
what was recorded, the page is self-contained, and it renders."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config
from typer.testing import CliRunner

import aelab
import aelab.cli  # noqa: F401  (registers the commands)
from aelab import manifest
from aelab.analyse import analyse
from aelab.cards import FIELDS, PAPER_FIELDS, card, cards_for, check_cards, load_cards
from aelab.cli.common import app
from aelab.errors import AelabError, RunError
from aelab.models import families
from aelab.report import build_report
from aelab.report.browser import find_chromium
from aelab.report.html import esc

ARTIFACTS = Path(__file__).parent / "artifacts"
train_run = aelab.train  # the facade: trains, then draws and records the loss curve


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
def pair(tiny_run, tiny_vae_run):
    """A plain fcn autoencoder and a conv VAE, trained briefly on 16×16 faces (nothing analysed yet:
    ``trained`` goes through the facade, which draws only the loss curve): conftest's shared pair,
    which other files only read."""
    return tiny_run, tiny_vae_run


ANALYSED = pytest.mark.slow(reason="needs both runs analysed: every analysis, the quality feature net included (~6 s)")


@pytest.fixture(scope="session")
def analysed(pair, tmp_path_factory):
    """Copies of the pair, analysed together (so the VAE gets its same-noise partner)."""
    root = tmp_path_factory.mktemp("analysed")
    for run in pair:
        shutil.copytree(run.path, root / run.path.name)
    result = analyse([root / "ae", root / "vae"])
    return aelab.load_run(root / "ae"), aelab.load_run(root / "vae"), result


@pytest.fixture(scope="session")
def built(analysed, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report([analysed[0].path, analysed[1].path], out), out


def _ids(page: str) -> list[str]:
    return re.findall(r'<section class="[^"]*" id="([^"]+)"', page)


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


def _embedded(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'<img src="data:image/[a-z+]+;base64,([^"]+)"', page)]


@ANALYSED
def test_analyse_records_every_figure_it_writes(analysed):
    ae, vae, result = analysed
    assert result["runs"][str(vae.path)]["recorded"] == ["architecture", "reconstructions", "edits", "traversal",
                                                         "interpolation", "samples", "noise"]
    assert result["runs"][str(vae.path)]["kept"] == ["loss"]  # recorded by the aelab.train facade, same weights
    assert result["runs"][str(ae.path)]["not_applicable"] == ["samples", "noise", "quality", "anomaly"]
    for run in (ae, vae):
        records = manifest.read(run.path)
        written = {p.relative_to(run.path).as_posix() for p in (run.path / "figures").rglob("*.png")}
        recorded = {rel for r in records.values() for rel in r["figures"].values()}
        assert recorded == written  # every figure analyse drew is recorded, and nothing else is
        assert all((run.path / rel).is_file() for rel in recorded)
        assert all(r["weights"] == manifest.weights_stamp(run.path) for r in records.values())
        assert manifest.entry(run.path, "loss")["numbers"]["epochs"] == run.summary["epochs"]
    assert manifest.entry(vae.path, "noise")["params"]["partner"] == str(ae.path)
    layers = manifest.entry(ae.path, "architecture")["numbers"]["layers"]
    assert layers and sum(r["parameters"] for r in layers) == ae.summary["parameters"]


@ANALYSED
def test_analyse_again_keeps_what_is_recorded_and_only_limits(analysed):
    ae = analysed[0]
    before = _listing(ae.path)
    again = analyse([ae.path])["runs"][str(ae.path)]
    assert again["recorded"] == [] and "edits" in again["kept"]
    assert _listing(ae.path) == before
    redo = analyse([ae.path], ["loss"], redo=True)["runs"][str(ae.path)]
    assert redo["recorded"] == ["loss"] and redo["kept"] == []
    with pytest.raises(AelabError, match="no analysis 'los' \\(did you mean 'loss'\\?\\)"):
        analyse([ae.path], ["los"])


@ANALYSED
def test_report_sections_follow_the_runs(built, analysed):
    result, out = built
    ae, vae, _ = analysed
    sections = result["sections"]
    assert sections[str(ae.path)] == ["metrics", "architecture", "loss", "reconstructions", "latent", "card"]
    assert sections[str(vae.path)] == ["metrics", "architecture", "loss", "reconstructions", "latent", "generation",
                                       "card"]
    assert result["hints"] == [] and result["analyse"] is None
    page = out.read_text()
    ids = _ids(page)
    assert ids.index("overview") < ids.index("discussion") < ids.index(next(i for i in ids if i.endswith("-ae")))
    assert "aelab analyse" not in page
    assert result["warnings"] == []
    # numbers in the page are the runs' summaries
    assert f"{vae.summary['psnr']:.2f} dB" in page and f"{ae.summary['parameters']:,}" in page
    assert "Auto-Encoding Variational Bayes" in page and "Hinton" in page
    assert "Anomaly detection" not in page


@ANALYSED
def test_report_embeds_exactly_the_manifests_figures(built, analysed):
    _, out = built
    page = out.read_text()
    recorded = [run.path / rel for run in analysed[:2] for r in manifest.read(run.path).values()
                for rel in r["figures"].values()]
    assert len(_embedded(page)) == len(recorded) == 14
    # each embedded image is a recorded file (PNGs go in as they are while small)
    files = {p.read_bytes() for p in recorded}
    assert all(img in files for img in _embedded(page) if img[:4] == b"\x89PNG")


@ANALYSED
def test_report_is_self_contained(built):
    _, out = built
    page = out.read_text()
    srcs = re.findall(r'<img src="([^"]{0,40})', page)
    assert srcs and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in srcs)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert external and all(re.search(r'<a href="' + re.escape(u), page) for u in external)  # links, never loads


@pytest.mark.slow(reason="an `aelab report` process on a run: ~2 s of start-up")
def test_report_of_an_unanalysed_run_writes_nothing_and_says_what_to_run(pair, tmp_path):
    ae = pair[0]
    bare = tmp_path / "bare run"  # a space: the command quotes the path for the shell
    shutil.copytree(ae.path, bare)
    shutil.rmtree(bare / "figures")
    (bare / "analyses.json").unlink()
    before = _listing(bare)
    result = build_report([bare], tmp_path / "r.html")
    assert _listing(bare) == before  # nothing drawn, nothing recorded, nothing touched
    assert result["sections"][str(bare)] == ["metrics", "loss", "card"]  # the loss numbers come from metrics.jsonl
    command = f"aelab analyse {shlex.quote(str(bare))}"
    assert result["analyse"] == command and result["hints"] == [f"{bare}: not analysed yet: architecture, loss, "
                                                                  f"reconstructions, edits, traversal, "
                                                                  f"interpolation; run `{command}`"]
    page = (tmp_path / "r.html").read_text()
    assert f"<code>{esc(command)}</code>" in page and "not analysed yet: architecture, loss" in page
    assert "<img " not in page and "Reconstructions" not in page and "<summary>Per epoch</summary>" in page
    assert "overview" not in _ids(page)  # one run: nothing to compare
    proc = subprocess.run([sys.executable, "-m", "aelab", "report", str(bare), "--out", str(tmp_path / "c.html")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"aelab: note: 1 of the folders lack analyses the report shows; run "
                                                f"`{command}`, then the report again"]
    assert _listing(bare) == before


def test_a_freshly_trained_run_has_its_loss_figure_recorded(pair):
    ae = pair[0]
    assert (ae.path / "figures" / "loss.png").stat().st_size > 1000  # drawn by the aelab.train facade
    assert list(manifest.read(ae.path)) == ["loss"]


@pytest.mark.slow(reason="analyses and renders a run (~0.4 s)")
def test_a_run_given_by_a_relative_path_records_paths_inside_it(pair, tmp_path, monkeypatch):
    shutil.copytree(pair[0].path, tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    assert analyse(["rel"], ["loss", "architecture"], redo=True)["runs"]["rel"]["recorded"] == ["architecture", "loss"]
    assert manifest.entry("rel", "architecture")["figures"] == {"architecture": "figures/architecture.png"}
    with pytest.raises(RunError, match="must be inside the run folder"):
        manifest.record("rel", "x", figures={"x": pair[0].path / "figures" / "loss.png"})


@ANALYSED
def test_a_record_for_other_weights_is_flagged(analysed, tmp_path):
    run = tmp_path / "changed"
    shutil.copytree(analysed[0].path, run)
    data = json.loads((run / "analyses.json").read_text())
    data["loss"]["weights"] = {"bytes": 1, "sha256": "0" * 64}
    (run / "analyses.json").write_text(json.dumps(data))
    result = build_report([run], tmp_path / "r.html")
    assert result["analyse"] == f"aelab analyse {run} --redo"
    assert "recorded for other weights: loss" in (tmp_path / "r.html").read_text()
    assert analyse([run])["runs"][str(run)]["recorded"] == ["loss"]  # not current: analysed again


@ANALYSED
def test_anomaly_and_quality_sections_appear_with_their_data(analysed, tmp_path):
    vae = analysed[1]
    run = tmp_path / "scored"
    shutil.copytree(vae.path, run)
    (run / "quality.json").write_text(json.dumps({"n": 40, "generated_from": "the VAE prior N(0, I)",
                                                  "fd_generated": 12.3456, "fd_reconstructed": 4.5,
                                                  "fd_train_vs_held_out": 1.25}))
    from aelab import anomaly
    from aelab.errormaps import heatmaps
    loaded = aelab.load_run(run)
    from aelab.figures.anomaly import draw_maps

    res = anomaly.analyse(loaded, "builtin:faces?n=48&size=16&anomaly_fraction=0.25")
    res.figures = draw_maps(res, heatmaps(loaded, res), run / "figures" / "anomaly")
    anomaly.record(loaded, res)
    assert (run / "anomaly.json").is_file()
    record = json.loads((run / "anomaly.json").read_text())
    assert build_report([run], tmp_path / "before.html")["sections"][str(run)].count("anomaly") == 0  # not recorded
    done = analyse([run])["runs"][str(run)]
    assert done["recorded"] == ["quality", "anomaly"]
    assert set(manifest.entry(run, "anomaly")["figures"]) == set(record["figures"])
    result = build_report([run], tmp_path / "r.html")
    assert "anomaly" in result["sections"][str(run)] and "generation" in result["sections"][str(run)]
    page = (tmp_path / "r.html").read_text()
    assert "12.35" in page and "the VAE prior N(0, I)" in page  # quality numbers
    assert f"{record['metrics']['roc_auc']:.4g}" in page
    assert page.count('alt="ROC curve"') == 1 and 'alt="the highest-scoring images' in page


@pytest.mark.slow(reason="trains a run of its own and analyses it")
def test_anomaly_is_scored_where_the_validation_split_is_labelled(tmp_path):
    run = train_run(tiny_config(name="labelled", data={"source": "builtin:faces?n=160&size=16&anomaly_fraction=0.2",
                                                       "val_fraction": 0.25}), out=tmp_path / "labelled")
    done = analyse([run.path], ["anomaly"])["runs"][str(run.path)]
    assert done["recorded"] == ["anomaly"]
    rec = manifest.entry(run.path, "anomaly")
    assert rec["numbers"]["metrics"]["n"] == run.summary["n_val"] and "roc" in rec["figures"]
    assert not (run.path / "anomaly.json").exists()  # the record is the manifest's


@pytest.mark.slow(reason="trains a sweep of its own and analyses it")
def test_sweep_report_puts_the_comparison_first(tmp_path):
    from aelab.sweep import run_sweep

    base = tiny_config(train={"epochs": 1, "batch_size": 32, "lr": 0.003})
    run_sweep({"name": "s", "base": base, "grid": {"model.type": ["fcn", "vae"]}}, tmp_path / "sw")
    (tmp_path / "sw" / "vae" / "summary.json").unlink()  # an unfinished run
    result = build_report([tmp_path / "sw"], tmp_path / "r.html")
    assert result["analyse"] == f"aelab analyse {tmp_path / 'sw'} {tmp_path / 'sw' / 'fcn'}"
    assert "aelab analyse" in (tmp_path / "r.html").read_text()
    done = analyse([tmp_path / "sw"])
    assert done["sweeps"] == {str(tmp_path / "sw"): {"losses": str(tmp_path / "sw" / "losses.png")}}
    assert list(done["runs"]) == [str(tmp_path / "sw" / "fcn")]
    result = build_report([tmp_path / "sw"], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    ids = _ids(page)
    assert ids[0].startswith("sweep-") and "overview" not in ids
    assert result["runs"] == [str(tmp_path / "sw" / "fcn")] and result["analyse"] is None
    assert "Not finished, left out: vae" in page
    assert page.index('alt="training curve of every run') < page.index("<h3>Metrics</h3>")
    table = page[page.index("<table"):page.index("</table>")]
    assert table.count("<tr>") == 2 and "val PSNR (dB)" in table


@pytest.mark.slow
def test_cli_analyse_json(pair, tmp_path):
    from _cli import aelab as cli

    run = tmp_path / "run"
    shutil.copytree(pair[0].path, run)
    res = cli("analyse", run, "--only", "architecture,reconstructions", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["runs"][str(run)]["recorded"] == ["architecture", "reconstructions"]
    assert set(manifest.read(run)) == {"loss", "architecture", "reconstructions"}
    res = cli("analyse", run, "--only", "bogus")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "aelab: error: no analysis 'bogus'; analyses: architecture, loss, reconstructions, edits, traversal, "
        "interpolation, samples, noise, quality, anomaly"]


@pytest.mark.slow
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
    data = json.loads(res.stdout)  # the note that analyses are missing goes to stderr
    assert data["report"] == str(tmp_path / "r.html") and data["images"] == 1 and data["runs"] == [str(pair[0].path)]
    assert data["analyse"] == f"aelab analyse {pair[0].path}"


@pytest.mark.slow(reason="renders the report (~1.8 s)")
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
    assert seen["images"] == 14 and seen["broken"] == []
    assert seen["scroll_width"] <= seen["inner_width"], seen["too_wide"]
    assert seen["too_wide"] == []
    assert seen["network_requests"] == []
    assert seen["parts"].count("Model card") == 2 and "Generated samples" in seen["parts"]


@pytest.mark.browser
@needs_browser
def test_report_prints_to_pdf(built, tmp_path):
    from pypdf import PdfReader

    from aelab.report.browser import render_pdf

    _, out = built
    pdf = render_pdf(out, tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 50_000
    pages = [p.extract_text() for p in PdfReader(pdf).pages]
    # page 1 is the contents, the comparison and the discussion (no break after the short contents list);
    # each of the two runs starts a page of its own
    assert "Contents" in pages[0] and "Runs compared" in pages[0] and "Variants against" in pages[0]
    assert "Metrics" not in pages[0] and "model family" not in pages[0]  # the runs: from page 2
    starts = [i for i, text in enumerate(pages[1:], 1) if re.search(r"^Run: (ae|vae)$", text, re.M)]
    assert len(starts) == 2 and starts[0] == 1
    assert 4 <= len(pages) <= 16
    # the footer numbers every page
    assert all(f"page {i + 1} of {len(pages)}" in text for i, text in enumerate(pages))
    # a heading is never the last thing on a page
    for text in pages[:-1]:
        body = [line for line in text.splitlines() if line.strip() and not line.startswith("page ")]
        assert body[-1] not in {"Architecture", "Loss", "Reconstructions", "Latent edits and traversal",
                                "Generated samples", "Model card", "Metrics"}, text


def test_print_rules_keep_headings_tables_and_figures_whole():
    css = (Path(aelab.__file__).parent / "report" / "report.css").read_text()
    printing = css[css.index("@media print"):]
    assert not re.search(r"nav\.toc\s*\{[^}]*break-after:\s*page", css)  # page 1 is not left 85% blank
    assert re.search(r"h1, h2, h3, h4 \{[^}]*break-after: avoid", printing)
    assert re.search(r"table, \.scroll, figure, \.card, pre, tr \{[^}]*break-inside: avoid", printing)
    assert re.search(r"section\.run\.level2[^{]*\{[^}]*break-before: page", printing)
    # nothing that ends a figure or a part may ask to stay with the next one: that moves the break after a heading
    assert not re.search(r"figcaption[^{]*\{[^}]*break-after: avoid", printing)


@pytest.mark.slow(reason="the demo's report section analyses copies of both runs")
def test_demo_report_records_its_figures_and_completes_the_rest(pair, tmp_path):
    from types import SimpleNamespace

    from aelab.demo import SECTIONS
    from aelab.demo.report import report_section

    assert SECTIONS[-1] is report_section  # the report is drawn last, over what the other sections drew
    for run, name in ((pair[0], "ae"), (pair[1], "vae"), (pair[0], "anomaly")):
        shutil.copytree(run.path, tmp_path / name)
    vae = aelab.load_run(tmp_path / "vae")
    shutil.copy(tmp_path / "vae" / "figures" / "loss.png", tmp_path / "vae" / "figures" / "samples.png")
    demo = SimpleNamespace(out=tmp_path, runs={"ae": aelab.load_run(tmp_path / "ae"), "vae": vae},
                           result={"generation": {"samples": {"vae": {"figure": str(vae.figures / "samples.png"),
                                                                      "drawn_from": "the prior"}}}})
    lines = report_section(demo)
    assert lines == [f"report: {tmp_path / 'report.html'}"]
    assert list(demo.result["report"]["sections"]) == [str(tmp_path / n) for n in ("ae", "vae", "anomaly")]
    assert demo.result["report"]["hints"] == []  # the demo analysed everything its report shows
    assert manifest.entry(vae.path, "samples")["params"] == {"by": "aelab demo"}  # the section's figure, adopted
    assert manifest.entry(vae.path, "noise")["params"]["partner"] == str(tmp_path / "ae")
    assert "aelab demo: ae (fcn) vs vae (vae) on builtin:faces" in (tmp_path / "report.html").read_text()


def test_table_columns_share_their_decimals():
    from aelab.report.html import column_decimals, table_html

    rows = [{"run": "a", "mse": 0.01319, "psnr": 19.22, "n": 3}, {"run": "b", "mse": 0.004593, "psnr": 24.5, "n": 12},
            {"run": "c", "mse": None, "psnr": 20.0, "n": 1}]
    assert column_decimals([r["mse"] for r in rows]) == 6 and column_decimals([r["psnr"] for r in rows]) == 2
    assert column_decimals([1, 2]) is None and column_decimals(["x", 0.5]) is None
    html = table_html(rows)
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert cells == ["0.013190", "19.22", "3", "0.004593", "24.50", "12", "–", "20.00", "1"]


def _files(tmp_path, name, model, psnr, **train):
    from aelab.config import config_from_dict
    from aelab.report.sections import RunFiles

    cfg = config_from_dict({"name": name, "data": {"source": "builtin:faces?n=100"}, "model": model,
                            "train": {"epochs": 3, **train}})
    latent = model.get("latent_dim", 10)
    summary = {"family": model["type"], "psnr": psnr, "ssim": 0.6, "parameters": 1000, "latent_size": latent}
    return RunFiles(tmp_path / name, cfg, summary)


def test_discussion_compares_like_with_like_or_says_what_differs(tmp_path):
    from aelab.report.sections import discussion

    fcn = _files(tmp_path, "deep-fcn", {"type": "fcn", "hidden": [64], "latent_dim": 10}, 19.22)
    vae = _files(tmp_path, "conv-vae", {"type": "vae", "backbone": "conv", "channels": [8], "latent_dim": 32},
                 20.65, batch_size=32)
    text = re.sub(r"<[^>]+>", "", discussion([fcn, vae]))
    assert "measured on conv-vae against deep-fcn: PSNR 20.65 dB vs 19.22 (+1.43)" in text
    assert ("Not like for like: conv-vae also differs from deep-fcn in backbone (conv vs fcn), code size (32 vs 10 "
            "elements), batch size (32 vs 128)") in text
    # with a plain conv AE of the same code size, the VAE is measured against that one
    conv = _files(tmp_path, "conv-ae", {"type": "conv", "channels": [8], "latent_dim": 32}, 21.0, batch_size=32)
    text = re.sub(r"<[^>]+>", "", discussion([fcn, vae, conv]))
    assert "measured on conv-vae against conv-ae: PSNR 20.65 dB vs 21.00 (-0.35)" in text
    assert "Like for like in backbone and code size." in text


def test_an_old_style_log_is_reported_in_todays_terms(pair, tmp_path):
    """A log from before mse_01 was recorded: the report's epoch table shows the train MSE on [0, 1] that
    ``logunits.upgrade_log`` derives (the objective is that MSE on data.range), as for today's log."""
    ae = pair[0]
    old = tmp_path / "old"
    shutil.copytree(ae.path, old)
    lines = [json.loads(ln) for ln in (old / "metrics.jsonl").read_text().splitlines()]
    assert any("train_mse_01" in r for r in lines)
    (old / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k not in (
        "mse_01", "train_mse_01", "train_kl")}) + "\n" for r in lines))
    epochs = lambda page: re.search(r"<summary>Per epoch</summary>.*?</details>", page, re.S)[0]  # noqa: E731
    build_report([ae.path], tmp_path / "new.html")
    build_report([old], tmp_path / "old.html")
    new_table, old_table = epochs((tmp_path / "new.html").read_text()), epochs((tmp_path / "old.html").read_text())
    assert old_table == new_table
    want = [r["train_mse_01"] for r in lines if "train_mse_01" in r]
    got = [r["train_mse_01"] for r in aelab.load_run(old).metrics_log() if "train_loss" in r]
    assert got == pytest.approx(want, abs=2e-7)


def test_a_deleted_figure_is_asked_for_as_analyse_would_make_it(pair, tmp_path):
    """The report and ``aelab analyse`` share ``manifest.current``: a recorded figure deleted from disk is
    named with the command that makes it again (no --redo needed), and that command does."""
    run = tmp_path / "gone"
    shutil.copytree(pair[0].path, run)
    (run / "figures" / "loss.png").unlink()
    assert not manifest.current(run, "loss")
    result = build_report([run], tmp_path / "r.html")
    command = f"aelab analyse {shlex.quote(str(run))}"
    assert result["analyse"] == command
    assert "out of date (a figure or record file gone or changed): loss" in result["hints"][0]
    assert result["hints"][0].endswith(f"run `{command}`")
    assert "out of date (a figure or record file gone or changed): loss" in (tmp_path / "r.html").read_text()
    assert analyse([run], ["loss"])["runs"][str(run)]["recorded"] == ["loss"]  # without --redo
    assert manifest.current(run, "loss") and (run / "figures" / "loss.png").is_file()
    # a record adopted from a file is current while that file is unchanged
    (run / "anomaly.json").write_text("{}")
    manifest.record(run, "anomaly", params={"from": "anomaly.json",
                                            "mtime_ns": (run / "anomaly.json").stat().st_mtime_ns})
    assert manifest.current(run, "anomaly")
    os.utime(run / "anomaly.json", ns=(1, 1))
    assert not manifest.current(run, "anomaly")
    assert "out of date" in build_report([run], tmp_path / "s.html")["hints"][0]
