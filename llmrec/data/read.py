"""Read the Amazon-M2 files exactly as released, CSV or parquet, into columnar frames.

Sessions become a polars frame with `prev_items: list[str]`, `locale: enum` and, for train
sessions, `next_item: str`. Every check that fails raises `DataFormatError` naming the file,
the row (1-based record number, header excluded) and the field.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.schema import (
    ID_LENGTH,
    LOCALE_DTYPE,
    LOCALES,
    MIN_SESSION_LENGTH,
    PRICE_PLACEHOLDER,
    PRODUCT_COLUMNS,
)

# numpy's printed string array: ['B0B7HSSDRB' 'B09BJWJD41'\n 'B09BVXHVVN']. Commas are
# tolerated so that Python-list dumps of the same data read too.
_PREV_ITEMS_PATTERN = r"^\[\s*'[^'\s,]+'(?:[\s,]+'[^'\s,]+')*\s*\]$"
_ID_PATTERN = r"[^'\s,\[\]]+"


def read_table(path: str | Path, columns: tuple[str, ...]) -> pl.DataFrame:
    """Read a CSV (every field as text, so ISBN ids keep their leading zeros) or a parquet file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema=False, quote_char='"')
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataFormatError(path, f"cannot be read: {str(error).splitlines()[0]}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing column '{missing[0]}' (has {', '.join(frame.columns)})", field=missing[0])
    return frame.select(columns)


def _first_row(mask: pl.Series) -> int:
    """1-based record number of the first True in a boolean mask."""
    return int(mask.arg_true()[0]) + 1


def parse_prev_items(values: pl.Series, path: str | Path) -> pl.Series:
    """Turn the `prev_items` column into `list[str]`, from numpy-printed strings or a list column."""
    if values.dtype == pl.String:
        malformed = ~values.str.contains(_PREV_ITEMS_PATTERN).fill_null(False)
        if malformed.any():
            row = _first_row(malformed)
            shown = values[row - 1]
            shown = "null" if shown is None else repr(shown[:60])
            raise DataFormatError(path, f"not a list of quoted ids: {shown}", row=row, field="prev_items")
        return values.str.extract_all(_ID_PATTERN).alias("prev_items")
    if values.dtype == pl.List(pl.String):
        if values.null_count():
            raise DataFormatError(path, "missing list", row=_first_row(values.is_null()), field="prev_items")
        return values
    raise DataFormatError(path, f"expected a list of strings, got {values.dtype}", field="prev_items")


def _check_ids(ids: pl.Series, path: str | Path, field: str, rows: pl.Series | None = None) -> None:
    """Every id is exactly ID_LENGTH characters (ASINs and ISBN-10s alike)."""
    bad = (ids.str.len_chars() != ID_LENGTH).fill_null(True)
    if bad.any():
        position = int(bad.arg_true()[0])
        row = (int(rows[position]) if rows is not None else position) + 1
        raise DataFormatError(
            path, f"id {ids[position]!r} is not {ID_LENGTH} characters", row=row, field=field
        )


def _parse_locale(values: pl.Series, path: str | Path) -> pl.Series:
    unknown = ~values.is_in(LOCALES).fill_null(False)
    if unknown.any():
        row = _first_row(unknown)
        raise DataFormatError(
            path, f"unknown locale {values[row - 1]!r} (expected one of {', '.join(LOCALES)})", row=row, field="locale"
        )
    return values.cast(LOCALE_DTYPE)


def read_sessions(path: str | Path, with_next_item: bool | None = None) -> pl.DataFrame:
    """Sessions in file order: `session_id` (row number from 0), `prev_items`, `locale`, [`next_item`].

    `with_next_item=None` keeps `next_item` when the file has it (train files do, test files not).
    """
    path = Path(path)
    if with_next_item is None:
        with_next_item = "next_item" in _column_names(path)
    columns = ("prev_items", "locale") + (("next_item",) if with_next_item else ())
    frame = read_table(path, columns)
    prev_items = parse_prev_items(frame["prev_items"], path)
    too_short = prev_items.list.len() < MIN_SESSION_LENGTH
    if too_short.any():
        row = _first_row(too_short)
        raise DataFormatError(
            path, f"session has {prev_items[row - 1].len()} item(s), needs at least {MIN_SESSION_LENGTH}",
            row=row, field="prev_items",
        )
    exploded = prev_items.rename("id").to_frame().with_row_index("row").explode("id")
    _check_ids(exploded["id"], path, "prev_items", rows=exploded["row"])
    sessions = pl.DataFrame(
        {
            "session_id": pl.int_range(0, frame.height, dtype=pl.UInt32, eager=True),
            "prev_items": prev_items,
            "locale": _parse_locale(frame["locale"], path),
        }
    )
    if with_next_item:
        _check_ids(frame["next_item"], path, "next_item")
        sessions = sessions.with_columns(frame["next_item"].cast(pl.String))
    return sessions


def read_products(path: str | Path) -> pl.DataFrame:
    """The product table: one row per (id, locale), text attributes null when empty, price null
    when missing or the release's placeholder."""
    path = Path(path)
    frame = read_table(path, PRODUCT_COLUMNS)
    _check_ids(frame["id"], path, "id")
    locale = _parse_locale(frame["locale"], path)
    price = frame["price"]
    if price.dtype == pl.String:
        price = price.str.strip_chars()
        parsed = price.cast(pl.Float64, strict=False)
        bad = parsed.is_null() & price.is_not_null() & (price != "")
        if bad.any():
            row = _first_row(bad)
            raise DataFormatError(path, f"not a number: {price[row - 1]!r}", row=row, field="price")
        price = parsed
    price = price.cast(pl.Float64)
    price = pl.select(pl.when((price - PRICE_PLACEHOLDER).abs() < 1e-6).then(None).otherwise(price)).to_series()
    text = [
        pl.when(pl.col(c).cast(pl.String).str.len_bytes() > 0).then(pl.col(c).cast(pl.String)).alias(c)
        for c in PRODUCT_COLUMNS
        if c not in ("id", "locale", "price")
    ]
    products = frame.with_columns(*text, locale=locale, price=price.alias("price"))
    duplicated = products.select(pl.struct("id", "locale").is_duplicated()).to_series()
    if duplicated.any():
        first_seen = products.select(pl.struct("id", "locale").is_first_distinct()).to_series()
        row = _first_row(duplicated & ~first_seen)
        raise DataFormatError(
            path, f"duplicate product {products['id'][row - 1]!r} in locale {products['locale'][row - 1]}",
            row=row, field="id",
        )
    return products


def read_ground_truth(path: str | Path, task: int) -> pl.DataFrame:
    """Labels of a test file: `next_item` + `locale` (tasks 1, 2) or `next_item_title` (task 3)."""
    path = Path(path)
    names = _column_names(path)
    if task == 3:
        title = "next_item_title" if "next_item_title" in names else "title"
        frame = read_table(path, (title,)).rename({title: "next_item_title"})
        return frame.with_columns(pl.col("next_item_title").fill_null(""))
    frame = read_table(path, ("next_item", "locale"))
    _check_ids(frame["next_item"], path, "next_item")
    return frame.with_columns(_parse_locale(frame["locale"], path))


def _column_names(path: Path) -> list[str]:
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.suffix == ".parquet":
        return pl.scan_parquet(path).collect_schema().names()
    with path.open(encoding="utf-8") as handle:
        return handle.readline().strip().split(",")
