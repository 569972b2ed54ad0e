"""Rows of numbers as a table: a list of dicts for code, CSV text, a pandas DataFrame on request, and how one
number is written in a cell (the CLI's tables and the notebook displays).

pandas is not a dependency of aelab: ``to_pandas`` imports it only when asked and says how to
install it when it is missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from aelab.errors import AelabError


def cell(value: Any, digits: int = 4) -> str:
    """A number as a table cell (terminal, notebook, report): floats to ``digits`` significant digits
    (whole above 1e5, with separators; NaN as -), ints with thousands separators, None as -."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as CSV text, columns in the order they first appear (a missing value is an empty cell)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_pandas(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``pandas.DataFrame`` of ``rows`` (one row per dict, columns in the order they first appear)."""
    try:
        import pandas as pd
    except ImportError:
        raise AelabError("to_pandas() needs pandas, which aelab does not install; pip install pandas "
                         "(or use the rows: result.table is a list of dicts)") from None
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame(list(rows), columns=columns)
