"""Most popular items of the session's locale (the fill of every other baseline too)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


@dataclass
class PopularityConfig:
    next_item_weight: float = 1.0  # an item's count as a next item in the history ...
    prev_item_weight: float = 0.1  # ... plus this times its count among session inputs


class Popularity:
    """Scores nothing: the shared fill ranks the locale's popular items."""

    name = "popularity"
    max_session_items, recency_decay = 1, 1.0

    def fit(self, split: TaskSplit, index: ItemIndex) -> None:
        pass

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame:
        return pl.DataFrame(schema={"query": pl.UInt32, "item": pl.UInt32, "score": pl.Float64})
