"""Dense integer codes for the (locale, id) pairs of a split: the core structure of ranking.

Counting, joining and scoring run on these u32 codes instead of 10-character strings; an id
listed in several locales gets one code per locale, so a code also says which locale's
product it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from llmrec.data.split import TaskSplit


@dataclass(frozen=True)
class ItemIndex:
    """Dense codes for (locale, id) pairs, so counting and joining run on integers."""

    items: pl.DataFrame  # code: u32, locale, id

    @classmethod
    def from_split(cls, split: TaskSplit) -> ItemIndex:
        mentioned = pl.concat(
            [
                split.history.select("locale", pl.col("prev_items").alias("id")).explode("id"),
                split.history.select("locale", pl.col("next_item").alias("id")),
                split.unlabelled.select("locale", pl.col("prev_items").alias("id")).explode("id"),
                split.sessions.select("locale", pl.col("prev_items").alias("id")).explode("id"),
                split.catalog.select("locale", "id"),
            ]
        ).unique(maintain_order=True)
        return cls(mentioned.with_row_index("code"))

    def encode(self, frame: pl.DataFrame, column: str, as_name: str = "item") -> pl.DataFrame:
        """Replace the id column `column` with its code `as_name` (join on locale and id)."""
        lookup = self.items.rename({"id": column, "code": as_name})
        return frame.join(lookup, on=["locale", column], how="left").drop(column)

    def decode(self, frame: pl.DataFrame, column: str = "item") -> pl.Series:
        return frame.join(
            self.items.select(pl.col("code").alias(column), "id"), on=column, how="left", maintain_order="left"
        )["id"]
