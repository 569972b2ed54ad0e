"""The report's sections, from what the folders hold: a run's summary, config, metrics log,
the figures and numbers its manifest records, its model cards; a sweep's table and figures.

Nothing here computes or draws: a figure is shown when the manifest records it, a part
whose data is missing is left out, and a run lacking analyses says which command adds them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aelab import manifest
from aelab.config import Config, load_config
from aelab.errors import RunError
from aelab.logunits import EPOCH_LABELS
from aelab.report.html import card_html, esc, figure, fmt, key_values, slug, table_html
from aelab.runfolder import CONFIG, METRICS, SUMMARY, WEIGHTS

CAPTIONS = {
    ("architecture", "architecture"): "the computation top to bottom, parallel branches side by side; each box's "
                                      "output shape per image; the code in red",
    ("loss", "loss"): "top: reconstruction MSE per pixel on [0, 1], training batches per iteration and the "
                      "validation split per epoch (one scale); below: the training objective (train.loss on "
                      "data.range, + β·KL/D for a VAE) and a VAE's KL term in nats, each on its own axis",
    ("reconstructions", "reconstructions"): "validation images above their reconstructions",
    ("edits", "edits"): "edits of one image's code, decoded; right: where the image changed",
    ("traversal", "traversal"): "each row sweeps one code element across its range, the others held at the "
                                "image's code",
    ("interpolation", "interpolation"): "decoded codes on the straight line between two images' codes",
    ("noise", "noise"): "the same Gaussian noise on the codes of a plain autoencoder (A) and of the VAE (B), beside "
                        "each model's un-noised reconstruction; the title gives σ in units of each model's code "
                        "spread",
    ("anomaly", "roc"): "ROC curve",
    ("anomaly", "score_hist"): "scores of normal and anomalous images",
    ("anomaly", "worst"): "the highest-scoring images: input, reconstruction, error heat map",
    ("anomaly", "sample"): "images drawn at random: input, reconstruction, error heat map",
}


def analyse_command(folders: dict[str, bool]) -> str | None:
    """The one ``aelab analyse`` command line (paths quoted for the shell) that completes the runs and
    sweeps in ``folders`` (path -> whether a record is stale, which needs ``--redo``)."""
    if not folders:
        return None
    return "aelab analyse " + " ".join(map(shlex.quote, folders)) + (" --redo" if any(folders.values()) else "")


@dataclass
class RunFiles:
    """A finished run as its files say, without loading the model: what the report reads."""

    path: Path
    config: Config
    summary: dict[str, Any]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    """Analyses recorded for other weights than the run's (shown, and flagged)."""
    outdated: list[str] = field(default_factory=list)
    """Analyses recorded for these weights that ``manifest.current`` no longer counts (a figure deleted, an
    adopted record file changed): ``aelab analyse`` makes them again, so the report asks for that."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def family(self) -> str:
        return str(self.summary.get("family", self.config.model.type))

    @property
    def variational(self) -> bool:
        return self.family == "vae"

    def metrics_log(self) -> list[dict[str, Any]]:
        """``checkpoint.metrics_log`` (an older log in today's terms); none when the log is missing or unreadable."""
        from aelab.checkpoint import metrics_log

        try:
            return metrics_log(self.path / METRICS, self.config.to_dict())
        except (FileNotFoundError, RunError):
            return []

    def figures(self, name: str) -> dict[str, Path]:
        """The figures ``name`` recorded that are on disk."""
        rec = self.records.get(name) or {}
        return {k: self.path / rel for k, rel in rec.get("figures", {}).items() if (self.path / rel).is_file()}

    def numbers(self, name: str) -> dict[str, Any]:
        return (self.records.get(name) or {}).get("numbers") or {}


def read_run(path: Path) -> RunFiles:
    """The run's summary, config and manifest (a folder without summary.json is refused, as by ``load_run``)."""
    if not (path / SUMMARY).is_file():
        raise RunError(f"{path}: not a finished run (no summary.json); finish it with `aelab train "
                       f"{path / CONFIG} --out {path} --resume`")
    try:
        summary = json.loads((path / SUMMARY).read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path / SUMMARY}: not valid JSON ({exc.msg})") from None
    records = manifest.read(path)
    stamp = manifest.weights_stamp(path) if (path / WEIGHTS).is_file() else None
    stale = [n for n, r in records.items() if stamp is not None and r.get("weights") not in (None, stamp)]
    outdated = [n for n in records if stamp is not None and n not in stale and not manifest.current(path, n, records)]
    return RunFiles(path, load_config(path / CONFIG), summary, records, stale, outdated)


def missing(run: RunFiles) -> list[str]:
    """The analyses a complete report of this run shows that its manifest does not record."""
    from aelab.analyse import expected

    return [n for n in expected(run.variational) if n not in run.records]


def _figs(run: RunFiles, name: str) -> str:
    return "".join(figure(p, CAPTIONS.get((name, key), key.replace("_", " "))) for key, p in run.figures(name).items())


def _epochs(records: list[dict[str, Any]]) -> str:
    kl = any("train_kl" in r for r in records)
    keys = [k for k in EPOCH_LABELS if kl or k != "train_kl"]
    rows = [{"epoch": r.get("epoch"), **{EPOCH_LABELS[k]: r.get(k) for k in keys}}
            for r in records if "train_loss" in r]
    return f"<details><summary>Per epoch</summary>{table_html(rows, cls='compact')}</details>" if rows else ""


def lacking(run: RunFiles) -> str:
    """What the run lacks, in words ('' when its report is complete)."""
    absent = missing(run)
    return "; ".join(([f"not analysed yet: {', '.join(absent)}"] if absent else []) +
                     ([f"recorded for other weights: {', '.join(run.stale)}"] if run.stale else []) +
                     ([f"out of date (a figure or record file gone or changed): {', '.join(run.outdated)}"]
                      if run.outdated else []))


def run_section(run: RunFiles, report: Any) -> str:
    """A run's parts; ``report.contents[path]`` gets the names of those shown."""
    from aelab.cards import cards_for

    s = run.summary
    parts: list[str] = []
    shown: list[str] = []

    def part(name: str, title: str, body: str) -> None:
        if body.strip():
            parts.append(f'<section class="part" id="{esc(slug(str(run.path)))}-{name}"><h3>{esc(title)}</h3>'
                         f"{body}</section>")
            shown.append(name)

    note = lacking(run)
    if note:
        command = analyse_command({str(run.path): bool(run.stale)})
        report.hints.append(f"{run.path}: {note}; run `{command}`")
        report.to_analyse[str(run.path)] = bool(run.stale)
        parts.append(f'<p class="note">This run is {esc(note)}. Run <code>{esc(command)}</code>, then the report '
                     f"again.</p>")
    cfg = run.config
    where = s.get("evaluated_on", "val")
    part("metrics", "Metrics", key_values([
        ("model family", s.get("family")), ("data", cfg.data.source),
        ("images (train / validation)", f"{s.get('n_train', '?')} / {s.get('n_val', 0)}"),
        ("parameters", s.get("parameters")), ("input (C×H×W)", s.get("input_shape")),
        ("code shape", s.get("latent_shape")), ("compression ratio", s.get("compression_ratio")),
        ("epochs / iterations", f"{s.get('epochs')} / {s.get('steps')}"), ("batch size", s.get("batch_size")),
        ("train loss: the objective, train.loss on data.range (last epoch mean)", s.get("final_train_loss")),
        ("train MSE, pixels in [0, 1] (last epoch mean)", s.get("final_train_mse_01")),
        *([("train KL per image, nats (last epoch mean)", s["final_train_kl"])] if s.get("final_train_kl") is not None
          else []),
        (f"MSE ({where}, pixels in [0, 1])", s.get("mse")), (f"PSNR, dB ({where})", s.get("psnr")),
        (f"SSIM ({where})", s.get("ssim")),
        ("training time, s", s.get("wall_time_s")), ("images / s", s.get("images_per_s")),
        ("device / threads", f"{s.get('device')} / {s.get('threads')}")]) +
        f"<details><summary>Config</summary><pre>{esc((run.path / CONFIG).read_text())}</pre></details>")

    layers = [{"layer": r["name"], "type": r["type"], "output": r["output_shape"], "parameters": r["parameters"],
               "part": r["part"]} for r in run.numbers("architecture").get("layers", [])]
    part("architecture", "Architecture", _figs(run, "architecture") + (
        '<details open><summary>Layer table</summary>' + table_html(layers, cls="compact") + "</details>"
        if layers else ""))
    part("loss", "Loss", _figs(run, "loss") + _epochs(run.metrics_log()))
    part("reconstructions", "Reconstructions", _figs(run, "reconstructions"))
    part("latent", "Latent edits and traversal",
         _figs(run, "edits") + _figs(run, "traversal") + _figs(run, "interpolation"))

    samples = run.figures("samples")
    drawn = (run.numbers("samples").get("drawn_from") or
             ("the prior N(0, I)" if run.variational else "a distribution fitted to the training codes"))
    quality = run.numbers("quality")
    q = key_values([("samples compared", quality.get("n")), ("drawn from", quality.get("generated_from")),
                    ("Fréchet distance: samples", quality.get("fd_generated")),
                    ("Fréchet distance: reconstructions", quality.get("fd_reconstructed")),
                    ("Fréchet distance: train vs held-out (floor)", quality.get("fd_train_vs_held_out")),
                    ("sharpness, samples / real", quality.get("sharpness_ratio_generated")),
                    ("sharpness, reconstructions / real", quality.get("sharpness_ratio_reconstructed"))]) \
        if quality else ""
    part("generation", "Generated samples",
         "".join(figure(p, f"codes drawn from {drawn}, decoded") for p in samples.values()) + q +
         _figs(run, "noise"))

    if "anomaly" in run.records:
        a = run.numbers("anomaly")
        m = a.get("metrics") or {}
        tpr = next((k for k in m if k.startswith("tpr_at_")), None)
        body = key_values([("data", a.get("data")), ("score", a.get("kind")), ("images", m.get("n")),
                           ("anomalous", m.get("n_anomalous")), ("ROC AUC", m.get("roc_auc")),
                           ("PR AUC", m.get("pr_auc")), ("best F1", m.get("best_f1")),
                           ("at threshold", m.get("threshold")),
                           ("precision / recall", f"{fmt(m.get('precision'))} / {fmt(m.get('recall'))}"),
                           (tpr.replace("tpr_at_", "TPR at ").replace("pct_fpr", "% FPR") if tpr else "TPR",
                            m.get(tpr) if tpr else None)])
        part("anomaly", "Anomaly detection", body + _figs(run, "anomaly"))

    cards = cards_for(run)
    part("card", "Model card" + ("s" if len(cards) > 1 else ""), "".join(card_html(c) for c in cards))
    report.contents[str(run.path)] = shown
    return "".join(parts)


def sweep_section(path: Path, report: Any) -> tuple[str, list[Path]]:
    """The sweep's comparison table and its figures (when ``aelab sweep`` / ``aelab analyse`` drew them)."""
    from aelab import sweep as sw
    from aelab.sweepfile import label, load_sweep_dir
    from aelab.sweeptable import MD_HEADERS, format_cell, sweep_table

    sweep = load_sweep_dir(path)
    rows = sweep_table(path, sweep)
    finished = [path / r["run"] for r in rows]
    varied = ", ".join(sweep.varied) or "nothing"
    missing_runs = [v.name for v in sweep.variants if not (path / v.name / SUMMARY).exists()]
    note = (f'<p class="note">Not finished, left out: {esc(", ".join(missing_runs))}. Run the sweep again to '
            f"complete it.</p>") if missing_runs else ""
    losses = path / sw.LOSSES
    if finished and not losses.is_file():
        command = analyse_command({str(path): False})
        report.hints.append(f"{path}: sweep figures not drawn yet; run `{command}`")
        report.to_analyse.setdefault(str(path), False)
        note += f'<p class="note">The sweep\'s figures are not drawn yet: run <code>{esc(command)}</code>.</p>'

    legend = "".join(f"<li><code>{esc(v.name)}</code>: {esc(label(v.settings) or 'the base config')}</li>"
                     for v in sweep.variants if (path / v.name / SUMMARY).exists())
    # columns equal in every run go above the table, so the table shows what differs
    same = [c for c in (rows[0] if len(rows) > 1 else {}) if c != "run" and len({str(r.get(c)) for r in rows}) == 1]
    shared = "; ".join(f"{MD_HEADERS.get(c, c)} {format_cell(c, rows[0][c])}" for c in same)
    body = (f"<p>{len(rows)} runs in <code>{esc(path)}</code>, varying {esc(varied)}. Validation metrics are "
            f"computed on images in [0, 1], as is the train MSE; the train loss is each run's objective (train.loss on "
            f"data.range, + β·KL/D for a VAE), the mean over the last epoch: compare it only between runs of one "
            f"loss and range."
            + (f" The same in every run: {esc(shared)}." if shared else "") + f"</p>{note}"
            + table_html([{k: v for k, v in r.items() if k not in same} for r in rows], headers=MD_HEADERS,
                         formats=format_cell, cls="compact")
            + figure(losses if losses.is_file() else None, "training curve of every run, reconstruction MSE per "
                                                           "pixel on [0, 1] (the training objective for older runs, "
                                                           "as its axis says; moving average over the faint "
                                                           "per-iteration values; a dot where each run stopped)")
            + figure(path / sw.LATENT if (path / sw.LATENT).is_file() else None,
                     "validation PSNR and SSIM against code size; the top axis is the compression ratio")
            + (f'<details><summary>Runs</summary><ul class="runs">{legend}</ul></details>' if legend else ""))
    return body, finished


def overview(runs: list[RunFiles]) -> str:
    from aelab.logunits import labelled

    rows = [{"run": r.name, "family": r.family, "parameters": r.summary["parameters"],
             "code": r.summary["latent_shape"], "epochs": r.summary["epochs"], **labelled(r.summary),
             "time (s)": r.summary["wall_time_s"]} for r in runs]
    return table_html(rows)


def backbone(run: RunFiles) -> str:
    """What the encoder and decoder are built of: fcn, conv, multi_encoder (a VAE: its backbone)."""
    return str(getattr(run.config.model, "backbone", None) or run.config.model.type)


def _plain(run: RunFiles) -> bool:
    """A plain autoencoder (fcn or conv, trained without input noise): what a variant is measured against."""
    return run.family in ("fcn", "conv") and run.config.train.input_noise is None


def differences(run: RunFiles, ref: RunFiles) -> list[str]:
    """What differs between two runs besides the variant itself, in words ("code size (32 vs 10 elements)")."""
    t, u = run.config.train, ref.config.train
    pairs = [("backbone", backbone(run), backbone(ref), ""),
             ("code size", run.summary.get("latent_size"), ref.summary.get("latent_size"), " elements"),
             ("epochs", t.epochs, u.epochs, ""), ("batch size", t.batch_size, u.batch_size, ""),
             ("learning rate", t.lr, u.lr, "")]
    return [f"{name} ({fmt(a)} vs {fmt(b)}{unit})" for name, a, b, unit in pairs if a != b]


def reference(run: RunFiles, plain: list[RunFiles]) -> RunFiles:
    """The plain autoencoder most like ``run``: same backbone first, then same code size, then fewest other
    differences, then the higher PSNR."""
    return min(plain, key=lambda p: (backbone(p) != backbone(run),
                                     p.summary.get("latent_size") != run.summary.get("latent_size"),
                                     len(differences(run, p)), -p.summary["psnr"]))


def discussion(runs: list[RunFiles]) -> str:
    """Each variant against the plain autoencoder most like it (same backbone and code size when one was run),
    with the numbers measured here, what else differs between the two, and its paper."""
    from aelab.cards import cards_for, load_cards

    vanilla = [r for r in runs if r.family == "fcn" and _plain(r)]
    if not vanilla:
        return ""
    base = max(vanilla, key=lambda r: r.summary["psnr"])
    plain = [r for r in runs if _plain(r) and r.config.data == base.config.data]
    seen: dict[str, Any] = {}  # card id -> its best run by PSNR, among runs on the same data as the base
    for r in (r for r in runs if r.config.data == base.config.data):
        for c in cards_for(r):
            if c.id != "fcn" and (c.id not in seen or r.summary["psnr"] > seen[c.id].summary["psnr"]):
                seen[c.id] = r
    if not seen:
        return ""
    cards = load_cards()
    out = [f"<p>Each variant against the plain autoencoder most like it (same backbone and code size where one was "
           f"trained). The vanilla autoencoder <code>{esc(base.name)}</code>: {base.summary['parameters']:,} "
           f"parameters, validation PSNR {base.summary['psnr']:.2f} dB, SSIM {base.summary['ssim']:.3f}.</p><ul>"]
    for cid, r in seen.items():
        c = cards[cid]
        s = r.summary
        ref = reference(r, [p for p in plain if p is not r] or [base])
        rs = ref.summary
        other = differences(r, ref)
        if other and other[0].startswith(("backbone", "code size")):
            note = (f'<span class="unlike">Not like for like: <code>{esc(r.name)}</code> also differs from '
                    f"<code>{esc(ref.name)}</code> in {esc(', '.join(other))}, so the difference is not the "
                    f"variant's alone.</span> ")
        else:
            note = ("Like for like in backbone and code size" + (f"; it also differs in {esc(', '.join(other))}"
                                                                    if other else "") + ". ")
        out.append(
            f"<li><strong>{esc(c.title)}</strong>, measured on <code>{esc(r.name)}</code> against "
            f"<code>{esc(ref.name)}</code>: PSNR {s['psnr']:.2f} dB vs {rs['psnr']:.2f} "
            f"({s['psnr'] - rs['psnr']:+.2f}), SSIM {s['ssim']:.3f} vs {rs['ssim']:.3f} "
            f"({s['ssim'] - rs['ssim']:+.3f}), {s['parameters']:,} vs {rs['parameters']:,} parameters. {note}"
            f"<em>Advantage:</em> {esc(c.advantage)} <em>Disadvantage:</em> "
            f"{esc(c.disadvantage)} <span class=\"ref\">({esc(c.short_ref)}, "
            f'<a href="{esc(c.paper["url"])}">{esc(c.paper["title"])}</a>)</span></li>')
    out.append("</ul>")
    return "".join(out)
