"""Tables for the terminal: metrics overall and per locale, any frame as a rich table."""

from __future__ import annotations

import polars as pl
from rich.table import Table


def metrics_table(metrics: dict, title: str) -> Table:
    """`{"overall": {...}, "per_locale": {...}}` as one row per locale, overall first."""
    rows = [{"locale": "overall", **metrics["overall"]}] + [
        {"locale": k, **v} for k, v in metrics["per_locale"].items()
    ]
    return rich_table(pl.DataFrame(rows), title)


def rich_table(frame: pl.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, justify="left" if frame[column].dtype in (pl.String, pl.Categorical) else "right")
    for row in frame.iter_rows():
        table.add_row(*(format_value(v) for v in row))
    return table


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
