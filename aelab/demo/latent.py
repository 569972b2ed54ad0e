"""The demo's latent section: per model an edit figure, a traversal grid and an interpolation.

Computed by ``aelab.latent``, drawn by ``aelab.figures.latent``; the numbers go to each run's
``latent.json`` (so the report can find them) and to the demo's ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aelab import latent
from aelab.figures.latent import edit_figure, interpolation_figure, traversal_figure
from aelab.io import json_safe, write_json

if TYPE_CHECKING:
    from aelab.demo import Demo


SPREAD = 0.25
"""An element is edited only when its std over the data is at least this fraction of the largest element's:
an edit of a near-constant element decodes to the reconstruction itself (a blank row in the figure)."""


def choose_edits(code: np.ndarray, std: np.ndarray, top: list[int]) -> list[str]:
    """Edits that visibly change the face, all on elements with a large spread (``SPREAD``): the one whose
    value is largest in its own std doubled (``i*=2``, the assignment's kind of edit), the widest-spread one
    moved by +2 std, and the two of ``top`` (largest measured effect first) moved by +2 and −2 std."""
    z, sd = np.asarray(code, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
    live = sd >= SPREAD * sd.max()
    used: list[int] = []
    out: list[str] = []
    ratio = np.where(live, np.abs(z) / np.maximum(sd, 1e-12), -1.0)
    scaled = int(ratio.argmax())
    if np.abs(z[scaled]) >= sd[scaled]:  # doubling moves it by at least one std
        out.append(f"{scaled}*=2")
        used.append(scaled)
    widest = int(np.where(np.isin(np.arange(z.size), used), -1.0, sd).argmax())
    out.append(f"{widest}+={2 * sd[widest]:.2g}")
    used.append(widest)
    for e, sign in zip((e for e in top if live[e] and e not in used), "+-", strict=False):
        out.append(f"{e}{sign}={2 * sd[e]:.2g}")
    return out


def demo_section(demo: Demo) -> list[str]:
    """``aelab demo``: per model an edit figure (edits of one face on elements that vary over the data,
    ``choose_edits``), a traversal grid with the two factors each element tracks, and an interpolation."""
    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for key, run in demo.runs.items():
        pool = run.splits.full
        face = pool.by_ids([0])
        stats = latent.code_stats(run)
        code = run.encode(face)[0]
        edits = choose_edits(code, stats["std"], latent.top_elements(run, code, 4))
        edited = latent.edit(run, face, edits)
        e_fig = edit_figure(edited, run.figures / "latent_edits.png",
                            f"{run.name}: latent edits of face id 0 ({run.latent_size}-element code; "
                            f"elements that vary over the data)")
        kind = "prior" if run.variational else "data"
        swept = latent.traverse(run, face, top=6 if demo.quick else 8, range=kind, factors=bool(pool.factors))
        t_fig = traversal_figure(swept, run.figures / "latent_traversal.png",
                                 f"{run.name}: latent traversal of face id 0 ({kind} range)")
        path = latent.interpolate(run, face, pool.by_ids([17]), steps=8)
        i_fig = interpolation_figure(path, run.figures / "latent_interpolation.png",
                                     f"{run.name}: {path.mode} interpolation in the code")
        e = {"figure": str(e_fig), **edited.to_dict()}
        t = {"figure": str(t_fig), **swept.to_dict()}
        i = {"figure": str(i_fig), **path.to_dict()}
        numbers[key] = {"edits": [{k: x[k] for k in ("edit", "mean_abs_change", "psnr")} for x in e["edits"]],
                        "traversal": t["elements"], "factors": t.get("factors", []),
                        "figures": [e["figure"], t["figure"], i["figure"]]}
        write_json(run.path / "latent.json", json_safe({"edit": e, "traversal": t, "interpolation": i}))
        changes = ", ".join(f"{x['edit']} {x['mean_abs_change']:.3f}" for x in e["edits"])
        lines.append(f"latent edits ({key}): {e['figure']}  (mean |change| per edit: {changes})")
        tracked = "; ".join(f"z[{f['element']}] ~ " + ", ".join(f"{g['factor']} (r={g['r']:+.2f})"
                                                              for g in f.get("strongest", [f]))
                            for f in t.get("factors", [])[:3])
        lines.append(f"latent traversal ({key}): {t['figure']}" + (f"  ({tracked})" if tracked else ""))
        lines.append(f"latent interpolation ({key}): {i['figure']}")
    demo.result["latent"] = numbers
    return lines
