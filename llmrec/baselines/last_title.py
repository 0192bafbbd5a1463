"""Task 3's strong baseline: the title of the session's last product that has one."""

from __future__ import annotations

import polars as pl


def last_titles(sessions: pl.DataFrame, products: pl.DataFrame) -> pl.Series:
    """Per session (in order), the title of its latest item found in the locale's catalog, else ""."""
    items = sessions.select(pl.int_range(pl.len()).alias("row"), "locale", pl.col("prev_items").alias("id")).explode(
        "id"
    )
    items = items.with_columns(pl.int_range(pl.len()).over("row").alias("pos"))
    titled = items.join(products.select("id", "locale", "title").drop_nulls("title"), on=["id", "locale"])
    latest = titled.sort("row", "pos").group_by("row").agg(pl.col("title").last())
    return (
        pl.DataFrame({"row": pl.int_range(sessions.height, eager=True)})
        .join(latest, on="row", how="left")
        .sort("row")["title"]
        .fill_null("")
        .alias("next_item_title")
    )
