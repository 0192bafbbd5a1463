"""Features of each (session, candidate) pair, built column-wise for a chunk of sessions.

Beyond the sources' own scores and ranks: how popular the candidate is in the locale and
across locales, where the session items it co-occurs with sit in the session, whether it
shares brand, colour, size and price range with the session's items, how close its text is to
the last item's, and what the LLM grounding said about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
from scipy import sparse

from llmrec.baselines.common import SplitEvents
from llmrec.baselines.sparse import group_starts, lookup, pair_key
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit
from llmrec.rank.candidates import MISSING_RANK

ATTRIBUTES = ("brand", "color", "size")
TextSimilarity = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(item codes a, item codes b) -> cosine similarity of their text embeddings (NaN where unknown)."""


@dataclass(frozen=True)
class FeatureContext:
    """What features read about items, computed once per split."""

    index: ItemIndex
    items: pl.DataFrame  # item, brand, color, size, price, pop_next, pop_input, pop_rank, other_locales, global_pop
    relation: sparse.csr_matrix  # a -> b, w: the first co-visitation table
    text_similarity: TextSimilarity | None

    @classmethod
    def build(
        cls,
        split: TaskSplit,
        index: ItemIndex,
        relation: sparse.csr_matrix,
        text_similarity: TextSimilarity | None = None,
        split_events: SplitEvents | None = None,
    ) -> FeatureContext:
        """`relation`: the first co-visitation table's neighbour matrix; `split_events`: the
        split's events when already encoded."""
        split_events = split_events or SplitEvents.of(split, index)
        attributes = index.encode(split.catalog.select("locale", "id", *ATTRIBUTES, "price"), "id").drop_nulls("item")
        size = index.items.height
        items = (
            index.items.select(
                pl.col("code").alias("item"),
                "locale",
                "id",
                pl.Series("pop_next", np.bincount(split_events.next_items(), minlength=size), pl.UInt32),
                pl.Series("pop_input", np.bincount(split_events.inputs(), minlength=size), pl.UInt32),
            )
            .with_columns(
                pl.col("pop_next").rank("min", descending=True).over("locale").alias("pop_rank"),
                (pl.len().over("id") - 1).alias("other_locales"),
                pl.col("pop_next").sum().over("id").alias("global_pop"),
            )
            .join(attributes.drop("locale"), on="item", how="left")
            .drop("locale", "id")
        )
        return cls(index, items, relation, text_similarity)


def session_features(queries: pl.DataFrame) -> pl.DataFrame:
    """Per query: length, distinct items, and the last item's code."""
    return queries.select(
        "query",
        pl.col("prev_items").list.len().alias("session_length"),
        pl.col("prev_items").list.n_unique().alias("session_distinct"),
        pl.col("codes").list.last().alias("last_item"),
    )


