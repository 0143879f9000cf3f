"""Numbers and tables as text: the one place every report and command formats its figures.

Example:
    >>> rows = [["model", "test acc"], ["quantum", pm({"mean": 0.8, "ci": 0.05})],
    ...         ["classical", pm({"mean": 0.75, "ci": float("nan")})]]
    >>> print("\\n".join(text_table(rows)))
    model           test acc
    ---------  -------------
    quantum    0.800 ± 0.050
    classical          0.750
    >>> print(md_table(rows))
    | model | test acc |
    |---|---|
    | quantum | 0.800 ± 0.050 |
    | classical | 0.750 |
"""

from __future__ import annotations

import json
import math
from typing import Any


def to_json(value: Any, indent: int | None = 2) -> str:
    """JSON text with NaN and infinities written as null (strict JSON for scripts).

    >>> to_json({"p": float("nan"), "x": [1.5]}, indent=None)
    '{"p": null, "x": [1.5]}'
    """

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=indent)


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; ``n/a`` for None or NaN.

    >>> fmt(0.12345), fmt(float("nan")), fmt(2.0, 1)
    ('0.123', 'n/a', '2.0')
    """
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def num(x: float) -> str:
    """Three significant digits; ``n/a`` for NaN (test statistics, p-values).

    >>> num(0.000123456), num(float("nan"))
    ('0.000123', 'n/a')
    """
    return "n/a" if math.isnan(x) else f"{x:.3g}"


def pm(stat: dict[str, float], digits: int = 3) -> str:
    """A :func:`qepi.experiments.stats.mean_ci` as ``mean ± ci`` (the mean alone without a
    CI, ``n/a`` without a mean)."""
    if math.isnan(stat["mean"]):
        return "n/a"
    ci = "" if math.isnan(stat["ci"]) else f" ± {fmt(stat['ci'], digits)}"
    return fmt(stat["mean"], digits) + ci


def value_text(value: Any) -> str:
    """A config value as TOML-like text: strings bare, the rest as JSON.

    >>> value_text("classical"), value_text(0.05), value_text(True), value_text([0, 1])
    ('classical', '0.05', 'true', '[0, 1]')
    """
    return value if isinstance(value, str) else json.dumps(value)


def text_table(rows: list[list[str]], left: int = 1) -> list[str]:
    """Lines of a plain-text table: the header, a rule, then the rows; the first ``left``
    columns are left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return [line(rows[0]), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])]


def md_table(rows: list[list[str]], right: int | None = None) -> str:
    """A Markdown table of a header and rows; columns from index ``right`` on are
    right-aligned (default: no alignment marks)."""
    marks = ["---" if right is None or i < right else "---:" for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(marks) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


__all__ = ["fmt", "md_table", "num", "pm", "text_table", "to_json", "value_text"]
