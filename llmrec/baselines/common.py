"""What every baseline shares: event tables, popularity and the final top-k list (session
items excluded, filled with popularity, ids of the session's locale), all on the integer
codes of `llmrec.data.item_index.ItemIndex`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


def events(sessions: pl.DataFrame, index: ItemIndex, with_next: bool) -> pl.DataFrame:
    """One row per interaction: (seq, pos, item), next item appended as the last position."""
    frame = sessions.select(
        "locale",
        (pl.concat_list("prev_items", pl.col("next_item")) if with_next else pl.col("prev_items")).alias("id"),
    ).with_row_index("seq")
    frame = frame.explode("id").with_columns(pl.int_range(pl.len()).over("seq").alias("pos"))
    return index.encode(frame, "id").select("seq", "pos", "item", "locale")


@dataclass(frozen=True)
class SplitEvents:
    """Every session of a split as item codes, encoded once (the string join is the costly
    step at full size): what co-visitation, session-KNN, popularity and features count."""

    labelled: pl.DataFrame  # seq, pos, item, locale: history sessions, the next item last
    unlabelled: pl.DataFrame  # the same for unlabelled inputs, seq offset past the history's

    @classmethod
    def of(cls, split: TaskSplit, index: ItemIndex) -> SplitEvents:
        labelled = events(split.history, index, with_next=True)
        inputs = events(split.unlabelled, index, with_next=False)
        return cls(labelled, inputs.with_columns(pl.col("seq") + split.history.height))

    def all(self, include_unlabelled: bool = True) -> pl.DataFrame:
        return pl.concat([self.labelled, self.unlabelled]) if include_unlabelled else self.labelled

    def next_items(self) -> np.ndarray:
        """Codes of every history session's next item."""
        return self.labelled["item"].filter(self._is_last()).to_numpy()

    def inputs(self) -> np.ndarray:
        """Codes of every input position: history sessions' previous items, unlabelled inputs."""
        return np.concatenate(
            [self.labelled["item"].filter(~self._is_last()).to_numpy(), self.unlabelled["item"].to_numpy()]
        )

    def _is_last(self) -> pl.Series:
        seq = self.labelled["seq"]
        return (seq != seq.shift(-1)).fill_null(True)


def all_events(split: TaskSplit, index: ItemIndex, include_unlabelled: bool = True) -> pl.DataFrame:
    """Events of the labelled history and (offset so sequences stay distinct) of every unlabelled session."""
    return SplitEvents.of(split, index).all(include_unlabelled)


def numbered(sessions: pl.DataFrame) -> pl.DataFrame:
    """The sessions to predict with `query`, their position in output order."""
    return sessions.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("query"), "locale", "prev_items")


def query_items(queries: pl.DataFrame, index: ItemIndex, max_items: int, recency_decay: float) -> pl.DataFrame:
    """Sessions as (query, item, weight, locale): distinct items, most recent occurrence kept,
    weight recency_decay ** steps-from-the-end, at most `max_items` per session."""
    frame = queries.select("query", "locale", pl.col("prev_items").alias("id")).explode("id")
    frame = frame.with_columns((pl.len().over("query") - 1 - pl.int_range(pl.len()).over("query")).alias("age"))
    frame = index.encode(frame, "id")
    frame = frame.group_by("query", "item").agg(pl.col("age").min(), pl.col("locale").first())
    frame = frame.filter(pl.col("age").rank("ordinal").over("query") <= max_items)
    return frame.select("query", "item", (recency_decay ** pl.col("age").cast(pl.Float64)).alias("weight"), "locale")


