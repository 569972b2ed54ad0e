"""A sweep's table: one row per finished run (its varied settings, size and final metrics) as
``table.csv`` and ``table.md``, and how its cells and headers read in the CLI and the report.

The headers carry their units from ``aelab.logunits``: the train loss is each run's objective, the
MSEs are on [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from aelab.io import atomic_write
from aelab.logunits import EPOCH_LABELS, LABELS
from aelab.runfolder import CONFIG, SUMMARY
from aelab.sweepfile import Sweep, get_key, load_sweep_dir
from aelab.tables import rows_csv

TABLE_CSV, TABLE_MD = "table.csv", "table.md"

def _columns(sweep: Sweep) -> list[str]:
    return [k for k in sweep.varied if not any(isinstance(v.settings.get(k), dict) for v in sweep.variants)]


def sweep_table(out: str | Path, sweep: Sweep | None = None) -> list[dict[str, Any]]:
    """One row per finished run: its settings (read back from the run's config), size and final metrics."""
    out = Path(out)
    sweep = sweep or load_sweep_dir(out)
    rows = []
    for v in sweep.variants:
        folder = out / v.name
        try:
            s = json.loads((folder / SUMMARY).read_text())
            cfg = yaml.safe_load((folder / CONFIG).read_text())
        except (FileNotFoundError, json.JSONDecodeError, yaml.YAMLError):
            continue
        row: dict[str, Any] = {"run": v.name}
        for key in _columns(sweep):
            value = get_key(cfg, key)
            row[key] = json.dumps(value) if isinstance(value, list | dict) else value
        if "model.type" not in row:
            row["family"] = s["family"]
        row.update({"parameters": s["parameters"], "latent_size": s["latent_size"],
                    "compression": s["compression_ratio"]})
        if "train.epochs" not in row:
            row["epochs"] = s["epochs"]
        row.update({
            "final_train_loss": s["final_train_loss"], "final_train_mse_01": s.get("final_train_mse_01"),
            "val_mse": s["mse"], "val_psnr": s["psnr"],
            "val_ssim": s["ssim"], "time_s": s["wall_time_s"],
        })
        if s.get("evaluated_on", "val") != "val":
            row["evaluated_on"] = s["evaluated_on"]
        rows.append(row)
    return rows


_MD_FORMATS = {"parameters": "{:,}", "latent_size": "{:,}", "compression": "{:.4g}×", "final_train_loss": "{:.5f}",
               "final_train_mse_01": "{:.5f}", "val_mse": "{:.5f}", "val_psnr": "{:.2f}", "val_ssim": "{:.4f}",
               "time_s": "{:.1f}"}
MD_HEADERS = {**{k: LABELS[k] for k in ("final_train_loss", "final_train_mse_01")},
              **{k: EPOCH_LABELS[k] for k in ("val_mse", "val_psnr", "val_ssim")},
              "time_s": "time (s)", "latent_size": "code size", "compression": "compression"}
"""Column headers (a column not named keeps its key): the summary's numbers under ``logunits``' labels."""


def format_cell(key: str, value: Any) -> str:
    """A cell of ``table.md`` (and the CLI's and the report's sweep tables)."""
    if value is None:
        return "null" if "." in key else "-"  # a setting left null (a spatial code) vs a missing number
    fmt = _MD_FORMATS.get(key)
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def table_md(rows: list[dict[str, Any]]) -> str:
    """``table.md``: the rows as a Markdown table, numbers right-aligned."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = [MD_HEADERS.get(c, c) for c in cols]
    numeric = {c for c in cols if any(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
                                      for r in rows)}
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---:" if c in numeric else "---" for c in cols) + " |"]
    lines += ["| " + " | ".join(format_cell(c, r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, sweep: Sweep, rows: list[dict[str, Any]]) -> dict[str, str]:
    """table.csv and table.md (the figures are drawn above this layer: ``aelab.analyse.sweep_figures``)."""
    files: dict[str, str] = {}
    if not rows:
        return files
    atomic_write(out / TABLE_CSV, rows_csv(rows))
    atomic_write(out / TABLE_MD, table_md(rows))
    files.update(table_csv=str(out / TABLE_CSV), table_md=str(out / TABLE_MD))
    return files
