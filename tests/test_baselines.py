"""Baselines write valid submissions, and each one exploits the signal it claims to."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.baselines.sasrec import SasrecConfig
from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split


@pytest.mark.parametrize("name", ["popularity", "covisit", "sknn", "sasrec"])
@pytest.mark.parametrize("task", [1, 2])
def test_ranking_baselines_write_competition_lists(tiny_data, name, task):
    dataset = AmazonM2(tiny_data)
    split = load_task_split(dataset, task, SplitConfig(name="test"))
    fast = SasrecConfig(dim=16, blocks=1, heads=1, epochs=1, threads=1)  # seconds; other baselines ignore it
    predictions = run_baseline(name, split, BaselineConfig(sasrec=fast))
    assert predictions.columns == ["locale", "next_item_prediction"]
    assert predictions["locale"].to_list() == split.sessions["locale"].cast(pl.String).to_list()
    assert (predictions["next_item_prediction"].list.len() == 100).all()
    assert (predictions["next_item_prediction"].list.n_unique() == 100).all()
    rows = predictions.with_row_index("row").explode("next_item_prediction")
    # Ids of the session's locale: its catalog, or its sessions (a few ids are missing from the catalog).
    seen = [
        split.history.select("locale", "prev_items"),
        split.history.select("locale", pl.concat_list("next_item").alias("prev_items")),
        split.unlabelled,
    ]
    seen_ids = (
        pl.concat([frame.select("locale", "prev_items") for frame in seen])
        .explode("prev_items")
        .select(pl.col("prev_items").alias("id"), "locale")
    )
    known = pl.concat([dataset.products().select("id", "locale"), seen_ids]).select(
        pl.col("id").alias("next_item_prediction"), pl.col("locale").cast(pl.String)
    )
    assert rows.join(known, on=["next_item_prediction", "locale"], how="anti").height == 0
    inputs = (
        split.sessions.with_row_index("row")
        .select("row", pl.col("prev_items").alias("next_item_prediction"))
        .explode("next_item_prediction")
    )
    assert rows.join(inputs, on=["row", "next_item_prediction"], how="semi").height == 0


def labelled_split(history: list[tuple[list[str], str]], queries: list[list[str]], locale: str = "DE") -> TaskSplit:
    frame = lambda rows: pl.DataFrame(
        rows, orient="row", schema={"prev_items": pl.List(pl.String), "next_item": pl.String}
    )  # noqa: E731
    hist = frame(history).with_columns(
        pl.lit(locale).alias("locale"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("session_id")
    )
    sessions = pl.DataFrame({"prev_items": queries}).with_columns(
        pl.lit(locale).alias("locale"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("session_id")
    )
    catalog = pl.DataFrame(schema={"id": pl.String, "locale": pl.String, "title": pl.String})
    return TaskSplit(
        task=1,
        split="valid",
        sessions=sessions,
        targets=None,
        history=hist,
        unlabelled=sessions.select("prev_items", "locale"),
        catalog=catalog,
    )


def ids(*names: str) -> list[str]:
    return [n.ljust(10, "0") for n in names]


def test_covisitation_ranks_what_follows_the_last_item_first():
    popular = [(ids("P", "Q"), ids("Z")[0])] * 30  # Z is by far the most popular next item
    follows = [(ids("Q", "A"), ids("C")[0])] * 3 + [(ids("A", "B"), ids("D")[0])] * 2
    split = labelled_split(popular + follows, [ids("X", "A"), ids("Y", "Q")])
    lists = run_baseline("covisit", split, BaselineConfig(k=3))["next_item_prediction"].to_list()
    assert lists[0][0] == ids("C")[0]  # A -> C co-occurs most, recently weighted
    assert lists[1][0] == ids("Z")[0]  # Q -> Z
    popularity = run_baseline("popularity", split, BaselineConfig(k=3))["next_item_prediction"].to_list()
    assert popularity[0][0] == ids("Z")[0]


def test_session_knn_follows_the_most_similar_past_session():
    history = [
        (ids("A", "B", "C"), ids("T")[0]),
        (ids("A", "E", "F", "G", "H"), ids("U")[0]),
        (ids("K", "L"), ids("V")[0]),
    ]
    split = labelled_split(history, [ids("A", "B", "C")[1:] + ids("A")])
    ranked = run_baseline("sknn", split, BaselineConfig(k=10))["next_item_prediction"][0].to_list()
    assert ranked[0] == ids("T")[0] and ranked.index(ids("T")[0]) < ranked.index(ids("U")[0])
    assert not set(ranked) & set(ids("A", "B", "C"))


def test_last_title_copies_the_latest_item_with_a_title(tiny_data):
    dataset = AmazonM2(tiny_data)
    split = load_task_split(dataset, 3, SplitConfig(name="valid"))
    titles = run_baseline("last-title", split, BaselineConfig())
    catalog = dataset.products().select("id", "locale", "title")
    first = split.sessions.row(0, named=True)
    expected = catalog.filter((pl.col("id") == first["prev_items"][-1]) & (pl.col("locale") == first["locale"]))[
        "title"
    ]
    assert titles["next_item_title"][0] == (expected[0] if expected.len() else titles["next_item_title"][0])
    assert titles.columns == ["locale", "next_item_title"] and titles.height == split.sessions.height
    assert (titles["next_item_title"].str.len_chars() > 0).mean() > 0.95


def test_cli_baseline_then_evaluate_on_released_ground_truth(tiny_data, tmp_path, capsys):
    out = tmp_path / "covisit.parquet"
    main(
        [
            "baseline",
            "covisit",
            "--task",
            "1",
            "--data",
            str(tiny_data),
            "--split",
            "test",
            "--out",
            str(out),
            "baseline.covisit.neighbors=30",
        ]
    )
    saved = (tmp_path / "covisit.config.yaml").read_text()
    assert "neighbors: 30" in saved and "name: covisit" in saved
    capsys.readouterr()
    main(
        [
            "evaluate",
            "--task",
            "1",
            "--pred",
            str(out),
            "--gt",
            str(tiny_data / "task1" / "gt_task1_phase1.csv"),
            "--json",
        ]
    )
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"overall", "per_locale"}
    assert set(metrics["per_locale"]) == {"DE", "JP", "UK"}
    assert {"mrr@100", "recall@100", "ndcg@100"} <= set(metrics["overall"])
    assert 0 < metrics["overall"]["mrr@100"] <= metrics["overall"]["ndcg@100"] <= metrics["overall"]["recall@100"] <= 1


def test_cli_task3_valid_split_reports_bleu(tiny_data, tmp_path, capsys):
    out = tmp_path / "last.parquet"
    main(["baseline", "last-title", "--task", "3", "--data", str(tiny_data), "--out", str(out)])
    capsys.readouterr()
    main(["evaluate", "--task", "3", "--pred", str(out), "--data", str(tiny_data), "--split", "valid", "--json"])
    metrics = json.loads(capsys.readouterr().out)
    assert 0 < metrics["overall"]["bleu"] < 1 and len(metrics["per_locale"]) == 6
    report = json.loads((tmp_path / "last.report.json").read_text())  # the run folder: report, log, config
    assert report["metrics"]["overall"]["bleu"] == pytest.approx(metrics["overall"]["bleu"])
    assert "wrote" in (tmp_path / "last.log").read_text() and (tmp_path / "last.config.yaml").exists()


def test_evaluate_rejects_predictions_for_other_sessions(tiny_data, tmp_path, capsys):
    out = tmp_path / "pop.parquet"
    main(["baseline", "popularity", "--task", "2", "--data", str(tiny_data), "--split", "test", "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "2", "--pred", str(out), "--gt", str(tiny_data / "task1" / "gt_task1_phase1.csv")])
    assert "rows" in capsys.readouterr().err


def test_unknown_baseline_is_a_one_line_error(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["baseline", "random", "--task", "1", "--data", str(tiny_data), "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown baseline 'random'") and len(err.splitlines()) == 1


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), min_size=1, max_size=30),
    seed=st.integers(0, 10_000),
)
def test_a_scored_candidate_always_outranks_the_fill(scores, seed):
    """Whatever the reranker's scores (unbounded, negative included), every scored candidate
    comes before every popularity fill item, candidates best first, ties by item code."""
    from llmrec.baselines.common import finalize
    from llmrec.data.item_index import ItemIndex
    from llmrec.data.schema import LOCALE_DTYPE

    rng = np.random.default_rng(seed)
    n_items, k = 60, 40
    ids = [f"B{i:09d}" for i in range(n_items)]
    index = ItemIndex(
        pl.DataFrame(
            {"code": np.arange(n_items, dtype=np.uint32), "locale": ["UK"] * n_items, "id": ids},
            schema_overrides={"locale": LOCALE_DTYPE},
        )
    )
    session = rng.choice(n_items, 3, replace=False)
    queries = pl.DataFrame(
        {"query": [0], "locale": ["UK"], "prev_items": [[ids[i] for i in session]]},
        schema_overrides={"query": pl.UInt32, "locale": LOCALE_DTYPE},
    ).with_columns(pl.Series("codes", [session.astype(np.uint32).tolist()], pl.List(pl.UInt32)))
    candidates = rng.choice(n_items, len(scores), replace=False)
    scored = pl.DataFrame(
        {"query": np.zeros(len(scores), dtype=np.uint32), "item": candidates.astype(np.uint32), "score": scores}
    )
    popular = pl.DataFrame(
        {
            "locale": ["UK"] * n_items,
            "item": rng.permutation(n_items).astype(np.uint32),
            "score": np.linspace(100, 1, n_items),
        },
        schema_overrides={"locale": LOCALE_DTYPE},
    )
    ranked = finalize(queries, index, scored, popular, k)["next_item_prediction"][0].to_list()
    expected = (
        scored.filter(~pl.col("item").is_in(session.astype(np.uint32).tolist()))
        .sort(["score", "item"], descending=[True, False])["item"]
        .to_list()
    )[:k]
    assert ranked[: len(expected)] == [ids[i] for i in expected]
    assert len(ranked) == k and len(set(ranked)) == k and not set(ranked) & {ids[i] for i in session}


def test_an_internal_error_keeps_its_traceback(tiny_data, tmp_path, monkeypatch):
    """Only user errors (settings, malformed input) print as one line: a ValueError from a bug
    must surface with its traceback, not be mistaken for the user's fault."""
    import llmrec.baselines

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(llmrec.baselines, "run_baseline", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["baseline", "covisit", "--task", "1", "--data", str(tiny_data), "--out", str(tmp_path / "x.parquet")])


def test_popularity_and_covisitation_do_not_depend_on_session_order(tiny_data):
    """Scores summed in another order (other threads, another file order) must not move by a
    rounding error: that reorders tied items from one run to the next."""
    from llmrec.baselines.common import all_events, item_popularity
    from llmrec.baselines.covisit import CovisitConfig, covisitation
    from llmrec.data.item_index import ItemIndex

    split = load_task_split(AmazonM2(tiny_data), 2, SplitConfig())
    shuffled = TaskSplit(**{**split.__dict__, "history": split.history.sample(fraction=1.0, shuffle=True, seed=3)})
    index = ItemIndex.from_split(split)
    for one, other in ((split, shuffled),):
        assert item_popularity(one, index, 1.0, 0.1).equals(item_popularity(other, index, 1.0, 0.1))
        table = covisitation(all_events(one, index), CovisitConfig())
        assert table.sort("a", "b").equals(covisitation(all_events(other, index), CovisitConfig()).sort("a", "b"))
