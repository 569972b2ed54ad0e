"""Results that show themselves in Jupyter: a card for a Run, a figure and its numbers for every analysis.

The results live in the analyses layer and draw nothing; this module (apps) registers an IPython
``text/html`` formatter per result type, by type name (``for_type_by_name``), so registering imports
neither the results' modules nor matplotlib: a formatter runs, and draws, only when a result is shown.
``aelab/__init__`` calls ``register`` when aelab is imported inside IPython. Figures are embedded as
base64 PNG, so a saved notebook shows them with no files beside it.

One module (~370 lines) on purpose: one small formatter per result type over shared HTML
pieces, registered from one table; split, the table and the pieces would be imported everywhere.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from aelab.errors import AelabError
from aelab.tables import cell

STYLE = ("font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.4;"
         "border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;max-width:960px;background:#fff;color:#1f2328")
CARD_IMAGES = 6
"""Validation images a Run card reconstructs."""
FIGURE_ROWS = 10
"""Source images an augmentation's or a noise comparison's inline figure shows (the numbers cover all)."""


# -- HTML pieces ------------------------------------------------------------------------------------

def png(draw: Callable[[Path], Any]) -> str:
    """An ``<img>`` with the PNG that ``draw(path)`` writes, embedded as base64 (the file is temporary)."""
    with tempfile.TemporaryDirectory(prefix="aelab-") as folder:
        path = Path(folder) / "figure.png"
        draw(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img style="max-width:100%" src="data:image/png;base64,{data}">'


def image_file(path: str | Path) -> str:
    """An ``<img>`` embedding a PNG, JPEG or SVG file aelab wrote."""
    path = Path(path)
    kinds = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    if path.suffix.lower() not in kinds:
        raise AelabError(f"{path}: not a figure aelab writes (.png, .jpg or .svg)")
    data, kind = base64.b64encode(path.read_bytes()).decode("ascii"), kinds[path.suffix.lower()]
    return f'<img style="max-width:100%" alt="{escape(path.name)}" src="data:{kind};base64,{data}">'


def number(value: Any) -> str:
    """A cell as the CLI writes it (``tables.cell``), HTML-escaped; a shape as ``64 × 64 × 3``."""
    if isinstance(value, list | tuple):
        return escape(" × ".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value))
    return escape(cell(value))


def table(rows: Sequence[dict[str, Any]], headers: dict[str, str] | None = None, limit: int = 50) -> str:
    """An HTML table of rows (columns in the order they first appear); the first ``limit`` rows."""
    if not rows:
        return "<p><i>no rows</i></p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    headers = headers or {}
    cell = "padding:2px 8px;border-bottom:1px solid #eaeef2;text-align:{}"
    head = "".join(f'<th style="{cell.format("left")}">{escape(headers.get(c, c))}</th>' for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td style="{cell.format("right" if isinstance(r.get(c), int | float) else "left")}">{number(r.get(c))}</td>'
        for c in cols) + "</tr>" for r in rows[:limit])
    more = f"<p><i>first {limit} of {len(rows)} rows</i></p>" if len(rows) > limit else ""
    return f'<table style="border-collapse:collapse;font-size:12px">{"<tr>" + head + "</tr>"}{body}</table>{more}'


def facts(pairs: Sequence[tuple[str, Any]]) -> str:
    """Label: value pairs on a line each (a two-column table)."""
    rows = "".join(f'<tr><td style="color:#59636e;padding:1px 10px 1px 0">{escape(k)}</td><td>{v}</td></tr>'
                   for k, v in pairs)
    return f'<table style="border-collapse:collapse;font-size:12px">{rows}</table>'


def card_html(title: str, body: str, kind: str) -> str:
    return (f'<div class="aelab-{kind}" style="{STYLE}"><div style="font-size:15px;font-weight:600;margin-bottom:6px">'
            f"{title}</div>{body}</div>")


# -- a Run ------------------------------------------------------------------------------------------

def run_html(run: Any) -> str:
    """The Run card: name, family, parameters, code shape, final metrics with units, the loss curve and a
    few validation reconstructions. Cached on the Run (its weights do not change once trained)."""
    key = ("notebook-card", str(run.weights_file))
    if key not in run.cache:
        run.cache[key] = _run_card(run)
    return run.cache[key]


def _run_card(run: Any) -> str:
    import numpy as np

    from aelab.cards import cards_for
    from aelab.figures.run import loss_figure, reconstruction_figure
    from aelab.logunits import objective_label
    from aelab.run import reconstructions

    s = run.summary
    objective = objective_label(run.config.train.loss, run.config.data.range, run.variational)
    stopped = f" (stopped early at epoch {s['stopped_at_epoch']})" if s.get("stopped_early") else ""
    papers = " · ".join(f'<a href="{escape(c.paper["url"])}" target="_blank">{escape(c.title)}</a> '
                        f"({escape(c.short_ref)})" for c in cards_for(run.config))
    epochs = f"{s.get('epochs')} epoch{'s' if s.get('epochs') != 1 else ''}"
    pairs = [("folder", f"<code>{escape(str(run.path))}</code>"),
             ("parameters", number(s.get("parameters"))),
             ("image → code", f"{number(list(run.image_shape))} → {number(list(run.latent_shape))} "
                              f"({run.latent_size:,} numbers, compression {s.get('compression_ratio', 0):.1f}×)"),
             ("training", f"{epochs}, {s.get('steps'):,} steps of {s.get('batch_size')} images on "
                          f"{s.get('n_train'):,} images, {s.get('wall_time_s', 0):.1f} s{stopped}"),
             ("final train loss", f"{number(s.get('final_train_loss'))} (the objective: {escape(objective)}; "
                                  f"train MSE {number(s.get('final_train_mse_01'))} ([0, 1] pixels))"),
             (f"{s.get('evaluated_on', 'val')} metrics",
              f"MSE {s.get('mse', float('nan')):.5f} ([0, 1] pixels) · PSNR {s.get('psnr', float('nan')):.2f} dB"
              f" · SSIM {s.get('ssim', float('nan')):.4f} (of 1)")]
    if run.weights == "best":
        pairs.append(("weights", "best epoch's (train.keep_best)"))
    if papers:
        pairs.append(("model cards", papers))
    loss = png(lambda p: loss_figure(run.metrics_log(), p, objective=objective, title=f"{run.name}: training"))
    val = run.val_data()
    shown = val.subset(np.arange(min(CARD_IMAGES, len(val)))) if len(val) else None
    recon = ""
    if shown is not None:
        r = reconstructions(run, shown)
        recon = png(lambda p: reconstruction_figure(r.originals, r.reconstructions, p, ids=r.ids.tolist(),
                                                    psnr=r.psnr, ssim=r.ssim, title="validation reconstructions"))
    title = f"{escape(run.name)} <span style='font-weight:400;color:#59636e'>· {escape(run.model.family)}" + \
            (" (variational)" if run.variational else "") + "</span>"
    body = (f"{facts(pairs)}<div style='display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin-top:6px'>"
            f"<div style='flex:1 1 420px'>{loss}</div><div style='flex:1 1 420px'>{recon}</div></div>")
    return card_html(title, body, "run")


def card_of_card(card: Any) -> str:
    """A model card: what it is, its loss, its trade-off, and the paper (linked)."""
    p = card.paper
    pairs = [("applies to", escape(card.applies)), ("what", escape(card.what)), ("loss", escape(card.loss)),
             ("advantage", escape(card.advantage)), ("disadvantage", escape(card.disadvantage)),
             ("paper", f'<a href="{escape(p["url"])}" target="_blank">{escape(card.citation)}</a>')]
    return card_html(escape(card.title), facts(pairs), "card")


# -- analysis results ----------------------------------------------------------------------------------

def edit_html(result: Any) -> str:
    from aelab.figures.latent import edit_figure

    rows = [{"edit": e.edit, "elements": ", ".join(map(str, e.elements[:12])) + (" …" if len(e.elements) > 12 else ""),
             "mean |change| ([0, 1] pixels)": e.mean_abs_change, "PSNR vs reconstruction (dB)": e.psnr}
            for e in result.edited]
    fig = png(lambda p: edit_figure(result, p))
    return card_html("latent edits", fig + table(rows), "edit")


def traversal_html(result: Any) -> str:
    from aelab.figures.latent import traversal_figure

    rows = result.to_dict()["elements"]
    for row, f in zip(rows, result.factors or [None] * len(rows), strict=True):
        if f:
            row.update({k: v for k, v in f.items() if k != "element"})
    fig = png(lambda p: traversal_figure(result, p))
    head = f"traversal over the {escape(result.range)} range, {result.steps} steps" + \
           (", elements ranked by their measured effect Δ" if result.ranked else "")
    return card_html(head, fig + table(rows, {"output_change": "Δ (mean |change|, [0, 1] pixels)"}), "traversal")


def interpolation_html(result: Any) -> str:
    from aelab.figures.latent import interpolation_figure

    rows = [{"step": i + 1, "t": float(t), "mean |change| from previous": float(c)}
            for i, (t, c) in enumerate(zip(result.t[1:], result.step_change, strict=False))]
    fig = png(lambda p: interpolation_figure(result, p))
    return card_html(f"{escape(result.mode)} interpolation, {result.steps} steps", fig + table(rows), "interpolation")


def samples_html(result: Any) -> str:
    from aelab.figures.generate import samples_figure

    fig = png(lambda p: samples_figure(result, p))
    return card_html(f"{len(result.images)} samples", fig + facts(
        [(k, number(v)) for k, v in result.numbers().items()]), "samples")


def augment_html(result: Any) -> str:
    from aelab.figures.generate import augment_figure

    ids = result.source_ids[::result.variants].tolist()
    pairs = [("images", f"{len(result.originals)} × {result.variants} variants = {len(result.images)}"),
             ("source ids", escape(", ".join(map(str, ids[:20])) + (" …" if len(ids) > 20 else ""))),
             ("noise", "posterior draws (VAE)" if result.sigma is None else f"σ = {result.sigma:g}"),
             ("seed", number(result.seed)), ("code size", number(result.code_size)),
             ("images array", f"uint8 {number(list(result.images.shape))}"),
             ("labels", "none" if result.labels is None else f"{len(result.labels)} (the sources', repeated)")]
    fig = png(lambda p: augment_figure(result, p, max_rows=FIGURE_ROWS))
    return card_html("augmentation", fig + facts(pairs), "augment")


def noise_html(result: Any) -> str:
    from aelab.figures.generate import same_noise_figure

    fig = png(lambda p: same_noise_figure(result.a, result.b, result.numbers, p, max_rows=FIGURE_ROWS))
    rows = [{k: v for k, v in row.items() if k != "run"} for row in result.table]
    n = result.numbers
    text = (f"<p>σ = {n['sigma']:g}, seed {n['seed']}, {n['variants']} variants per image; MSE/PSNR/SSIM of the "
            f"variants against the original, diversity = mean |difference| between variants ([0, 1] pixels)</p>")
    return card_html("the same noise through two models", fig + text + table(rows, {"psnr": "psnr (dB)"}), "noise")


def anomaly_html(result: Any) -> str:
    from aelab.figures.anomaly import roc_figure, score_histogram

    m = result.metrics or {}
    box = "<div style='flex:1 1 360px;max-width:470px'>{}</div>"
    figs = box.format(png(lambda p: score_histogram(result.scores, result.anomalous, p, result.kind, result.metrics)))
    if result.anomalous is not None and 0 < result.anomalous.sum() < len(result.anomalous):
        figs += box.format(png(lambda p: roc_figure(result.scores, result.anomalous, p, result.kind, result.metrics)))
    pairs = [("scores", f"{result.n:,} images, kind <code>{escape(result.kind)}</code> (higher = more anomalous), "
                        f"{result.wall_time_s:.2f} s"), ("data", escape(result.data))]
    if result.csv:
        pairs.append(("CSV (ID,score)", f"<code>{escape(result.csv)}</code>"))
    shown = [k for k in ("roc_auc", "pr_auc", "best_f1", "threshold", "tpr_at_5pct_fpr", "n_anomalous", "n_normal")
             if m.get(k) is not None]
    pairs += [(k, number(m[k])) for k in shown]
    if not m:
        pairs.append(("metrics", "none: no labels to measure against"))
    elif m.get("undefined"):
        pairs.append(("metrics", escape(next(iter(m["undefined"].values())))))
    flex = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start"
    return card_html("anomaly scores", f"{facts(pairs)}<div style='{flex}'>{figs}</div>", "anomaly")


def sweep_html(result: Any) -> str:
    from aelab.figures.sweep import losses_figure
    from aelab.sweep import training_curves

    files = [f for f in result.files.values() if str(f).endswith(".png") and Path(f).is_file()]
    if files:
        figs = "".join(image_file(f) for f in files)
    else:
        curves, measure = training_curves(result.out, result.sweep.variants)
        figs = png(lambda p: losses_figure(curves, p, result.sweep.name, ylabel=measure)) if curves else ""
    rows = [{k: v for k, v in r.items() if k != "run"} for r in result.rows]
    words = {"done": "already finished", "new": "trained", "resume": "resumed", "restart": "restarted",
             "different": "retrained (config changed)"}
    states = "; ".join(f"{k}: {words.get(v, v)}" for k, v in result.states.items())
    return card_html(f"sweep {escape(result.sweep.name)} ({len(result.rows)} runs)",
                     table(rows) + f"<p style='color:#59636e'>{escape(states)}</p>" + figs, "sweep")


def oneclass_html(result: Any) -> str:
    from aelab.figures.oneclass import auroc_figure

    rows = [{k: v for k, v in r.items() if k != "run"} for r in result["rows"]]
    fig = png(lambda p: auroc_figure(result["rows"], p))
    text = (f"<p>{escape(str(result['config']))} on {escape(str(result['data']))}, scores "
            f"<code>{escape(str(result['kind']))}</code>, {escape(str(result['split']))}; mean ROC AUC "
            f"<b>{result['mean_roc_auc']:.4f}</b></p>")
    return card_html("one-class protocol", text + table(rows) + fig, "oneclass")


FORMATTERS: dict[tuple[str, str], Callable[[Any], str]] = {
    ("aelab.run", "Run"): run_html,
    ("aelab.cards", "Card"): card_of_card,
    ("aelab.latent", "EditResult"): edit_html,
    ("aelab.latent", "TraversalResult"): traversal_html,
    ("aelab.latent", "InterpolationResult"): interpolation_html,
    ("aelab.generate", "Samples"): samples_html,
    ("aelab.codenoise", "Augmented"): augment_html,
    ("aelab.codenoise", "NoiseComparison"): noise_html,
    ("aelab.anomaly", "AnomalyResult"): anomaly_html,
    ("aelab.sweep", "SweepResult"): sweep_html,
    ("aelab.oneclass", "OneClassResult"): oneclass_html,
}
"""(module, type name) -> its HTML; registered by name, so nothing here is imported until shown."""


def html(result: Any) -> str:
    """The HTML a result shows in Jupyter (also outside IPython, e.g. to save it)."""
    for cls in type(result).__mro__:
        fn = FORMATTERS.get((cls.__module__, cls.__name__))
        if fn:
            return fn(result)
    raise AelabError(f"aelab has no display for a {type(result).__name__}")


def register(shell: Any = None, short_errors: bool = True) -> bool:
    """Register the HTML formatters with IPython's shell (default: the running one); False outside IPython.

    ``short_errors``: an ``AelabError`` (bad input the user can fix) shows as its one line, as the CLI
    prints it, instead of a traceback through aelab's internals -- unless the shell already has a
    custom exception handler."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["text/html"]
    for (module, name), fn in FORMATTERS.items():
        formatter.for_type_by_name(module, name, fn)
    if short_errors and not shell.custom_exceptions:
        shell.set_custom_exc((AelabError,), _one_line)
    return True


