"""A user's own interaction log: `user,item,timestamp` (CSV or parquet; timestamps numbers or
date-times) plus an item table `item,title[,description,brand,categories]`."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.importers.folder import ImportConfig, Source, clean_text, write_folder
from llmrec.data.read import read_table, require_text

LOG_COLUMNS = ("user", "item", "timestamp")
ITEM_TABLE_COLUMNS = ("item", "title")
OPTIONAL_ITEM_COLUMNS = ("description", "brand", "categories")


def import_csv(interactions: Path, items: Path, out: Path, config: ImportConfig | None = None) -> Path:
    """Convert an interaction log and its item table into a leave-one-out llmrec data folder
    (see `llmrec.data.importers.folder`). A user's items are ordered by timestamp, ties by file
    order; users keep the order of their first interaction. Malformed input is a one-line
    `DataFormatError` naming the file, the row and the field."""
    interactions, items = Path(interactions), Path(items)
    source = Source(sequences=interactions, items=items, user_field="user", item_field="item")
    catalogue = read_item_table(items)
    return write_folder(read_log(interactions), catalogue, out, config or ImportConfig(), source, origin="csv")


def read_log(path: Path) -> pl.DataFrame:
    """One row per user (first-appearance order): `user`, `row` (its first record), `items`
    (oldest first) and `rows` (their records)."""
    frame = read_table(path, LOG_COLUMNS).with_row_index("row", offset=1)
    frame = frame.with_columns(_keys(frame, path, "user"), _keys(frame, path, "item"), _times(frame["timestamp"], path))
    ordered = frame.sort(pl.col("row").min().over("user"), "timestamp", "row")
    return (
        ordered.group_by("user", maintain_order=True)
        .agg(pl.col("row").min(), pl.col("item").alias("items"), pl.col("row").alias("rows"))
        .select("user", "row", "items", "rows")
    )


def read_item_table(path: Path) -> pl.DataFrame:
    """The catalogue: `item`, `row`, cleaned `title` (required), `desc`, `brand`, `categories`."""
    frame = read_table(path, ITEM_TABLE_COLUMNS, optional=OPTIONAL_ITEM_COLUMNS).with_row_index("row", offset=1)
    frame = require_text(
        frame.with_columns(_keys(frame, path, "item")),
        path,
        ("title", *[c for c in OPTIONAL_ITEM_COLUMNS if c in frame.columns]),
    )
    again = frame["item"].is_duplicated() & ~frame["item"].is_first_distinct()
    if again.any():
        row = int(again.arg_true()[0])
        raise DataFormatError(path, f"item {frame['item'][row]!r} is listed twice", row=row + 1, field="item")
    columns = {"desc": "description", "brand": "brand", "categories": "categories"}
    catalogue = frame.select(
        "item",
        pl.col("row").cast(pl.Int64),
        "title",
        *[
            (pl.col(source) if source in frame.columns else pl.lit(None, pl.String)).alias(name)
            for name, source in columns.items()
        ],
    )
    catalogue = catalogue.with_columns(clean_text(catalogue[c]) for c in ("title", "desc", "brand", "categories"))
    untitled = catalogue["title"].is_null()
    if untitled.any():
        row = int(untitled.arg_true()[0])
        raise DataFormatError(path, f"item {catalogue['item'][row]!r} has no title", row=row + 1, field="title")
    return catalogue


def _keys(frame: pl.DataFrame, path: Path, column: str) -> pl.Series:
    """User or item keys as text (integer keys of a parquet log too); a missing one is an error."""
    values = frame[column]
    if values.dtype.is_integer():
        values = values.cast(pl.String)
    values = require_text(values.to_frame(), path, (column,))[column].str.strip_chars()
    missing = values.is_null() | (values == "")
    if missing.any():
        row = int(missing.arg_true()[0])
        raise DataFormatError(path, f"missing {column}", row=row + 1, field=column)
    return values


def _times(values: pl.Series, path: Path) -> pl.Series:
    """Timestamps as sortable numbers: all numbers (e.g. unix seconds) or all date-times,
    decided by the first row; a row that does not fit is an error."""
    if values.dtype.is_numeric() or values.dtype.is_temporal():
        parsed = values.cast(pl.Float64)
    else:
        text = require_text(values.to_frame(), path, (values.name,))[values.name].str.strip_chars()
        numbers = text.cast(pl.Float64, strict=False)
        if numbers.len() and numbers[0] is not None:
            parsed = numbers
        else:
            try:
                parsed = text.str.to_datetime(strict=False, time_unit="us").dt.epoch("us").cast(pl.Float64)
            except pl.exceptions.PolarsError:  # no date-time format fits the first value
                parsed = pl.Series(values.name, [None] * len(text), dtype=pl.Float64)
    bad = (parsed.is_null() | parsed.is_nan() | parsed.is_infinite()).fill_null(True)
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataFormatError(path, f"not a number or a date-time: {values[row]!r}", row=row + 1, field="timestamp")
    return parsed.alias("timestamp")
