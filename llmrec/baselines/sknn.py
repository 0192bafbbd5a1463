"""Session-KNN: score items of the past sessions that share the most (recent) items with the
session, similarity normalized by both sessions' lengths."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from llmrec.baselines.common import events
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


@dataclass
class SknnConfig:
    neighbors: int = 100  # past sessions kept per session
    postings: int = 500  # past sessions kept per item (most recent file rows), bounds the work
    recency_decay: float = 0.7
    max_session_items: int = 10
    seed: int = 0


class SessionKnn:
    name = "sknn"
    FITTED = ("lengths", "postings", "memory")  # the frames `fit` computes, all that `score` reads

    def __init__(self, config: SknnConfig):
        self.config = config
        self.max_session_items, self.recency_decay = config.max_session_items, config.recency_decay

    def fit(self, split: TaskSplit, index: ItemIndex) -> None:
        memory = events(split.history, index, with_next=True).select("seq", "item").unique()
        self.lengths = memory.group_by("seq").agg(pl.len().alias("length"))
        # Later rows of the train file stand for more recent sessions: keep those per item.
        self.postings = (
            memory.sort("seq", descending=True).group_by("item", maintain_order=True).head(self.config.postings)
        )
        self.memory = memory

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame:
        query_length = query_items.group_by("query").agg(pl.len().alias("query_length"))
        similar = (
            query_items.join(self.postings, on="item")
            .group_by("query", "seq")
            .agg(pl.col("weight").sum().cast(pl.Float32).alias("overlap"))
            .join(self.lengths, on="seq")
            .join(query_length, on="query")
            .with_columns((pl.col("overlap") / (pl.col("length") * pl.col("query_length")).sqrt()).alias("similarity"))
            .sort(["query", "similarity", "seq"], descending=[False, True, True])
            .group_by("query", maintain_order=True)
            .head(self.config.neighbors)
        )
        return (
            similar.select("query", "seq", "similarity")
            .join(self.memory, on="seq")
            .group_by("query", "item")
            .agg(pl.col("similarity").sum().cast(pl.Float32).alias("score"))  # rounded: sum order cannot reorder ties
        )
