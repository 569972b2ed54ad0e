"""What each code element moves, shown beside its slider: the two generating factors it tracks most
(Pearson r over the run's default split, from ``aelab.latent.factor_table``, the table ``aelab traverse
--factors`` prints) and its measured effect on the decode (``aelab.latent.element_effects``: the mean
|pixel change|, pixels in [0, 1], with the element alone at either end of its slider range, from the
data's mean code). Both are computed once per run and element, then kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.errors import DataError

if TYPE_CHECKING:
    from aelab.serve.state import LoadedRun

MAX_ELEMENTS = 256
"""Most elements one GET /api/elements asks about."""
FACTORS_SHOWN = 2
"""Strongest factors named per element."""


def parse_elements(text: str | None, loaded: LoadedRun) -> list[int]:
    """``"0,5,9"`` -> [0, 5, 9], each a flat index of the run's code (None: the run's sliders).
    Raises ``ValueError`` with the message the 422 carries."""
    if text is None:
        return loaded.ranking()[0]
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("elements: give element indices like 0,5,9")
    if len(parts) > MAX_ELEMENTS:
        raise ValueError(f"elements: {len(parts)} given; at most {MAX_ELEMENTS} per request")
    dims = []
    n = loaded.run.latent_size
    for p in parts:
        q = p.strip()
        if not q.isdigit():
            raise ValueError(f"elements: '{q[:20]}' is not an element index (use 0..{n - 1})")
        if len(q) > 16 or int(q) >= n:  # (16 digits: int() never sees a huge string)
            raise ValueError(f"elements: {q[:20]} is outside the code of {n} elements (use 0..{n - 1})")
        dims.append(int(q))
    return list(dict.fromkeys(dims))



def element_facts(loaded: LoadedRun, dims: list[int]) -> dict[str, Any]:
    """The body of GET /api/elements for ``dims`` (see the module docstring)."""
    from aelab.latent import code_stats, element_effects, factor_table, strongest

    run = loaded.run
    todo = [d for d in dims if np.isnan(loaded.effects[d])]
    if todo:
        low, high = loaded.ranges()
        with loaded.lock:
            mean = np.asarray(code_stats(run, loaded.data)["mean"], np.float32)
            loaded.effects[todo] = element_effects(run, mean, (low, high), dims=todo)[todo]
    table, note = None, None
    with loaded.lock:
        try:
            table = factor_table(run, loaded.data)  # cached on the Run after the first call
        except DataError as exc:
            note = str(exc)
    return {"run": loaded.key, "data": loaded.data_label, "range": loaded.range_kind, "factors_note": note,
            "elements": [{"element": d, "effect": float(loaded.effects[d]),
                          "factors": strongest(table[d]["all"], FACTORS_SHOWN) if table is not None else None}
                         for d in dims]}
