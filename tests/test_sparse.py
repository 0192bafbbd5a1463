"""The sorted-key and sparse-matrix arithmetic under co-visitation, session-KNN, candidates
and features, against plain join/group-by references of what each one computes."""

import numpy as np
import polars as pl
import pytest

from llmrec.baselines.covisit import (
    CovisitConfig,
    PairCounts,
    Weighting,
    covisitation,
    neighbour_matrix,
    score_neighbours,
)
from llmrec.baselines.sknn import SessionKnn, SknnConfig
from llmrec.baselines.sparse import descending_bits, rank_within


def random_events(seed: int, sequences: int = 300, items: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, sequences)
    seq = np.repeat(np.arange(sequences), lengths)
    pos = np.concatenate([np.arange(n) for n in lengths])
    item = rng.zipf(1.6, seq.size) % items  # skewed, with repeats inside sequences
    return pl.DataFrame({"seq": seq, "pos": pos, "item": item.astype(np.uint32)}).sample(
        fraction=1.0, shuffle=True, seed=seed
    )


def reference_covisitation(events: pl.DataFrame, config: CovisitConfig) -> pl.DataFrame:
    """Every pair row by row, summed with a hash group-by: what the table means."""
    events = events.sort("seq", "pos")
    seq, item = events["seq"].to_numpy(), events["item"].to_numpy()
    rows = []
    for weighting in config.weightings:
        for distance in range(1, weighting.window + 1):
            same = seq[distance:] == seq[:-distance]
            a, b = item[:-distance][same], item[distance:][same]
            a, b = a[a != b], b[a != b]
            scale = weighting.weight / distance**weighting.distance_decay
            rows.append(pl.DataFrame({"a": a, "b": b, "w": np.full(a.size, weighting.forward * scale)}))
            rows.append(pl.DataFrame({"a": b, "b": a, "w": np.full(a.size, weighting.backward * scale)}))
    table = pl.concat(rows).filter(pl.col("w") != 0).group_by("a", "b").agg(pl.col("w").sum())
    if config.normalize:
        table = table.with_columns(pl.col("w") / pl.col("w").sum().over("a"))
    return (
        table.with_columns(pl.col("w").cast(pl.Float32))
        .sort(["a", "w", "b"], descending=[False, True, False])
        .group_by("a", maintain_order=True)
        .head(config.neighbors)
    )


