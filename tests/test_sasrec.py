"""SASRec learns order, is reproducible, keeps to the session's locale and honours the
session-item exclusion switch, from the integer API up to `run_baseline`."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from llmrec.baselines import BaselineRun
from llmrec.baselines.common import numbered
from llmrec.baselines.sasrec import Sasrec, SasrecConfig
from llmrec.baselines.sasrec_model import SasrecNet, Sequences, _windows, fit_sasrec, score_pairs, top_items
from llmrec.config import ConfigError, load_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import SplitConfig, load_task_split

TINY = {"dim": 16, "blocks": 1, "heads": 1, "dropout": 0.0, "max_len": 8, "batch_size": 32, "lr": 0.01, "threads": 1}


def cyclic(items: int, sessions: int, seed: int = 0) -> list[list[int]]:
    """Sessions that walk the cycle 0 -> 1 -> ... -> items-1 -> 0 from random starts."""
    rng = np.random.default_rng(seed)
    return [
        [(int(start) + step) % items for step in range(rng.integers(3, 8))]
        for start in rng.integers(0, items, sessions)
    ]


def top1_accuracy(net, queries: list[list[int]], items: int) -> float:
    ranking = top_items(net, Sequences.from_lists(queries), k=1)
    return float(np.mean(ranking.items[:, 0] == np.array([(q[-1] + 1) % items for q in queries])))


@pytest.mark.parametrize(
    "loss",
    [
        {},
        {"full_softmax_max_items": 5, "negatives": 8},
        {"full_softmax_max_items": 5, "negatives": 8, "sampling": "uniform"},
    ],
)
def test_learns_a_cyclic_order_that_an_untrained_model_does_not_know(loss):
    train, queries = cyclic(30, 300), cyclic(30, 50, seed=1)
    trained = fit_sasrec(Sequences.from_lists(train), 30, SasrecConfig(**TINY, **loss, epochs=6))
    untrained = fit_sasrec(Sequences.from_lists(train), 30, SasrecConfig(**TINY, **loss, epochs=0))
    assert top1_accuracy(trained, queries, 30) >= 0.8
    assert top1_accuracy(untrained, queries, 30) <= 0.3


def test_same_seed_same_lists_other_seed_other_scores():
    train, queries = Sequences.from_lists(cyclic(20, 100)), Sequences.from_lists(cyclic(20, 20, seed=1))
    runs = [
        top_items(fit_sasrec(train, 20, SasrecConfig(**{**TINY, "dropout": 0.3}, epochs=2, seed=seed)), queries, 5)
        for seed in (0, 0, 1)
    ]
    assert np.array_equal(runs[0].items, runs[1].items) and np.array_equal(runs[0].scores, runs[1].scores)
    assert not np.array_equal(runs[0].scores, runs[2].scores)


def test_training_windows_cover_every_next_item_once():
    lengths = np.array([0, 1, 2, 5, 9, 17, 30])
    sequences = Sequences(np.arange(lengths.sum()), lengths)
    starts, ends = _windows(sequences, max_len=4)
    assert (ends - starts).max() <= 5 and (ends - starts).min() >= 2
    targets = np.concatenate([np.arange(s + 1, e) for s, e in zip(starts, ends)])
    first_items = np.cumsum(lengths) - lengths
    expected = np.setdiff1d(np.arange(lengths.sum()), first_items)
    assert np.array_equal(np.sort(targets), expected)


def test_exclusion_switch_keeps_or_drops_the_sessions_own_items():
    train = Sequences.from_lists(cyclic(3, 200))  # 0 -> 1 -> 2 -> 0: the next item was always seen before
    net = fit_sasrec(train, 3 + 5, SasrecConfig(**TINY, epochs=4))
    queries = [[0, 1, 2, 0, 1], [1, 2, 0, 1, 2]]
    allowed = top_items(net, Sequences.from_lists(queries), k=3, exclude_history=False)
    assert allowed.items[:, 0].tolist() == [2, 0]
    excluded = top_items(net, Sequences.from_lists(queries), k=3, exclude_history=True)
    assert (excluded.items == -1).all()  # items 3..7 never occurred in training: nothing else qualifies


def test_groups_confine_items_to_the_sessions_group():
    train = cyclic(20, 200)
    net = fit_sasrec(Sequences.from_lists(train), 20, SasrecConfig(**TINY, epochs=4))
    item_groups = np.arange(20) % 2  # the true next item is always of the other group
    queries = Sequences.from_lists(cyclic(20, 30, seed=1))
    query_groups = np.array([q[-1] % 2 for q in cyclic(20, 30, seed=1)])
    ranking = top_items(net, queries, k=5, query_groups=query_groups, item_groups=item_groups)
    assert (ranking.items >= 0).all()
    assert (item_groups[ranking.items] == query_groups[:, None]).all()


def test_pair_scores_agree_with_the_top_list():
    train = Sequences.from_lists(cyclic(20, 200))
    net = fit_sasrec(train, 20, SasrecConfig(**TINY, epochs=2))
    queries = Sequences.from_lists(cyclic(20, 10, seed=1))
    ranking = top_items(net, queries, k=6, exclude_history=False)
    rows = np.repeat(np.arange(10), 20)
    scores = score_pairs(net, queries, rows, np.tile(np.arange(20), 10)).reshape(10, 20)
    assert np.allclose(np.take_along_axis(scores, ranking.items, 1), ranking.scores, atol=1e-5)
    unlisted = np.ones_like(scores, bool)
    np.put_along_axis(unlisted, ranking.items, False, 1)
    assert (np.where(unlisted, scores, -np.inf).max(1) <= ranking.scores[:, -1] + 1e-5).all()


@pytest.fixture(scope="module")
def fitted(tiny_data):
    split = load_task_split(AmazonM2(tiny_data), 3, SplitConfig(name="test"))  # all six locales
    index = ItemIndex.from_split(split)
    model = Sasrec(SasrecConfig(**TINY, epochs=1))
    model.fit(split, index)
    return split, index, model


def test_sessions_get_items_of_their_own_locale_only(fitted):
    split, index, model = fitted
    queries = numbered(split.sessions, index)
    scored = model.score_sessions(queries)
    assert scored["query"].n_unique() == queries.height and (scored.group_by("query").len()["len"] == 100).all()
    located = scored.join(
        index.items.select(pl.col("code").alias("item"), pl.col("locale").alias("item_locale")), on="item"
    )
    located = located.join(queries.select("query", "locale"), on="query")
    assert located.height == scored.height and (located["locale"] == located["item_locale"]).all()
    session_items = index.encode(
        queries.select("query", "locale", pl.col("prev_items").alias("id")).explode("id"), "id"
    )
    assert scored.join(session_items, on=["query", "item"], how="semi").height == 0


def test_candidate_scores_match_the_sessions_own_ranking(fitted):
    split, index, model = fitted
    queries = numbered(split.sessions.head(40), index)
    scored = model.score_sessions(queries)
    features = model.score_candidates(queries, scored.select("query", "item"))
    assert features.select("query", "item").equals(scored.select("query", "item"))
    assert np.allclose(features["score"].to_numpy(), scored["score"].to_numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="not among the queries"):
        model.score_candidates(queries.head(1), scored.select("query", "item"))


def test_sasrec_settings_come_from_overrides_and_bound_training_time():
    run = load_config(BaselineRun, None, ["baseline.sasrec.dim=32"])
    assert run.baseline.sasrec.dim == 32
    assert run.baseline.sasrec.max_minutes > 0  # the default bounds training time
    with pytest.raises(ConfigError, match="multiple of heads"):
        SasrecNet(SasrecConfig(dim=30, heads=4), num_items=10)
