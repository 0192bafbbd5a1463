"""What every baseline shares: event tables, popularity and the final top-k list (session
items excluded, filled with popularity, ids of the session's locale), all on the integer
codes of `llmrec.data.item_index.ItemIndex`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from llmrec.baselines.sparse import distinct, first_of_each, lookup, pair_key, positions, rank_within
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


def events(sessions: pl.DataFrame, index: ItemIndex, with_next: bool) -> pl.DataFrame:
    """One row per interaction: (seq, pos, item), next item appended as the last position."""
    frame = sessions.select(
        "locale",
        (pl.concat_list("prev_items", pl.col("next_item")) if with_next else pl.col("prev_items")).alias("id"),
    ).with_row_index("seq")
    frame = frame.explode("id")
    frame = frame.with_columns(pl.Series("pos", positions(frame["seq"].to_numpy())))
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


def numbered(sessions: pl.DataFrame, index: ItemIndex) -> pl.DataFrame:
    """The sessions to predict with `query`, their position in output order, and `codes`: their
    items' codes, encoded once for every step that reads them."""
    queries = sessions.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("query"), "locale", "prev_items")
    items = index.encode(queries.select("query", "locale", pl.col("prev_items").alias("id")).explode("id"), "id")
    codes = items.group_by("query", maintain_order=True).agg(pl.col("item").drop_nulls().alias("codes"))
    return queries.with_columns(codes["codes"])


def query_items(queries: pl.DataFrame, max_items: int, recency_decay: float) -> pl.DataFrame:
    """Sessions as (query, item, weight, locale): distinct items, most recent occurrence kept,
    weight recency_decay ** steps-from-the-end, at most `max_items` per session."""
    frame = queries.select("query", "locale", pl.col("codes").alias("item")).explode("item").drop_nulls("item")
    frame = frame.with_columns((pl.len().over("query") - 1 - pl.int_range(pl.len()).over("query")).alias("age"))
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


def history_items(queries: pl.DataFrame, exclude_history: bool = True) -> pl.DataFrame:
    """(query, item) of the items a ranked list must leave out: each session's own items, or
    none when history items stay rankable."""
    if not exclude_history:
        queries = queries.head(0)
    return queries.select("query", pl.col("codes").alias("item")).explode("item").drop_nulls("item")


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
    excluded = history_items(queries, exclude_history)
    excluded = distinct(pair_key(excluded["query"].to_numpy(), excluded["item"].to_numpy()))
    scored = scored.join(queries.select("query"), on="query", how="semi")
    query, item = scored["query"].to_numpy(), scored["item"].to_numpy()
    keep = ~lookup(pair_key(query, item), excluded)[1]
    query, item, score = query[keep], item[keep], scored["score"].cast(pl.Float64).to_numpy()[keep]
    order, _ = rank_within(query, score, ties=item)
    first = first_of_each(pair_key(query[order], item[order]))  # a pair scored twice keeps its best score
    order = order[first]
    query, item = query[order], item[order]
    position = positions(query)
    top = position < k
    query, item, position = query[top], item[top], position[top]
    fill = _fill(queries, popular, k, distinct(np.concatenate([excluded, pair_key(query, item)])), query)
    query = np.concatenate([query, fill[0]])
    item = np.concatenate([item, fill[1]])
    position = np.concatenate([position, fill[2]])
    order = np.lexsort((position, query))
    ranked = pl.DataFrame({"query": query[order].astype(np.uint32), "id": index.items["id"].gather(item[order])})
    lists = ranked.group_by("query", maintain_order=True).agg(pl.col("id").alias("next_item_prediction"))
    return (
        queries.select("query", pl.col("locale").cast(pl.String))
        .join(lists, on="query", how="left", maintain_order="left")
        .select("locale", pl.col("next_item_prediction").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    )


def _fill(
    queries: pl.DataFrame, popular: pl.DataFrame, k: int, excluded: np.ndarray, chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, item, position) of the popularity fill of the queries with fewer than k chosen
    candidates (`chosen`: their query of each): the locale's most popular items, leaving out
    the `excluded` keys, in popularity order after the candidates. Taking k + the longest
    session's length items per locale always leaves enough once session items are removed."""
    counts = np.bincount(chosen, minlength=int(queries["query"].max() or 0) + 1) if queries.height else chosen
    short = queries.filter(pl.Series(counts[queries["query"].to_numpy()] < k))
    if short.height == 0:
        return chosen[:0], chosen[:0], chosen[:0].astype(np.int64)
    depth = k + int(short["codes"].list.len().max())
    fill = popular.group_by("locale", maintain_order=True).head(depth)
    fill = fill.select("locale", "item", pl.int_range(pl.len()).over("locale").alias("order"))
    rows = short.select("query", "locale").join(fill, on="locale").sort("query", "order")
    query, item = rows["query"].to_numpy(), rows["item"].to_numpy()
    keep = ~lookup(pair_key(query, item), excluded)[1]
    query, item = query[keep], item[keep]
    position = counts[query] + positions(query)
    top = position < k
    return query[top], item[top], position[top]