def item_popularity(
    split: TaskSplit,
    index: ItemIndex,
    next_item_weight: float,
    prev_item_weight: float,
    split_events: SplitEvents | None = None,
) -> pl.DataFrame:
    """(locale, item, score): next-item counts of the history plus down-weighted input counts;
    catalog items never seen score 0, so short lists can still be filled from the locale.
    Counts are integers weighted once, so the order of the sessions cannot move a score by a
    rounding error (and with it the order of tied items). `split_events`: the split's events
    when already encoded."""
    split_events = split_events or SplitEvents.of(split, index)
    size = index.items.height
    next_counts = np.bincount(split_events.next_items(), minlength=size).astype(np.float64)
    input_counts = np.bincount(split_events.inputs(), minlength=size).astype(np.float64)
    score = next_counts * next_item_weight + input_counts * prev_item_weight
    return index.items.select("locale", pl.col("code").alias("item"), pl.Series("score", score)).sort(
        "score", "item", descending=[True, False]
    )


def history_items(queries: pl.DataFrame, index: ItemIndex, exclude_history: bool = True) -> pl.DataFrame:
    """(query, item) of the items a ranked list must leave out: each session's own items, or
    none when history items stay rankable."""
    if not exclude_history:
        queries = queries.head(0)
    return index.encode(queries.select("query", "locale", pl.col("prev_items").alias("id")).explode("id"), "id")


def finalize(
    queries: pl.DataFrame,
    index: ItemIndex,
    scored: pl.DataFrame,
    popular: pl.DataFrame,
    k: int,
    exclude_history: bool = True,
) -> pl.DataFrame:
    """Top-k ids per query, in query order: every scored candidate first, whatever its score
    (a reranker's scores are unbounded, negative ones included), best first; then the locale's
    popular items as a fill. Ties are broken by item code, so the lists are a pure function of
    the scores. Ids of other locales never appear, nor session items with `exclude_history`;
    exactly k distinct ids whenever the locale has that many items."""
    session_items = history_items(queries, index, exclude_history)
    scored = scored.select("query", "item", pl.col("score").cast(pl.Float64))
    ranked = _rank(queries, session_items, scored, popular, k, extra=20)
    counts = ranked.group_by("query").len()
    short = queries.join(counts, on="query", how="left").filter(pl.col("len").fill_null(0) < k)
    if short.height:  # long sessions can hide more popular items than the first fill holds
        longest = int(short["prev_items"].list.len().max())
        redo = _rank(short.drop("len"), session_items, scored, popular, k, extra=longest)
        ranked = pl.concat([ranked.join(short.select("query"), on="query", how="anti"), redo])
    ranked = ranked.with_columns(index.decode(ranked).alias("id")).sort("query", "rank")
    lists = ranked.group_by("query", maintain_order=True).agg(pl.col("id").alias("next_item_prediction"))
    return (
        queries.select("query", pl.col("locale").cast(pl.String))
        .join(lists, on="query", how="left", maintain_order="left")
        .select("locale", pl.col("next_item_prediction").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    )


def _rank(queries, session_items, scored, popular, k: int, extra: int) -> pl.DataFrame:
    """(query, item, rank): scored candidates (tier 0) strictly before the popularity fill
    (tier 1, in popularity order), session items removed, at most k per query."""
    fill = popular.group_by("locale", maintain_order=True).head(k + extra)
    fill = fill.select("locale", "item", (-pl.int_range(pl.len()).over("locale")).cast(pl.Float64).alias("score"))
    filler = (
        queries.select("query", "locale")
        .join(fill, on="locale")
        .select("query", "item", pl.lit(1, pl.Int8).alias("tier"), "score")
    )
    candidates = scored.join(queries.select("query"), on="query", how="semi").select(
        "query", "item", pl.lit(0, pl.Int8).alias("tier"), "score"
    )
    return (
        pl.concat([candidates, filler])
        .join(session_items.select("query", "item"), on=["query", "item"], how="anti")
        .sort(["query", "tier", "score", "item"], descending=[False, False, True, False])
        .unique(["query", "item"], keep="first", maintain_order=True)
        .group_by("query", maintain_order=True)
        .head(k)
        .with_columns(pl.int_range(pl.len()).over("query").alias("rank"))
    )