CONFIGS = [
    CovisitConfig(),
    CovisitConfig(neighbors=3, normalize=False),
    CovisitConfig(weightings=[Weighting(window=4, forward=1.0, backward=0.0, distance_decay=0.5)], neighbors=5),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("config", CONFIGS)
def test_covisitation_from_pair_counts_is_the_row_by_row_table(seed, config):
    events = random_events(seed)
    expected = reference_covisitation(events, config)
    table = covisitation(events, config)
    assert table.select("a", "b").equals(expected.select("a", "b"))  # same pairs, same order (ties: b ascending)
    assert np.allclose(table["w"].to_numpy(), expected["w"].to_numpy(), rtol=1e-6)
    shared = covisitation(None, config, PairCounts.of(events, 10))
    assert shared.equals(table)


def test_mapped_pair_counts_are_the_counts_of_the_mapped_events():
    events = random_events(2)
    codes = (np.arange(40) % 13).astype(np.uint32)  # several items per code
    mapped = events.with_columns(pl.Series("item", codes[events["item"].to_numpy()]))
    config = CovisitConfig()
    by_counts = covisitation(None, config, PairCounts.of(events, 5).mapped(codes))
    assert by_counts.equals(covisitation(mapped, config))


def test_score_neighbours_is_the_join_and_sum():
    table = covisitation(random_events(3), CovisitConfig())
    rng = np.random.default_rng(0)
    items = pl.DataFrame(
        {"query": rng.integers(5, 60, 400).astype(np.uint32), "item": rng.integers(0, 45, 400).astype(np.uint32)}
    ).unique(["query", "item"])
    items = items.with_columns(pl.Series("weight", rng.random(items.height)))
    expected = (
        items.join(table, left_on="item", right_on="a")
        .group_by("query", pl.col("b").alias("item"))
        .agg((pl.col("weight") * pl.col("w")).sum().cast(pl.Float32).alias("score"))
        .sort("query", "item")
    )
    scored = score_neighbours(items, neighbour_matrix(table))
    assert scored.select("query", "item").equals(expected.select("query", "item"))
    assert np.allclose(scored["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-6)


def test_session_knn_is_the_join_sort_and_sum():
    events = random_events(4, sequences=200)
    knn = SessionKnn(SknnConfig(neighbors=7, postings=15))
    memory = events.select("seq", "item").unique()
    knn.lengths = memory.group_by("seq").agg(pl.len().alias("length"))
    knn.postings = memory.sort("seq", descending=True).group_by("item", maintain_order=True).head(15)
    knn.memory = memory
    rng = np.random.default_rng(1)
    items = pl.DataFrame(
        {"query": rng.integers(0, 30, 150).astype(np.uint32), "item": rng.integers(0, 40, 150).astype(np.uint32)}
    ).unique(["query", "item"])
    items = items.with_columns(pl.Series("weight", 0.7 ** rng.integers(0, 5, items.height).astype(float)))
    length = items.group_by("query").agg(pl.len().alias("query_length"))
    similar = (
        items.join(knn.postings, on="item")
        .group_by("query", "seq")
        .agg(pl.col("weight").sum().cast(pl.Float32).alias("overlap"))
        .join(knn.lengths, on="seq")
        .join(length, on="query")
        .with_columns((pl.col("overlap") / (pl.col("length") * pl.col("query_length")).sqrt()).alias("similarity"))
        .sort(["query", "similarity", "seq"], descending=[False, True, True])
        .group_by("query", maintain_order=True)
        .head(7)
    )
    expected = (
        similar.join(memory, on="seq")
        .group_by("query", "item")
        .agg(pl.col("similarity").sum().cast(pl.Float32).alias("score"))
        .sort("query", "item")
    )
    scored = knn.score(items)
    assert scored.select("query", "item").equals(expected.select("query", "item"))
    assert np.allclose(scored["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-6)


def test_rank_within_orders_by_score_descending_and_keeps_ties_in_input_order():
    groups = np.array([1, 0, 1, 0, 1, 0, 1], np.uint64)
    scores = np.array([0.5, -2.0, 3.0, -2.0, 0.5, np.inf, -0.0], np.float32)
    order, rank = rank_within(groups, scores)
    assert order.tolist() == [5, 1, 3, 2, 0, 4, 6]
    assert rank.tolist() == [0, 1, 2, 0, 1, 2, 3]
    for dtype in (np.float32, np.float64):
        values = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 1.0, np.nextafter(1.0, 2.0, dtype=dtype), np.inf])
        bits = descending_bits(values.astype(dtype))
        assert all(bits[i] > bits[i + 1] for i in range(bits.size - 1))
    groups = np.array([2, 2, 2, 1], np.uint64)  # scores one float32 step apart, as float32 and float64
    scores = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(2.0)), 0.5, 0.0], np.float32)
    for typed in (scores, scores.astype(np.float64)):
        assert rank_within(groups, typed)[0].tolist() == [3, 1, 0, 2]


def test_relation_features_are_the_join_and_group_by(tiny_data):
    """The features of each candidate's co-occurrence with the session items, against the join
    of every session item's table row grouped by (query, candidate)."""
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.rank import RecommendConfig, ranking_data
    from llmrec.rank.features import _ages, _relations
    from llmrec.rank.pipeline import prepare_split

    config = load_config(RecommendConfig, None, [f"data={tiny_data}", "task=1", "text.enabled=false"])
    state = prepare_split(ranking_data(AmazonM2(tiny_data), config).target, config, None, None, lambda _: None)
    queries = state.queries.head(200)
    candidates = state.sources.generate(queries).select("query", "item")
    table = state.sources.covisit[0].table
    expected = (
        _ages(queries)
        .join(table, left_on="item", right_on="a")
        .group_by("query", pl.col("b").alias("item"))
        .agg(
            pl.col("age").min().alias("related_age"),
            pl.len().alias("related_count"),
            pl.col("w").filter(pl.col("age") == 0).cast(pl.Float64).sum().cast(pl.Float32).alias("covisit_last"),
            pl.col("w").filter(pl.col("age") == 1).cast(pl.Float64).sum().cast(pl.Float32).alias("covisit_second"),
        )
    )
    expected = candidates.join(expected, on=["query", "item"], how="left").with_columns(
        pl.col("related_age").fill_null(99), pl.col("related_count").fill_null(0), pl.col("^covisit_.*$").fill_null(0.0)
    )
    found = _relations(candidates, queries, state.context)
    assert found.height == candidates.height and found["related_count"].sum() > 0
    assert found.sort("query", "item").equals(expected.sort("query", "item").select(found.columns), null_equal=True)
