"""Write sessions the way the competition released them: numpy-printed `prev_items` in CSV."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec import io

NUMPY_ITEMS_PER_LINE = 5  # numpy wraps a printed array of 10-character strings at 75 columns


def format_prev_items(prev_items: pl.Expr | str = "prev_items") -> pl.Expr:
    """`['A' 'B' 'C' 'D' 'E'\\n 'F']`: quoted ids separated by spaces, a newline and a space
    after every fifth, exactly as `str(numpy_array)` prints them."""
    items = pl.col(prev_items) if isinstance(prev_items, str) else prev_items
    quoted = items.list.eval(
        pl.when((pl.int_range(pl.len()) % NUMPY_ITEMS_PER_LINE == 0) & (pl.int_range(pl.len()) > 0))
        .then(pl.lit("\n '"))
        .when(pl.int_range(pl.len()) > 0)
        .then(pl.lit(" '"))
        .otherwise(pl.lit("'"))
        + pl.element()
        + pl.lit("'")
    )
    return pl.concat_str([pl.lit("["), quoted.list.join(""), pl.lit("]")]).alias("prev_items")


def write_sessions(sessions: pl.DataFrame, path: str | Path) -> Path:
    """CSV (`prev_items` as numpy prints it) or parquet (`prev_items` as list<string>), by suffix."""
    columns = [c for c in ("prev_items", "next_item", "locale") if c in sessions.columns]
    frame = sessions.select(columns).with_columns(pl.col("locale").cast(pl.String))
    if Path(path).suffix == ".parquet":
        return io.write_parquet(frame, path)
    return io.write_csv(frame.with_columns(format_prev_items()), path)
