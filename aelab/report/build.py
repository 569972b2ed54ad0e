"""The study as one self-contained HTML file: every figure embedded, nothing fetched to view it.

Per run: metrics, the architecture picture and layer table, the loss curve,
reconstructions, latent edits and a traversal, samples and the same-noise
comparison for a VAE, the anomaly results when the run was scored, and its
model cards. A sweep folder comes first with its comparison table and the
overlaid losses (and the code-size figure), then its runs. Figures already in
``RUN/figures/`` are reused; missing ones are drawn there. A section whose
data is missing (or whose analysis module is not installed) is left out.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from aelab.errors import AelabError, RunError
from aelab.io import atomic_write

# Figure files a run may already have (what `aelab demo` and the analysis commands write), in order of
# preference; a missing one is drawn to DRAW_AS.
FIGURES = {
    "architecture": ("architecture.png",),
    "loss": ("loss.png",),
    "reconstructions": ("reconstructions.png", "reconstruction.png"),
    "edits": ("latent_edits.png", "edits.png", "edit.png"),
    "traversal": ("latent_traversal.png", "traversal.png", "traverse.png"),
    "interpolation": ("latent_interpolation.png", "interpolation.png"),
    "samples": ("samples.png", "sample.png"),
    "noise": ("same_noise.png", "noise_compare.png", "compare_noise.png", "noise.png"),
}
DRAW_AS = {"edits": "edits.png", "traversal": "traversal.png", "noise": "noise_compare.png"}
BIG_PNG, JPEG_QUALITY = 300_000, 90
LARGE_CODE = 256  # above this many elements, pick edited/traversed elements by spread instead of measured effect


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return "×".join(str(v) for v in value)
    return str(value)


def _compact(raw: bytes) -> bytes | None:
    """A big PNG (image grids of faces) as a JPEG when that is much smaller; the file itself is left alone."""
    try:
        from PIL import Image
    except ImportError:
        return None
    import io

    with Image.open(io.BytesIO(raw)) as im:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        buf = io.BytesIO()
        flat.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue() if buf.tell() < 0.6 * len(raw) else None


def image(path: Path, alt: str) -> str:
    """An <img> with the file embedded as a data URI (PNG, JPEG or SVG); PNGs over ``BIG_PNG`` bytes go in as
    JPEG when that is much smaller, so a report with many image grids stays a few MB."""
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}.get(
        path.suffix.lower(), "application/octet-stream")
    raw = path.read_bytes()
    if kind == "image/png" and len(raw) > BIG_PNG:
        small = _compact(raw)
        if small is not None:
            raw, kind = small, "image/jpeg"
    data = base64.b64encode(raw).decode("ascii")
    return f'<img src="data:{kind};base64,{data}" alt="{esc(alt)}" loading="eager">'


def figure(path: Path | None, caption: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    return f'<figure>{image(Path(path), caption)}<figcaption>{esc(caption)}</figcaption></figure>'


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None, headers: dict[str, str] | None = None,
               formats: Callable[[str, Any], str] | None = None, cls: str = "") -> str:
    """A scrollable table; numeric columns right-aligned."""
    if not rows:
        return ""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    headers = headers or {}
    numeric = {c for c in cols if all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                                      for r in rows if r.get(c) is not None)
               and any(r.get(c) is not None for r in rows)}
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{esc(headers.get(c, c))}</th>' for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if c in numeric else ""}">{esc(formats(c, r.get(c)) if formats else fmt(r.get(c)))}</td>'
        for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def key_values(pairs: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in pairs if v is not None)
    return f'<div class="scroll"><table class="kv"><tbody>{cells}</tbody></table></div>'


@dataclass
class Report:
    """What is being put together: sections in order, and what happened on the way."""

    sections: list[tuple[str, str, str, int]] = field(default_factory=list)  # (id, title, html, level)
    warnings: list[str] = field(default_factory=list)
    contents: dict[str, list[str]] = field(default_factory=dict)  # run path -> parts shown

    def add(self, sid: str, title: str, body: str, level: int = 2) -> None:
        self.sections.append((sid, title, body, level))


def _existing(run: Any, key: str) -> Path | None:
    for name in FIGURES[key]:
        path = run.path / "figures" / name
        if path.is_file():
            return path
    return None


def _draw(run: Any, key: str, make: Callable[[Path], Any], report: Report, generate: bool) -> Path | None:
    """The figure if the run has it, else drawn into ``RUN/figures/`` by ``make`` (skipped on failure)."""
    found = _existing(run, key)
    if found or not generate:
        return found
    path = run.figures / DRAW_AS.get(key, FIGURES[key][0])
    try:
        make(path)
    except (AelabError, ImportError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
        report.warnings.append(f"{run.path}: {key} figure left out ({type(exc).__name__}: {exc})")
        return None
    return path if path.is_file() else None


# -- the parts of a run ------------------------------------------------------------------------------------------
def _one_image(run: Any) -> Any:
    return run.val_data().batch([0])[0]


def _spread_elements(run: Any, n: int) -> list[int]:
    import numpy as np

    from aelab.latent import code_stats

    std = np.asarray(code_stats(run)["std"])
    return [int(i) for i in np.argsort(-std, kind="stable")[:n]]


def _edits(run: Any) -> list[str]:
    """Two elements pushed to the ends of their data range, then both together: what changes?"""
    import numpy as np

    from aelab import latent

    img = _one_image(run)
    stats = latent.code_stats(run)
    code = run.encode(img[None]).reshape(-1)
    small = run.latent_size <= LARGE_CODE
    dims = latent.top_elements(run, code, 2, "data") if small else _spread_elements(run, 2)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    ops = [f"{d}={mean[d] + sign * 2 * std[d]:.3g}" for d, sign in zip(dims, (1, -1), strict=False)]
    return [*ops, ",".join(ops)] if len(ops) > 1 else ops


def _traversal(run: Any, path: Path) -> Any:
    from aelab import latent
    from aelab.figures.latent import traversal_figure

    img = _one_image(run)
    if run.latent_size > LARGE_CODE:
        swept = latent.traverse(run, img, dims=_spread_elements(run, 8), range="data", steps=9)
    else:
        swept = latent.traverse(run, img, top=8, range="data", steps=9)
    return traversal_figure(swept, path, f"{run.name}: latent traversal ({swept.range} range)")


def _edit_figure(run: Any, path: Path) -> Any:
    from aelab import latent
    from aelab.figures.latent import edit_figure

    edited = latent.edit(run, _one_image(run), _edits(run))
    return edit_figure(edited, path, f"{run.name}: latent edits ({run.latent_size}-element code)")


def _partner(run: Any, runs: list[Any]) -> Any:
    """A plain autoencoder on the same data to put the same noise through: one trained as long
    as the VAE if there is one, the best reconstructing among those."""
    fits = [r for r in runs if not r.variational and r.config.data == run.config.data]
    return min(fits, key=lambda r: (r.summary["epochs"] != run.summary["epochs"], -r.summary["psnr"]), default=None)


def run_section(run: Any, runs: list[Any], report: Report, generate: bool = True) -> str:
    from aelab.cards import cards_for

    s = run.summary
    parts: list[str] = []
    shown: list[str] = []

    def part(name: str, title: str, body: str) -> None:
        if body.strip():
            parts.append(f'<section class="part" id="{esc(slug(str(run.path)))}-{name}"><h3>{esc(title)}</h3>'
                         f"{body}</section>")
            shown.append(name)

    cfg = run.config
    part("metrics", "Metrics", key_values([
        ("model family", s.get("family")), ("data", cfg.data.source),
        ("images (train / validation)", f"{s.get('n_train', '?')} / {s.get('n_val', 0)}"),
        ("parameters", s.get("parameters")), ("input (C×H×W)", s.get("input_shape")),
        ("code shape", s.get("latent_shape")), ("compression ratio", s.get("compression_ratio")),
        ("epochs / iterations", f"{s.get('epochs')} / {s.get('steps')}"), ("batch size", s.get("batch_size")),
        ("final train loss (last epoch mean)", s.get("final_train_loss")),
        (f"MSE ({s.get('evaluated_on', 'val')}, pixels in [0, 1])", s.get("mse")),
        (f"PSNR, dB ({s.get('evaluated_on', 'val')})", s.get("psnr")),
        (f"SSIM ({s.get('evaluated_on', 'val')})", s.get("ssim")),
        ("training time, s", s.get("wall_time_s")), ("images / s", s.get("images_per_s")),
        ("device / threads", f"{s.get('device')} / {s.get('threads')}")]))

    from aelab.info import diagram, summary

    arch = _draw(run, "architecture", lambda p: diagram(
        run.model, p, title=f"{run.name} ({run.model.family}): {s['parameters']:,} parameters"), report, generate)
    layers = [{"layer": r["name"], "type": r["type"], "output": r["output_shape"], "parameters": r["parameters"],
               "part": r["part"]} for r in summary(run.model)["layers"]]
    part("architecture", "Architecture", figure(arch, "layers left to right; the code in red, box height ~ log of "
                                                      "the layer's output size") +
         '<details open><summary>Layer table</summary>' + table_html(layers, cls="compact") + "</details>")

    def draw_loss(p: Path) -> None:
        from aelab.figures.base import loss_curve

        loss_curve(run.metrics_log(), p, title=run.name)

    loss = _draw(run, "loss", draw_loss, report, generate)
    part("loss", "Loss", figure(loss, "training loss per iteration and validation MSE per epoch"))

    def draw_recon(p: Path) -> None:
        from aelab.figures.run import reconstruction_figure

        data = run.val_data()
        reconstruction_figure(run, data.subset(list(range(min(8, len(data))))), p)

    recon = _draw(run, "reconstructions", draw_recon, report, generate)
    part("reconstructions", "Reconstructions", figure(recon, "validation images above their reconstructions"))

    from aelab import generate as gen

    edits = _draw(run, "edits", lambda p: _edit_figure(run, p), report, generate)
    trav = _draw(run, "traversal", lambda p: _traversal(run, p), report, generate)
    between = _existing(run, "interpolation")
    part("latent", "Latent edits and traversal",
         figure(edits, "edits of one image's code, decoded; right: where the image changed") +
         figure(trav, "each row sweeps one code element across its range, the others held at the image's code") +
         figure(between, "decoded codes on the straight line between two images' codes"))

    # samples are drawn for a VAE; shown for any run that has them already (a fitted Gaussian)
    vae = run.variational
    from aelab.figures.generate import same_noise_figure, samples_figure

    samples = _draw(run, "samples", lambda p: samples_figure(gen.sample(run, 32, seed=0), p, run.name), report,
                    generate and vae)
    partner = _partner(run, runs) if vae else None
    noise = None
    if vae and (partner is not None or _existing(run, "noise")):
        ids = run.val_data().ids[:4].tolist()
        noise = _draw(run, "noise", lambda p: same_noise_figure(
            *gen.compare_noise(partner, run, gen.select(partner, ids), 5, 0.5, 0), p), report,
            generate and partner is not None)
    quality = _read_json(run.path / "quality.json")
    q = key_values([("samples compared", quality.get("n")), ("drawn from", quality.get("generated_from")),
                    ("Fréchet distance: samples", quality.get("fd_generated")),
                    ("Fréchet distance: reconstructions", quality.get("fd_reconstructed")),
                    ("Fréchet distance: train vs held-out (floor)", quality.get("fd_train_vs_held_out")),
                    ("sharpness, samples / real", quality.get("sharpness_ratio_generated")),
                    ("sharpness, reconstructions / real", quality.get("sharpness_ratio_reconstructed"))]) \
        if quality else ""
    drawn = "the prior N(0, I)" if vae else "a distribution fitted to the training codes"
    part("generation", "Generated samples",
         figure(samples, f"codes drawn from {drawn}, decoded") + q +
         figure(noise, "the same Gaussian noise on the codes of a plain autoencoder (A) and of the VAE (B)"))

    anomaly = _read_json(run.path / "anomaly.json")
    if anomaly:
        m = anomaly.get("metrics") or {}
        tpr = next((k for k in m if k.startswith("tpr_at_")), None)
        figs = anomaly.get("figures") or {}
        captions = {"roc": "ROC curve", "score_hist": "scores of normal and anomalous images",
                    "worst": "the highest-scoring images: input, reconstruction, error heat map",
                    "sample": "images drawn at random: input, reconstruction, error heat map"}
        body = key_values([("data", anomaly.get("data")), ("score", anomaly.get("kind")), ("images", m.get("n")),
                           ("anomalous", m.get("n_anomalous")), ("ROC AUC", m.get("roc_auc")),
                           ("PR AUC", m.get("pr_auc")), ("best F1", m.get("best_f1")),
                           ("at threshold", m.get("threshold")),
                           ("precision / recall", f"{fmt(m.get('precision'))} / {fmt(m.get('recall'))}"),
                           (tpr.replace("tpr_at_", "TPR at ").replace("pct_fpr", "% FPR") if tpr else "TPR",
                            m.get(tpr) if tpr else None)])
        body += "".join(figure(_inside(run.path, figs[k]), captions[k])
                        for k in ("roc", "score_hist", "worst", "sample") if k in figs)
        part("anomaly", "Anomaly detection", body)

    cards = cards_for(run)
    part("card", "Model card" + ("s" if len(cards) > 1 else ""), "".join(card_html(c) for c in cards))
    report.contents[str(run.path)] = shown
    return "".join(parts)


def _inside(root: Path, rel: str) -> Path | None:
    path = (root / rel) if not Path(rel).is_absolute() else Path(rel)
    return path if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def card_html(card: Any) -> str:
    p = card.paper
    return (f'<div class="card"><h4>{esc(card.title)}</h4><p class="applies">{esc(card.kind)}: {esc(card.applies)}'
            f"</p><p>{esc(card.what)}</p><dl><dt>Loss</dt><dd>{esc(card.loss)}</dd>"
            f"<dt>Advantage over the vanilla autoencoder</dt><dd>{esc(card.advantage)}</dd>"
            f"<dt>Disadvantage</dt><dd>{esc(card.disadvantage)}</dd>"
            f'<dt>Reference</dt><dd>{esc(p["authors"])} ({esc(p["year"])}). <em>{esc(p["title"])}</em>. '
            f'{esc(p["venue"])}. <a href="{esc(p["url"])}">{esc(p["url"])}</a></dd></dl></div>')


# -- sweeps and the overview -------------------------------------------------------------------------------------
def sweep_section(path: Path, report: Report) -> tuple[str, list[Path]]:
    from aelab import sweep as sw

    sweep = sw.load_sweep_dir(path)
    rows = sw.sweep_table(path, sweep)
    finished = [path / r["run"] for r in rows]
    losses = path / sw.LOSSES
    if not losses.is_file() and finished:
        done = [v for v in sweep.variants if (path / v.name / "summary.json").exists()]
        sw.losses_figure(path, done, losses, title=f"{sweep.name}: training loss")
    varied = ", ".join(sweep.varied) or "nothing"
    missing = [v.name for v in sweep.variants if not (path / v.name / "summary.json").exists()]
    note = (f'<p class="note">Not finished, left out: {esc(", ".join(missing))}. Run the sweep again to complete '
            f"it.</p>") if missing else ""
    legend = "".join(f"<li><code>{esc(v.name)}</code>: {esc(sw.label(v.settings) or 'the base config')}</li>"
                     for v in sweep.variants if (path / v.name / "summary.json").exists())
    # columns equal in every run go above the table, so the table shows what differs
    same = [c for c in (rows[0] if len(rows) > 1 else {}) if c != "run" and len({str(r.get(c)) for r in rows}) == 1]
    shared = "; ".join(f"{sw.MD_HEADERS.get(c, c)} {sw.format_cell(c, rows[0][c])}" for c in same)
    body = (f"<p>{len(rows)} runs in <code>{esc(path)}</code>, varying {esc(varied)}. Validation metrics are "
            f"computed on images in [0, 1]; the final train loss is the mean over the last epoch."
            + (f" The same in every run: {esc(shared)}." if shared else "") + f"</p>{note}"
            + table_html([{k: v for k, v in r.items() if k not in same} for r in rows], headers=sw.MD_HEADERS,
                         formats=sw.format_cell, cls="compact")
            + figure(losses if losses.is_file() else None, "training loss of every run (moving average over the "
                                                           "faint per-iteration values; a dot where each run stopped)")
            + figure(path / sw.LATENT if (path / sw.LATENT).is_file() else None,
                     "validation PSNR and SSIM against code size; the top axis is the compression ratio")
            + (f'<details><summary>Runs</summary><ul class="runs">{legend}</ul></details>' if legend else ""))
    return body, finished


def overview(runs: list[Any]) -> str:
    rows = [{"run": r.name, "family": r.model.family, "parameters": r.summary["parameters"],
             "code": r.summary["latent_shape"], "epochs": r.summary["epochs"],
             "final train loss": r.summary["final_train_loss"], "val MSE": r.summary["mse"],
             "val PSNR (dB)": r.summary["psnr"], "val SSIM": r.summary["ssim"], "time (s)": r.summary["wall_time_s"]}
            for r in runs]
    return table_html(rows)


def discussion(runs: list[Any]) -> str:
    """Each variant against the vanilla (fcn) autoencoder, with the numbers measured here and its paper."""
    from aelab.cards import cards_for, load_cards

    vanilla = [r for r in runs if r.model.family == "fcn" and r.config.train.input_noise is None]
    if not vanilla:
        return ""
    base = max(vanilla, key=lambda r: r.summary["psnr"])
    seen: dict[str, Any] = {}  # card id -> its best run by PSNR, among runs on the same data as the base
    for r in (r for r in runs if r.config.data == base.config.data):
        for c in cards_for(r):
            if c.id != "fcn" and (c.id not in seen or r.summary["psnr"] > seen[c.id].summary["psnr"]):
                seen[c.id] = r
    if not seen:
        return ""
    cards = load_cards()
    out = [f"<p>Against the vanilla autoencoder <code>{esc(base.name)}</code> ({base.summary['parameters']:,} "
           f"parameters, validation PSNR {base.summary['psnr']:.2f} dB, SSIM {base.summary['ssim']:.3f}):</p><ul>"]
    for cid, r in seen.items():
        c = cards[cid]
        s = r.summary
        out.append(
            f"<li><strong>{esc(c.title)}</strong>, measured on <code>{esc(r.name)}</code>: PSNR {s['psnr']:.2f} dB "
            f"({s['psnr'] - base.summary['psnr']:+.2f}), SSIM {s['ssim']:.3f} ({s['ssim'] - base.summary['ssim']:+.3f})"
            f", {s['parameters']:,} parameters. <em>Advantage:</em> {esc(c.advantage)} <em>Disadvantage:</em> "
            f"{esc(c.disadvantage)} <span class=\"ref\">({esc(c.short_ref)}, "
            f'<a href="{esc(c.paper["url"])}">{esc(c.paper["title"])}</a>)</span></li>')
    out.append("</ul>")
    return "".join(out)


# -- putting it together -------------------------------------------------------------------------------------------
def _template(name: str) -> str:
    return (files("aelab") / "report" / name).read_text(encoding="utf-8")


def _toc(sections: list[tuple[str, str, str, int]]) -> str:
    items = "".join(f'<li class="l{level}"><a href="#{esc(sid)}">{esc(title)}</a></li>'
                    for sid, title, _, level in sections)
    return f'<nav class="toc"><h2>Contents</h2><ul>{items}</ul></nav>'


def build_report(targets: list[str | Path] | str | Path, out: str | Path, *, title: str | None = None,
                 generate: bool = True, pdf: bool | str | Path = False) -> dict[str, Any]:
    """Write one self-contained HTML report over Run folders and sweep folders.

    ``generate`` draws figures a run does not have yet into its ``figures/``;
    ``pdf`` also renders the page to PDF (True: next to ``out``) with headless Chromium."""
    from aelab.run import load_run
    from aelab.sweep import is_sweep

    started = time.perf_counter()
    targets = [targets] if isinstance(targets, str | Path) else list(targets)
    if not targets:
        raise AelabError("no run or sweep folder given")
    report = Report()
    runs: list[Any] = []
    sweeps: list[tuple[Path, str, list[Path]]] = []
    order: list[tuple[str, Path]] = []
    for t in map(Path, targets):
        if is_sweep(t):
            body, finished = sweep_section(t, report)
            sweeps.append((t, body, finished))
            order += [("run", p) for p in finished]
        elif (t / "summary.json").is_file():
            order.append(("run", t))
        elif t.is_dir() and (t / "config.yaml").is_file():
            raise RunError(f"{t}: not a finished run (no summary.json); finish it with `aelab train {t / 'config.yaml'}"
                           f" --out {t} --resume`")
        else:
            raise AelabError(f"{t}: not a run folder (no summary.json) or a sweep folder (no sweep.yaml)")
    seen: set[Path] = set()
    for _, p in order:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            runs.append(load_run(p))
    by_path = {r.path.resolve(): r for r in runs}

    if len(runs) > 1 and not (len(sweeps) == 1 and len(targets) == 1):
        report.add("overview", "Runs compared", overview(runs))
    disc = discussion(runs)
    if disc:
        report.add("discussion", "Variants against the vanilla autoencoder", disc)
    done: set[Path] = set()
    for path, body, finished in sweeps:
        report.sections.append((f"sweep-{slug(str(path))}", f"Sweep: {path.name}", body, 2))
        for p in finished:
            run = by_path[p.resolve()]
            if run.path.resolve() in done:
                continue
            done.add(run.path.resolve())
            report.add(slug(str(run.path)), f"{path.name} / {run.name}", run_section(run, runs, report, generate), 3)
    for run in runs:
        if run.path.resolve() not in done:
            done.add(run.path.resolve())
            report.add(slug(str(run.path)), f"Run: {run.name}", run_section(run, runs, report, generate), 2)

    import aelab

    title = title or ("aelab report: " + ", ".join(Path(t).name for t in targets))
    body = "".join(f'<section class="{"run" if level >= 2 and not sid.startswith(("overview", "discussion")) else ""}'
                   f' level{level}" id="{esc(sid)}"><h{level}>{esc(t)}</h{level}>{b}</section>'
                   for sid, t, b, level in report.sections)
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = Template(_template("report.html")).safe_substitute(
        title=esc(title), css=_template("report.css"), toc=_toc(report.sections), body=body,
        meta=esc(f"{len(runs)} run{'s' if len(runs) != 1 else ''}" + (f" in {len(sweeps)} sweep"
                                                                         f"{'s' if len(sweeps) != 1 else ''}"
                                                                         if sweeps else "") + f" · generated {when}"),
        footer=esc(f"aelab {aelab.__version__} · every image is embedded; this file needs no network to view"))
    out = Path(out)
    atomic_write(out, page)
    result: dict[str, Any] = {
        "report": str(out), "bytes": out.stat().st_size, "images": page.count("<img "),
        "runs": [str(r.path) for r in runs], "sweeps": [str(p) for p, _, _ in sweeps],
        "sections": report.contents, "warnings": report.warnings,
        "wall_time_s": round(time.perf_counter() - started, 2)}
    if pdf:
        from aelab.report.browser import render_pdf

        target = out.with_suffix(".pdf") if pdf is True else Path(pdf)
        result["pdf"] = str(render_pdf(out, target))
    return result


def demo_section(demo: Any) -> list[str]:
    """``aelab demo``'s last step: the report over its runs, the demo's main output."""
    runs = list(demo.runs.values())
    title = "aelab demo: " + " vs ".join(f"{r.name} ({r.model.family})" for r in runs) + " on builtin:faces"
    # other runs the demo's sections trained (the anomaly model) follow the two main ones
    known = {r.path.resolve() for r in runs}
    extra = sorted(p.parent for p in demo.out.glob("*/summary.json") if p.parent.resolve() not in known)
    result = build_report([*(r.path for r in runs), *extra], demo.out / "report.html", title=title)
    demo.result["report"] = {k: result[k] for k in ("report", "bytes", "images", "sections", "warnings")}
    return [f"report: {result['report']}"]
