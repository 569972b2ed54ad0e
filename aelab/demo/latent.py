"""The demo's latent section: per model an edit figure, a traversal grid and an interpolation.

Computed by ``aelab.latent``, drawn by ``aelab.figures.latent``; the numbers go to each run's
``latent.json`` (so the report can find them) and to the demo's ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aelab import latent
from aelab.figures.latent import edit_figure, interpolation_figure, traversal_figure
from aelab.io import json_safe, write_json

if TYPE_CHECKING:
    from aelab.demo import Demo


def demo_section(demo: Demo) -> list[str]:
    """``aelab demo``: per model an edit figure (the assignment's two edits and two measured ones on
    one face), a traversal grid with the factor each element tracks, and an interpolation."""
    lines: list[str] = []
    numbers: dict[str, Any] = {}
    for key, run in demo.runs.items():
        pool = run.splits.full
        face = pool.by_ids([0])
        stats = latent.code_stats(run)
        top = latent.top_elements(run, run.encode(face)[0], 2)
        edits = ["0*=2", "2+=5", f"{top[0]}+={2 * stats['std'][top[0]]:.2g}",
                 f"{top[1]}-={2 * stats['std'][top[1]]:.2g}"]
        edited = latent.edit(run, face, edits)
        e_fig = edit_figure(edited, run.figures / "latent_edits.png",
                            f"{run.name}: latent edits of face id 0 ({run.latent_size}-element code)")
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
        tracked = "; ".join(f"z[{f['element']}] ~ {f['factor']} (r={f['r']:+.2f})" for f in t.get("factors", [])[:3])
        lines.append(f"latent traversal ({key}): {t['figure']}" + (f"  ({tracked})" if tracked else ""))
        lines.append(f"latent interpolation ({key}): {i['figure']}")
    demo.result["latent"] = numbers
    return lines