def add_features(
    candidates: pl.DataFrame,
    queries: pl.DataFrame,
    context: FeatureContext,
    grounded: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`candidates` (query, item, s_*, r_*) with every feature column added, same row order;
    `grounded` (query, item, similarity, retrieval_rank, hits, title_score): the queries' grounded products."""
    source_ranks = [c for c in candidates.columns if c.startswith("r_")]
    frame = candidates.with_columns(
        pl.sum_horizontal([(pl.col(c) < MISSING_RANK).cast(pl.Int8) for c in source_ranks]).alias("n_sources")
    )
    frame = frame.join(session_features(queries), on="query", how="left")
    frame = frame.join(context.items, on="item", how="left")
    frame = _relations(frame, queries, context)
    frame = _agreement(frame, queries, context)
    if grounded is not None:
        grounded = grounded.select(
            "query",
            "item",
            pl.col("similarity").alias("g_similarity"),
            pl.col("retrieval_rank").alias("g_rank"),
            pl.col("hits").alias("g_hits"),
            # the generator's score of the product's own title (constrained beams, scored lists), and how far
            # below the session's best scored title it is
            pl.col("title_score").alias("g_title_score"),
            (pl.col("title_score") - pl.col("title_score").max().over("query")).alias("g_title_gap"),
        )
        frame = frame.join(grounded, on=["query", "item"], how="left")
    if context.text_similarity is not None:
        last = frame["last_item"].fill_null(0).to_numpy()
        similarity = context.text_similarity(frame["item"].to_numpy(), last)
        frame = frame.with_columns(pl.Series("text_similarity_last", similarity, dtype=pl.Float32))
    return frame.drop("last_item", *ATTRIBUTES, "price")


def _relations(frame: pl.DataFrame, queries: pl.DataFrame, context: FeatureContext) -> pl.DataFrame:
    """How the candidate co-occurs with each session item: from the last item, from the one
    before, how recent the nearest related item is, and how many items relate to it. Each
    session item's row of the table is expanded, and the (query, neighbour) pairs grouped by
    sorting."""
    ages = _ages(queries)
    table = context.relation
    ages = ages.filter(pl.col("item") < table.shape[0])
    item, query, age = ages["item"].to_numpy(), ages["query"].to_numpy(), ages["age"].to_numpy()
    starts, counts = table.indptr[item], np.diff(table.indptr)[item]
    source = np.repeat(np.arange(item.size), counts)
    at = starts[source] + np.arange(source.size) - np.repeat(np.cumsum(counts) - counts, counts)
    keys = pair_key(query[source], table.indices[at])
    order = np.argsort(keys, kind="stable")
    keys, age, w = keys[order], age[source][order], table.data[at][order]
    first = group_starts(keys)
    linked = {
        "related_age": (np.minimum.reduceat(age, first) if first.size else age[:0], 99),
        "related_count": (np.diff(np.r_[first, keys.size]).astype(np.uint32), 0),
        "covisit_last": (_sum_at(w, age == 0, first), 0.0),
        "covisit_second": (_sum_at(w, age == 1, first), 0.0),
    }
    keys = keys[first]
    wanted = pair_key(frame["query"].to_numpy(), frame["item"].to_numpy())
    at, found = lookup(wanted, keys)
    columns = [
        pl.Series(name, np.where(found, values[at], missing) if keys.size else np.full(wanted.size, missing), dtype)
        for (name, (values, missing)), dtype in zip(linked.items(), (pl.UInt32, pl.UInt32, pl.Float32, pl.Float32))
    ]
    return frame.with_columns(columns)


def _sum_at(values: np.ndarray, where: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group (starting at `starts`), the float64 sum of `values` where `where`, as float32."""
    if starts.size == 0:
        return np.zeros(0, np.float32)
    return np.add.reduceat(np.where(where, values.astype(np.float64), 0.0), starts).astype(np.float32)


def _ages(queries: pl.DataFrame) -> pl.DataFrame:
    """(query, item, age): distinct session items with their distinct-item age (0 = the last item)."""
    frame = queries.select("query", pl.col("codes").alias("item")).explode("item").drop_nulls("item")
    frame = frame.with_columns(pl.int_range(pl.len()).over("query").alias("pos"))
    frame = frame.group_by("query", "item").agg(pl.col("pos").max())
    return frame.with_columns((pl.col("pos").rank("ordinal", descending=True).over("query") - 1).alias("age")).drop(
        "pos"
    )


def _agreement(frame: pl.DataFrame, queries: pl.DataFrame, context: FeatureContext) -> pl.DataFrame:
    """Brand, colour, size and price of the candidate against the last item and the session."""
    last = context.items.select(
        pl.col("item").alias("last_item"),
        *[pl.col(a).alias(f"last_{a}") for a in ATTRIBUTES],
        pl.col("price").alias("last_price"),
    )
    frame = frame.join(last, on="last_item", how="left")
    session = _ages(queries).join(context.items.select("item", "brand", "price"), on="item", how="left")
    brands = session.drop_nulls("brand").group_by("query", "brand").agg(pl.len().alias("brand_count"))
    sizes = session.group_by("query").agg(pl.len().alias("_n"), pl.col("price").mean().alias("session_price"))
    frame = frame.join(brands, on=["query", "brand"], how="left").join(sizes, on="query", how="left")
    same = [
        pl.when(pl.col(a).is_null() | pl.col(f"last_{a}").is_null())
        .then(None)
        .otherwise((pl.col(a) == pl.col(f"last_{a}")).cast(pl.Int8))
        .alias(f"same_{a}_last")
        for a in ATTRIBUTES
    ]
    return frame.with_columns(
        *same,
        (pl.col("price") / pl.col("last_price")).cast(pl.Float32).alias("price_ratio_last"),
        (pl.col("price") / pl.col("session_price")).cast(pl.Float32).alias("price_ratio_session"),
        (pl.col("brand_count").fill_null(0) / pl.col("_n")).cast(pl.Float32).alias("brand_share"),
    ).drop(*[f"last_{a}" for a in ATTRIBUTES], "last_price", "session_price", "brand_count", "_n")