def _one_line(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython's handler for an AelabError: the error as one line (still an error: the cell fails)."""
    stb = [f"{etype.__name__}: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


# -- show -----------------------------------------------------------------------------------------------

class HTML:
    """HTML that Jupyter displays (``_repr_html_``) and a terminal prints as its text."""

    def __init__(self, markup: str, text: str):
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def shown(target: Any) -> HTML:
    """What ``show`` displays: a result's HTML, a figure file, a Run folder's card, or every figure in a folder."""
    if not isinstance(target, str | Path):
        return HTML(html(target), repr(target))
    path = Path(target)
    if path.is_file():
        return HTML(image_file(path), str(path))
    if (path / "summary.json").is_file() and (path / "config.yaml").is_file():
        from aelab.run import load_run

        run = load_run(path)
        return HTML(run_html(run), repr(run))
    if path.is_dir():
        figures = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".png", ".svg"))
        if not figures:
            raise AelabError(f"{path}: no figures (.png, .svg) in this folder")
        parts = "".join(f"<figure style='margin:4px 0'>{image_file(p)}<figcaption style='font-size:11px'>"
                        f"{escape(str(p.relative_to(path)))}</figcaption></figure>" for p in figures)
        return HTML(card_html(escape(str(path)), parts, "figures"), "\n".join(map(str, figures)))
    raise AelabError(f"{path}: no such file or folder")


def show(target: Any) -> None:
    """Display a result, a figure aelab wrote (a .png/.svg path), a Run folder's card, or a folder's figures,
    in Jupyter; outside IPython, print what would be shown."""
    out = shown(target)
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        from IPython.display import display

        display(out)
    else:
        print(repr(out))
