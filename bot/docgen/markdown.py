"""Markdown pieces the generated pages share: table cells, tables, and numbers as people
read them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def cell(text: str) -> str:
    """Text that stays inside one table cell: no pipes splitting it, no line breaks."""
    return text.replace("|", "\\|").replace("\n", " ")


def number(value: Any) -> str:
    """A measured figure as the benchmarks print it: 3 significant digits, thousands marked."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if value else "0"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; columns that hold only figures are aligned right."""
    numeric = [all(_is_figure(row[index]) for row in rows) for index in range(len(columns))]
    lines = [
        "| " + " | ".join(cell(column) for column in columns) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _is_figure(text: str) -> bool:
    if text == "-":
        return True
    try:
        return math.isfinite(float(text.replace(",", "")))
    except ValueError:
        return False
