"""Read the Amazon-M2 files exactly as released, CSV or parquet, into columnar frames.

Sessions become a polars frame with `prev_items: list[str]`, `locale: enum` and, for train
sessions, `next_item: str`. Every check that fails raises `DataFormatError` naming the file,
the row (1-based record number, header excluded) and the field; column-wide problems (a
missing column, a parquet column of the wrong type) name the field only.

CSV files must be well-formed (RFC 4180): every record has the header's number of fields and
a quote only ever wraps a whole field. polars' parser pads short records, reads a blank line as
a row of nulls and some stray quotes as text without a word: cheap counts of separators and
quotes catch these, and only then is the record structure scanned (`check_csv_records`), which
names the row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.schema import (
    ID_LENGTH,
    LOCALE_DTYPE,
    LOCALES,
    MIN_SESSION_LENGTH,
    OPTIONAL_PRODUCT_COLUMNS,
    PRICE_PLACEHOLDER,
    PRODUCT_COLUMNS,
)

# numpy's printed string array: ['B0B7HSSDRB' 'B09BJWJD41'\n 'B09BVXHVVN']. Commas are
# tolerated so that Python-list dumps of the same data read too.
_PREV_ITEMS_PATTERN = r"^\[\s*'[^'\s,]+'(?:[\s,]+'[^'\s,]+')*\s*\]$"
_ID_PATTERN = r"[^'\s,\[\]]+"
_ID_FORMAT = rf"^[0-9A-Za-z]{{{ID_LENGTH}}}$"
_VALID_ID = rf"'[0-9A-Za-z]{{{ID_LENGTH}}}'"
_PREV_ITEMS_STRICT = rf"^\[\s*{_VALID_ID}(?:[\s,]+{_VALID_ID})*\s*\]$"
_QUOTED_FIELD = r'"(?:[^"]|"")*"'
_FIELD_MARK = "\x00"  # stands for a quoted field while counting a record's separators
_MISPLACED_MARK = rf"[^,]{_FIELD_MARK}|{_FIELD_MARK}[^,]"


def read_table(path: str | Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pl.DataFrame:
    """`columns` (required) then those of `optional` that the file has, from a CSV (every field
    as text, so ISBN ids keep their leading zeros) or a parquet file."""
    path = Path(path)
    return select_columns(load_table(path), path, columns, optional)


def select_columns(
    frame: pl.DataFrame, path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()
) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing column '{missing[0]}' (has {', '.join(frame.columns)})", field=missing[0])
    return frame.select(*columns, *[c for c in optional if c in frame.columns])


def load_table(path: Path) -> pl.DataFrame:
    """Every column of a CSV or parquet file."""
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.suffix == ".parquet":
        try:
            return pl.read_parquet(path)
        except (Exception, pl.exceptions.PanicException) as error:  # noqa: BLE001 (a damaged file fails anywhere in the decoder)
            raise DataFormatError(path, f"not a readable parquet file: {_first_line(error)}") from None
    data = path.read_bytes()
    try:
        frame = pl.read_csv(data, infer_schema=False, quote_char='"')
    except pl.exceptions.PolarsError as error:
        frame, problem = None, _first_line(error)
    if frame is not None and _plain_header(data) and _counts_agree(data, frame):
        return frame
    # Something is off or unusual (a parse error, a short record, a blank line, quotes in the
    # header): scan the records, which names the first bad one.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataFormatError(path, f"not UTF-8 text (line {line})") from None
    records = check_csv_records(text, path)
    if frame is not None and frame.height == records - 1:  # well-formed, but quoted more than needed
        return frame
    raise DataFormatError(
        path,
        f"cannot be read: {problem if frame is None else f'{frame.height} rows parsed from {records - 1} records'}",
    )


def _plain_header(data: bytes) -> bool:
    """A first line of distinct names without quotes: polars would skip a blank first line,
    rename a repeated name and read a malformed quoted header leniently."""
    end = data.find(b"\n")
    header = (data if end < 0 else data[:end]).removesuffix(b"\r")
    names = header.split(b",")
    return b'"' not in header and any(names) and len(set(names)) == len(names)


def _counts_agree(data: bytes, frame: pl.DataFrame) -> bool:
    """Whether the file's commas and quotes are exactly those of the parsed header and rows
    written with quotes only where needed: commas are the separators plus those inside values
    (polars pads a short record and reads a blank line as a row of nulls without a word; both
    break this), quotes are two per value that needs them (empty, or holding a quote, comma or
    line break) plus two per quote inside (polars reads some stray quotes as text; any breaks
    this). A file quoted more than needed fails too and is then checked record by record."""
    inside = sum(name.count(",") for name in frame.columns)
    quotes = 0
    if frame.height:
        counts = frame.select(
            pl.sum_horizontal(pl.col(c).str.count_matches(",", literal=True).sum() for c in frame.columns).alias(
                "commas"
            ),
            pl.sum_horizontal(pl.col(c).str.count_matches('"', literal=True).sum() for c in frame.columns).alias(
                "quotes"
            ),
            pl.sum_horizontal(
                ((pl.col(c) == "") | pl.col(c).str.contains('[",\r\n]')).sum() for c in frame.columns
            ).alias("quoted"),
        ).row(0, named=True)
        inside += counts["commas"]
        quotes = 2 * (counts["quotes"] + counts["quoted"])
    return data.count(b",") == (frame.width - 1) * (frame.height + 1) + inside and data.count(b'"') == quotes


def check_csv_records(text: str, path: Path) -> int:
    """Check that every record of a CSV text has the header's fields and that quotes wrap whole
    fields; returns the number of records (header included).

    Column-wise: a physical line starts inside a quoted field when the quotes before it are odd
    in number (an escaped `""` adds two). Each line, closed with virtual quotes where a field
    runs on, has its quoted fields replaced by a mark; what remains must hold no quote, the
    marks must sit between separators, and the separators of a record add up to the header's.
    """
    if not text.strip():
        raise DataFormatError(path, "empty file (no header)")
    lines = pl.Series("line", text.split("\n"))
    if text.endswith("\n"):
        lines = lines.head(-1)
    quotes = lines.str.count_matches('"', literal=True).cast(pl.Int64)
    after = quotes.cum_sum()
    frame = pl.DataFrame(
        {"line": lines, "opened": (after - quotes) % 2 == 1, "closed": after % 2 == 0, "quoted": quotes > 0}
    )
    if "\r" in text:
        frame = frame.with_columns(
            pl.when("closed").then(pl.col("line").str.strip_suffix("\r")).otherwise("line").alias("line")
        )
    frame = frame.with_row_index("index").with_columns((~pl.col("opened")).cum_sum().alias("record") - 1)
    # Only lines with or inside quotes need the regular expressions; the others count commas.
    probe = pl.concat_str(
        pl.when("opened").then(pl.lit('"')).otherwise(pl.lit("")),
        "line",
        pl.when("closed").then(pl.lit("")).otherwise(pl.lit('"')),
    )
    marked = frame.filter(pl.col("quoted") | pl.col("opened")).select(
        "index", probe.str.replace_all(_QUOTED_FIELD, _FIELD_MARK).alias("m")
    )
    marked = marked.select(
        "index",
        pl.col("m").str.count_matches(",", literal=True).alias("separators"),
        (pl.col("m").str.contains('"', literal=True) | pl.col("m").str.contains(_MISPLACED_MARK)).alias("bad_quote"),
    )
    per_line = frame.with_columns(
        pl.col("line").str.count_matches(",", literal=True).alias("separators"), pl.lit(False).alias("bad_quote")
    ).update(marked, on="index")
    records = per_line.group_by("record", maintain_order=True).agg(
        pl.col("separators").sum(), pl.col("bad_quote").any()
    )
    record_text = lambda row: "\n".join(per_line.filter(pl.col("record") == row)["line"].to_list())
    if records["bad_quote"][0]:
        raise DataFormatError(path, "malformed header (a stray quote?)")
    try:
        header = next(csv.reader([record_text(0)]), [])
    except csv.Error as error:
        raise DataFormatError(path, f"malformed header: {error}") from None
    if not "".join(header).strip():
        raise DataFormatError(path, "the first line holds no header")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise DataFormatError(path, "column named twice in the header", field=duplicated[0])
    expected = len(header) - 1
    wrong = records.filter(pl.col("bad_quote") | (pl.col("separators") != expected)).head(1)
    if wrong.height:
        row, separators, bad_quote = wrong.row(0)
        record = record_text(row)
        if bad_quote:
            raise DataFormatError(
                path, "a quote inside a field that is not quoted as a whole", row=row, field=_field_at(record, header)
            )
        if not record.strip():
            raise DataFormatError(
                path, f"empty line where a record of {len(header)} fields belongs", row=row, field=header[0]
            )
        if separators < expected:
            raise DataFormatError(
                path,
                f"record has {separators + 1} of the header's {len(header)} fields",
                row=row,
                field=header[separators + 1],
            )
        raise DataFormatError(
            path,
            f"record has {separators + 1} fields, the header {len(header)} (an unquoted comma?)",
            row=row,
            field=header[-1],
        )
    if not per_line["closed"][-1]:
        row = records.height - 1
        raise DataFormatError(
            path,
            "quoted field never closed (a missing '\"'?)",
            row=row or None,
            field=_field_at(record_text(row), header),
        )
    return records.height


def _field_at(record: str, header: list[str]) -> str:
    """The column in which a record's quoting breaks (error messages only)."""
    inside, field, position = False, 0, 0
    while position < len(record):
        char = record[position]
        if char == '"' and inside and record[position + 1 : position + 2] == '"':
            position += 1  # an escaped quote
        elif char == '"' and inside:
            if record[position + 1 : position + 2] not in ("", ",", "\n"):
                break
            inside = False
        elif char == '"':
            if position and record[position - 1] not in (",", "\n"):
                break
            inside = True
        elif char == "," and not inside:
            field += 1
        position += 1
    return header[min(field, len(header) - 1)]


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def require_text(frame: pl.DataFrame, path: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    """Columns that must hold text: categorical and all-null columns become strings, any other
    type is an error naming the column."""
    casts = []
    for column in columns:
        dtype = frame.schema[column]
        if dtype in (pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum):
            casts.append(pl.col(column).cast(pl.String))
        elif dtype != pl.String:
            raise DataFormatError(path, f"expected text, got {dtype}", field=column)
    return frame.with_columns(casts) if casts else frame


def _first_row(mask: pl.Series) -> int:
    """1-based record number of the first True in a boolean mask."""
    return int(mask.arg_true()[0]) + 1


def parse_prev_items(values: pl.Series, path: str | Path) -> pl.Series:
    """Turn the `prev_items` column into `list[str]` of valid ids, from numpy-printed strings or a
    list column. Printed lists are checked by one pattern that also checks the ids; only a row
    that fails it is looked at again, to say what is wrong."""
    if values.dtype == pl.String:
        malformed = ~values.str.contains(_PREV_ITEMS_STRICT).fill_null(False)
        if malformed.any():
            row = _first_row(malformed)
            shown = values[row - 1]
            if shown is not None and values.slice(row - 1, 1).str.contains(_PREV_ITEMS_PATTERN).all():
                ids = values.slice(row - 1, 1).str.extract_all(_ID_PATTERN).explode()
                _check_ids(ids, path, "prev_items", rows=pl.Series([row - 1] * len(ids)))
            shown = "null" if shown is None else repr(shown[:60])
            raise DataFormatError(path, f"not a list of quoted ids: {shown}", row=row, field="prev_items")
        return values.str.extract_all(_ID_PATTERN).alias("prev_items")
    if values.dtype in (pl.List(pl.Null), pl.List(pl.Categorical)):
        values = values.cast(pl.List(pl.String))
    if values.dtype != pl.List(pl.String):
        raise DataFormatError(path, f"expected a list of strings, got {values.dtype}", field="prev_items")
    if values.null_count():
        raise DataFormatError(path, "missing list", row=_first_row(values.is_null()), field="prev_items")
    exploded = values.rename("id").to_frame().with_row_index("row").explode("id")
    _check_ids(exploded["id"], path, "prev_items", rows=exploded["row"])
    return values


def _check_ids(ids: pl.Series, path: str | Path, field: str, rows: pl.Series | None = None) -> None:
    """Every id is exactly ID_LENGTH letters or digits (ASINs and ISBN-10s alike)."""
    bad = ~ids.str.contains(_ID_FORMAT).fill_null(False)
    if bad.any():
        position = int(bad.arg_true()[0])
        row = (int(rows[position]) if rows is not None else position) + 1
        item = ids[position]
        if item is None:
            shown = "missing id"
        elif len(item) != ID_LENGTH:
            shown = f"id {item!r} is not {ID_LENGTH} characters"
        else:
            shown = f"id {item!r} holds characters other than letters and digits"
        raise DataFormatError(path, shown, row=row, field=field)


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
    columns = ("prev_items", "locale") + (("next_item",) if with_next_item else ())
    frame = read_table(path, columns, optional=("next_item",) if with_next_item is None else ())
    frame = require_text(frame, path, tuple(c for c in frame.columns if c != "prev_items"))
    prev_items = parse_prev_items(frame["prev_items"], path)
    too_short = prev_items.list.len() < MIN_SESSION_LENGTH
    if too_short.any():
        row = _first_row(too_short)
        raise DataFormatError(
            path,
            f"session has {prev_items[row - 1].len()} item(s), needs at least {MIN_SESSION_LENGTH}",
            row=row,
            field="prev_items",
        )
    sessions = pl.DataFrame(
        {
            "session_id": pl.int_range(0, frame.height, dtype=pl.UInt32, eager=True),
            "prev_items": prev_items,
            "locale": _parse_locale(frame["locale"], path),
        }
    )
    if "next_item" in frame.columns:
        _check_ids(frame["next_item"], path, "next_item")
        sessions = sessions.with_columns(frame["next_item"])
    return sessions


def read_products(path: str | Path) -> pl.DataFrame:
    """The product table: one row per (id, locale), text attributes null when empty, price null
    when missing or the release's placeholder. Known optional columns (`categories`) are kept
    when the file has them."""
    path = Path(path)
    frame = read_table(path, PRODUCT_COLUMNS, optional=OPTIONAL_PRODUCT_COLUMNS)
    text_columns = tuple(c for c in frame.columns if c not in ("id", "locale", "price"))
    frame = require_text(frame, path, ("id", "locale", *text_columns))
    _check_ids(frame["id"], path, "id")
    locale = _parse_locale(frame["locale"], path)
    price = frame["price"]
    if price.dtype in (pl.String, pl.Null):
        price = price.cast(pl.String).str.strip_chars()
        parsed = price.cast(pl.Float64, strict=False)
        bad = (
            (parsed.is_null() | parsed.is_nan() | parsed.is_infinite()).fill_null(True)
            & price.is_not_null()
            & (price != "")
        )
        if bad.any():
            row = _first_row(bad)
            raise DataFormatError(path, f"not a number: {price[row - 1]!r}", row=row, field="price")
        price = parsed
    elif not price.dtype.is_numeric():
        raise DataFormatError(path, f"expected a number, got {price.dtype}", field="price")
    price = price.cast(pl.Float64)
    price = pl.select(pl.when((price - PRICE_PLACEHOLDER).abs() < 1e-6).then(None).otherwise(price)).to_series()
    text = [pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)).alias(c) for c in text_columns]
    products = frame.with_columns(*text, locale=locale, price=price.alias("price"))
    duplicated = products.select(pl.struct("id", "locale").is_duplicated()).to_series()
    if duplicated.any():
        first_seen = products.select(pl.struct("id", "locale").is_first_distinct()).to_series()
        row = _first_row(duplicated & ~first_seen)
        raise DataFormatError(
            path,
            f"duplicate product {products['id'][row - 1]!r} in locale {products['locale'][row - 1]}",
            row=row,
            field="id",
        )
    return products


def read_ground_truth(path: str | Path, task: int) -> pl.DataFrame:
    """Labels of a test file: `next_item` + `locale` (tasks 1, 2) or `next_item_title` (task 3,
    with `locale` when the file has it: BLEU is then grouped by the label's locale)."""
    path = Path(path)
    if task == 3:
        frame = load_table(path)
        title = "next_item_title" if "next_item_title" in frame.columns else "title"
        frame = select_columns(frame, path, (title,), optional=("locale",)).rename({title: "next_item_title"})
        frame = require_text(frame, path, tuple(frame.columns))
        if "locale" in frame.columns:
            frame = frame.with_columns(_parse_locale(frame["locale"], path))
        return frame.with_columns(pl.col("next_item_title").fill_null(""))
    frame = require_text(read_table(path, ("next_item", "locale")), path, ("next_item", "locale"))
    _check_ids(frame["next_item"], path, "next_item")
    return frame.with_columns(_parse_locale(frame["locale"], path))
