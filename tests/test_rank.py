"""Tasks 1 and 2: candidates, features, the reranker and `llmrec recommend`, on the tiny
built-in data (ids only, or with stand-in text signals)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from llmrec.baselines.common import ItemIndex
from llmrec.cli.main import main
from llmrec.config import load_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.evaluate import evaluate
from llmrec.rank import RecommendConfig, recommend
from llmrec.rank.reranker import LightGBMRanker, RerankerConfig, fusion_scores, training_rows

FAST = ["chunk_size=150", "reranker.num_trees=60", "reranker.threads=1", "candidates.sknn.postings=100"]


def config(data, *overrides) -> RecommendConfig:
    return load_config(RecommendConfig, None, [f"data={data}", *FAST, *overrides])


def check_lists(lists: pl.DataFrame, split, k: int = 100) -> None:
    """The competition's format: session order, k distinct ids of the locale (listed there or
    seen in its sessions), no session items."""
    assert lists.columns == ["locale", "next_item_prediction"] and lists.height == split.sessions.height
    assert lists["locale"].to_list() == split.sessions["locale"].cast(pl.String).to_list()
    assert (lists["next_item_prediction"].list.len() == k).all()
    assert (lists["next_item_prediction"].list.n_unique() == k).all()
    ids = ItemIndex.from_split(split).items.select(pl.col("locale").cast(pl.String), "id").with_columns(pl.lit(True).alias("listed"))
    listed = lists.with_row_index("row").explode("next_item_prediction").rename({"next_item_prediction": "id"}).join(ids, on=["locale", "id"], how="left")
    assert listed["listed"].fill_null(False).all()
    overlap = lists.with_columns(split.sessions["prev_items"]).select(
        pl.col("next_item_prediction").list.set_intersection("prev_items").list.len()
    ).to_series()
    assert (overlap == 0).all()


@pytest.fixture(scope="module")
def popularity_mrr(tiny_data):
    from llmrec.baselines import BaselineConfig, run_baseline

    scores = {}
    for task in (1, 2):
        split = load_task_split(AmazonM2(tiny_data), task, SplitConfig())
        lists = run_baseline("popularity", split, BaselineConfig())
        scores[task] = evaluate(task, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"]
    return scores


@pytest.mark.parametrize("task", [1, 2])
@pytest.mark.parametrize("kind", ["lightgbm", "fusion"])
def test_ranked_lists_are_submissions_and_beat_popularity(tiny_data, tmp_path, task, kind, popularity_mrr):
    lists, report = recommend(config(tiny_data, f"task={task}", f"reranker.kind={kind}"), tmp_path / "out.parquet", log=lambda _: None)
    split = load_task_split(AmazonM2(tiny_data), task, SplitConfig())
    check_lists(lists, split)
    assert pl.read_parquet(tmp_path / "out.parquet").equals(lists) and not (tmp_path / "out.parquet.work").exists()
    recall = report["candidate_recall"]
    assert {"covisit", "covisit_next", "covisit_wide", "global", "sknn", "popularity", "all"} <= set(recall)
    assert recall["all"] >= max(v for k, v in recall.items() if k not in ("all", "sessions", "at_k"))
    curve = recall["at_k"]["covisit"]
    assert list(curve.values()) == sorted(curve.values()) and curve["50"] <= recall["covisit"]
    mrr = evaluate(task, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"]
    assert mrr > 1.3 * popularity_mrr[task]
    if kind == "lightgbm":
        assert len(report["reranker"]) == 3 and all(r["trees"] >= 1 for r in report["reranker"])


def test_training_rows_keep_the_positive_and_hard_negatives():
    frame = pl.DataFrame({
        "query": [0] * 6 + [1] * 3, "item": list(range(6)) + [0, 1, 2],
        "r_a": [0, 1, 1000, 1000, 1000, 5] + [0, 1, 2], "r_b": [1000, 1000, 0, 1000, 1000, 1000] + [3, 4, 5],
        "label": [0, 0, 0, 0, 1, 0] + [0, 0, 0],
    }, schema_overrides={"label": pl.Int8})
    rows = training_rows(frame, RerankerConfig(negatives=3, hard_rank=2))
    assert rows["query"].unique().to_list() == [0]  # no positive among query 1's candidates
    assert sorted(rows["item"].to_list()) == [0, 1, 2, 4]  # the positive, then the top-ranked three


def test_lightgbm_learns_a_signal_and_fusion_follows_weights():
    rng = np.random.default_rng(0)
    n_queries, per = 400, 20
    signal = rng.normal(size=n_queries * per)
    query = np.repeat(np.arange(n_queries), per)
    best = pl.DataFrame({"query": query, "signal": signal}).with_columns(
        (pl.col("signal") == pl.col("signal").max().over("query")).cast(pl.Int8).alias("label")
    )
    frame = best.with_columns(pl.lit(0).alias("item"), pl.Series("noise", rng.normal(size=query.size))).select("query", "item", "label", "signal", "noise")
    model = LightGBMRanker(RerankerConfig(num_trees=50, threads=1, min_child_samples=5)).fit(frame)
    assert model.report["held_out_mrr@100"] > 0.8 and list(model.report["importance"])[0] == "signal"
    scores = model.score(frame)
    top = frame.with_columns(pl.Series("score", scores)).sort("query", "score", descending=[False, True]).group_by("query", maintain_order=True).first()
    assert top["label"].mean() > 0.8  # a random order finds it 1 time in 20
    with pytest.raises(ValueError, match="lack feature 'signal'"):
        model.score(frame.drop("signal"))
    ranks = pl.DataFrame({"r_a": [0, 5, 1000], "r_b": [1000, 0, 1]})
    fused = fusion_scores(ranks, RerankerConfig(fusion_weights={"a": 1.0, "b": 2.0, "missing": 5.0}, fusion_k=10))
    assert fused == pytest.approx([1 / 10, 1 / 15 + 2 / 10, 2 / 11])


class GroundTruthText:
    """Stand-in text signals whose grounding proposes each session's true next item (and a
    wrong one): the grounded source must carry it to the top."""

    def __init__(self, truth: dict[int, str], catalog: pl.DataFrame):
        self.truth, self.catalog = truth, catalog

    def ground(self, titles, sessions, popularity):
        rows = [{"session_id": s, "id": item, "ground_score": 1.0, "similarity": 0.99, "retrieval_rank": 0, "hits": 1} for s, item in self.truth.items()]
        frame = pl.DataFrame(rows).join(titles.select(pl.col("session_id").cast(pl.Int64), "locale"), on="session_id")
        return frame.select("session_id", "locale", "id", "ground_score", "similarity", "retrieval_rank", "hits")

    def neighbors(self, frame, k):
        products = self.catalog.select(pl.col("locale").cast(pl.String), pl.col("id").alias("neighbor")).group_by("locale").head(k)
        return frame.join(products, on="locale").with_columns(pl.lit(0.5).alias("similarity"))

    def similarity_by_code(self, index):
        return lambda a, b: (a == b).astype(np.float32)


def titles_for(split) -> pl.DataFrame:
    return split.sessions.select(
        pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String),
        pl.lit("a title").alias("next_item_title"),
        pl.lit([{"title": "a title", "score": -1.0}], dtype=pl.List(pl.Struct({"title": pl.String, "score": pl.Float64}))).alias("candidates"),
    )


def test_grounded_titles_flow_into_candidates_and_features(tiny_data, tmp_path):
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    truth = dict(zip(split.sessions["session_id"].cast(pl.Int64).to_list(), split.targets.to_list()))
    text = GroundTruthText(truth, split.catalog)
    lists, report = recommend(config(tiny_data, "task=1"), tmp_path / "out.parquet", titles_for(split), text=text, log=lambda _: None)
    assert report["candidate_recall"]["grounded"] == 1.0 and report["candidate_recall"]["all"] == 1.0
    assert report["candidate_recall"]["all_but_grounded"] < 0.9
    assert {"g_similarity", "text_similarity_last", "s_content"} <= set(report["reranker"][0]["importance"])
    assert evaluate(1, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"] > 0.9


def test_titles_of_other_sessions_or_locales_are_rejected(tiny_data, tmp_path):
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    titles = titles_for(split)
    with pytest.raises(ValueError, match="not one of task 2's"):
        recommend(config(tiny_data, "task=2"), tmp_path / "a.parquet", titles, log=lambda _: None)
    shifted = titles.with_columns(pl.col("session_id") + 1)
    with pytest.raises(ValueError, match="is not a session of task 1's valid split"):
        recommend(config(tiny_data, "task=1"), tmp_path / "b.parquet", shifted, log=lambda _: None)
    with pytest.raises(ValueError, match=f"titles for 5 of the split's {split.sessions.height}"):
        recommend(config(tiny_data, "task=1"), tmp_path / "c.parquet", titles.head(5), log=lambda _: None)


def test_test_split_learns_on_the_validation_sessions(tiny_data, tmp_path):
    lists, report = recommend(config(tiny_data, "task=2", "split.name=test"), tmp_path / "test.parquet", log=lambda _: None)
    split = load_task_split(AmazonM2(tiny_data), 2, SplitConfig(name="test"))
    check_lists(lists, split)
    assert report["reranker"]["train_sessions"] > 0 and (tmp_path / "test.lgb.txt").exists()
    assert report["candidate_recall"]["sessions"] == split.sessions.height  # the synthetic release has labels


def test_an_interrupted_run_resumes_from_its_chunks(tiny_data, tmp_path, monkeypatch):
    from llmrec.rank import pipeline

    settings = config(tiny_data, "task=1", "reranker.kind=fusion", "chunk_size=100")
    reference, _ = recommend(settings, tmp_path / "ref.parquet", log=lambda _: None)
    calls = []
    original = pipeline.SplitState.features

    def failing(self, chunk):
        calls.append(chunk.height)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, chunk)

    monkeypatch.setattr(pipeline.SplitState, "features", failing)
    with pytest.raises(KeyboardInterrupt):
        recommend(settings, tmp_path / "run.parquet", log=lambda _: None)
    assert len(list((tmp_path / "run.parquet.work" / "test").glob("chunk-*"))) == 2
    calls.clear()
    monkeypatch.setattr(pipeline.SplitState, "features", original)
    resumed, _ = recommend(settings, tmp_path / "run.parquet", log=lambda _: None)
    assert resumed.equals(reference)
    with pytest.raises(ValueError, match="holds partial outputs of another run"):
        (tmp_path / "run.parquet.work").mkdir()
        (tmp_path / "run.parquet.work" / "settings.json").write_text(json.dumps({"task": 2}))
        recommend(settings, tmp_path / "run.parquet", log=lambda _: None)


def test_ids_only_catalog_runs_and_says_so_once(tiny_data, tmp_path, capsys):
    import shutil

    data = tmp_path / "ids-only"
    shutil.copytree(tiny_data, data)
    products = pl.read_csv(data / "products_train.csv", infer_schema=False).with_columns(pl.lit("").alias("title"))
    products.write_csv(data / "products_train.csv")
    main(["recommend", "--task", "1", "--data", str(data), "--out", str(tmp_path / "ids.parquet"), *FAST])
    printed = capsys.readouterr().out
    assert printed.count("ranking on ids only") == 1 and "mrr@100" in printed
    check_lists(pl.read_parquet(tmp_path / "ids.parquet"), load_task_split(AmazonM2(data), 1, SplitConfig()))


def test_cli_recommend_then_evaluate(tiny_data, tmp_path, capsys):
    out = tmp_path / "task2.parquet"
    main(["recommend", "--task", "2", "--data", str(tiny_data), "--out", str(out), "text.enabled=false", *FAST])
    printed = capsys.readouterr().out
    assert "mrr@100" in printed and "sessions/s" in printed
    report = json.loads((tmp_path / "task2.report.json").read_text())
    assert report["metrics"]["overall"]["mrr@100"] > 0 and (tmp_path / "task2.config.yaml").exists()
    main(["evaluate", "--task", "2", "--pred", str(out), "--data", str(tiny_data), "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["overall"]["mrr@100"] == pytest.approx(report["metrics"]["overall"]["mrr@100"])
    with pytest.raises(SystemExit):
        main(["recommend", "--task", "1", "--data", str(tiny_data), "--out", str(tmp_path / "x.parquet"), "--titles", str(tmp_path / "none.parquet")])
    assert "none.parquet" in capsys.readouterr().err


def test_task2_reranker_learns_from_the_large_locales_too(tiny_data, tmp_path):
    _, alone = recommend(config(tiny_data, "task=2", "reranker.transfer_from=[]"), tmp_path / "alone.parquet", log=lambda _: None)
    lists, transfer = recommend(config(tiny_data, "task=2", "reranker.transfer_from=[1]"), tmp_path / "transfer.parquet", log=lambda _: None)
    check_lists(lists, load_task_split(AmazonM2(tiny_data), 2, SplitConfig()))
    assert transfer["extra_training"]["transfer-1"]["train_candidate_recall"]["sessions"] > 0
    learned = lambda report: sum(r["train_sessions"] + r["early_stopping_sessions"] for r in report["reranker"])  # noqa: E731
    assert learned(transfer) > 2 * learned(alone)
    _, itself = recommend(config(tiny_data, "task=1", "reranker.transfer_from=[1]"), tmp_path / "itself.parquet", log=lambda _: None)
    assert "extra_training" not in itself
    with pytest.raises(ValueError, match="transfer_from: 3 is not a ranking task"):
        recommend(config(tiny_data, "task=2", "reranker.transfer_from=[3]"), tmp_path / "x.parquet", log=lambda _: None)


def test_a_quick_run_scores_the_first_sessions_and_learns_from_the_rest(tiny_data, tmp_path):
    """split.limit picks the sessions scored; the reranker still learns from the held-out
    sessions after them (up to max_train_sessions), which are never scored."""
    everything = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    limit = everything.sessions.height // 4
    lists, report = recommend(config(tiny_data, f"split.limit={limit}"), tmp_path / "quick.parquet", log=lambda _: None)
    check_lists(lists, load_task_split(AmazonM2(tiny_data), 1, SplitConfig(limit=limit)))
    assert report["extra_training"]["rest"]["train_candidate_recall"]["sessions"] == everything.targets[limit:].len()
    rest = load_task_split(AmazonM2(tiny_data), 1, SplitConfig(offset=limit, limit=5))
    assert rest.sessions.equals(everything.sessions.slice(limit, 5)) and rest.targets.equals(everything.targets.slice(limit, 5))
    _, capped = recommend(config(tiny_data, f"split.limit={limit}", f"reranker.max_train_sessions={limit}"), tmp_path / "capped.parquet", log=lambda _: None)
    assert "extra_training" not in capped


def test_real_text_signals_ground_titles_through_the_cli(tiny_data, tmp_path, capsys):
    """The retrieval layer behind the seam, with a tiny random encoder: titles that are the true
    next titles ground to the true items, which the reranker then puts first."""
    from llmrec.data.split import titles_of
    from tests.helpers import tiny_sentence_encoder

    catalog = AmazonM2(tiny_data).products()
    encoder = tiny_sentence_encoder(catalog["title"].drop_nulls().to_list(), tmp_path)
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    true_titles = titles_of(split.sessions.with_columns(next_item=split.targets), catalog).fill_null("")
    titles = titles_for(split).with_columns(
        pl.concat_list(pl.struct(true_titles.alias("title"), pl.lit(-0.5).alias("score"))).alias("candidates")
    )
    titles.write_parquet(tmp_path / "titles.parquet")
    text = [f"text.retrieve.encoder.name={encoder}", "text.retrieve.encoder.threads=1", "text.retrieve.index.kind=Flat",
            "text.retrieve.catalog_role=query", f"text.retrieve.cache_dir={tmp_path / 'cache'}"]
    main(["recommend", "--task", "1", "--data", str(tiny_data), "--titles", str(tmp_path / "titles.parquet"), "--out", str(tmp_path / "t1.parquet"), *FAST, *text])
    report = json.loads((tmp_path / "t1.report.json").read_text())
    titled = (true_titles.str.len_chars() > 0).mean()
    assert report["candidate_recall"]["grounded"] >= 0.95 * titled and report["candidate_recall"]["at_k"]["grounded"]["1"] >= 0.9 * titled
    assert report["candidate_recall"]["all"] > report["candidate_recall"]["all_but_grounded"]
    assert report["metrics"]["overall"]["mrr@100"] > 0.8 * titled
    assert "s_content" in report["reranker"][0]["importance"] and "text_similarity_last" in report["reranker"][0]["importance"]
