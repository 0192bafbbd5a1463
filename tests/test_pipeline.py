"""`llmrec recommend` end to end on the tiny built-in data: submissions, cross-fitting and the
test split, resumption, ids-only catalogs, transfer from the large locales, quick runs."""

from __future__ import annotations

import json

import polars as pl
import pytest

from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.evaluate import evaluate
from tests.helpers import FAST, GroundTruthText, check_lists, config, rank, titles_for


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
    lists, report = rank(config(tiny_data, f"task={task}", f"reranker.kind={kind}"), tmp_path / "out.parquet")
    split = load_task_split(AmazonM2(tiny_data), task, SplitConfig())
    check_lists(lists, split)
    assert pl.read_parquet(tmp_path / "out.parquet").equals(lists) and not (tmp_path / "out.parquet.work").exists()
    recall = report.candidate_recall
    assert {"covisit", "covisit_next", "covisit_wide", "global", "sknn", "popularity", "all"} <= set(recall)
    assert recall["all"] >= max(v for k, v in recall.items() if k not in ("all", "sessions", "at_k"))
    curve = recall["at_k"]["covisit"]
    assert list(curve.values()) == sorted(curve.values()) and curve["50"] <= recall["covisit"]
    mrr = evaluate(task, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"]
    assert mrr > 1.3 * popularity_mrr[task]
    if kind == "lightgbm":
        assert len(report.reranker) == 3 and all(r["trees"] >= 1 for r in report.reranker)


def test_test_split_learns_on_the_validation_sessions(tiny_data, tmp_path):
    lists, report = rank(config(tiny_data, "task=2", "split.name=test"), tmp_path / "test.parquet")
    split = load_task_split(AmazonM2(tiny_data), 2, SplitConfig(name="test"))
    check_lists(lists, split)
    assert report.reranker["train_sessions"] > 0 and (tmp_path / "test.lgb.txt").exists()
    assert report.candidate_recall["sessions"] == split.sessions.height  # the synthetic release has labels


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_run_resumes_from_its_chunks(tiny_data, tmp_path, monkeypatch, workers):
    from llmrec.rank import pipeline

    settings = config(tiny_data, "task=1", "reranker.kind=fusion", "chunk_size=100", f"workers={workers}")
    reference, reference_report = rank(settings, tmp_path / "ref.parquet")
    calls = []
    original = pipeline.SplitState.features

    def failing(self, chunk):
        calls.append(chunk.height)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, chunk)

    monkeypatch.setattr(pipeline.SplitState, "features", failing)
    with pytest.raises(KeyboardInterrupt):
        rank(settings, tmp_path / "run.parquet")
    written = len(list((tmp_path / "run.parquet.work" / "test").glob("chunk-*")))
    assert written == 2 if workers == 1 else 1 <= written <= 3  # in flight: finished; none started after
    calls.clear()
    monkeypatch.setattr(pipeline.SplitState, "features", original)
    resumed, report = rank(settings, tmp_path / "run.parquet")
    assert resumed.equals(reference)
    assert report.candidate_recall == reference_report.candidate_recall  # of every chunk, not only the resumed ones
    with pytest.raises(ValueError, match="holds partial outputs of another run"):
        (tmp_path / "run.parquet.work").mkdir()
        (tmp_path / "run.parquet.work" / "settings.json").write_text(json.dumps({"task": 2}))
        rank(settings, tmp_path / "run.parquet")


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
        main(
            [
                "recommend",
                "--task",
                "1",
                "--data",
                str(tiny_data),
                "--out",
                str(tmp_path / "x.parquet"),
                "--titles",
                str(tmp_path / "none.parquet"),
            ]
        )
    assert "none.parquet" in capsys.readouterr().err


def test_task2_reranker_learns_from_the_large_locales_too(tiny_data, tmp_path):
    _, alone = rank(config(tiny_data, "task=2", "reranker.transfer_from=[]"), tmp_path / "alone.parquet")
    lists, transfer = rank(config(tiny_data, "task=2", "reranker.transfer_from=[1]"), tmp_path / "transfer.parquet")
    check_lists(lists, load_task_split(AmazonM2(tiny_data), 2, SplitConfig()))
    assert transfer.extra_training["transfer-1"]["sessions"] > 0
    learned = lambda report: sum(r["train_sessions"] + r["early_stopping_sessions"] for r in report.reranker)  # noqa: E731
    assert learned(transfer) > 2 * learned(alone)
    _, itself = rank(config(tiny_data, "task=1", "reranker.transfer_from=[1]"), tmp_path / "itself.parquet")
    assert itself.extra_training == {}
    with pytest.raises(ValueError, match="transfer_from: 3 is not a ranking task"):
        rank(config(tiny_data, "task=2", "reranker.transfer_from=[3]"), tmp_path / "x.parquet")


def test_a_quick_run_scores_the_first_sessions_and_learns_from_the_rest(tiny_data, tmp_path):
    """split.limit picks the sessions scored; the reranker still learns from the held-out
    sessions after them (up to max_train_sessions), which are never scored."""
    everything = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    limit = everything.sessions.height // 4
    lists, report = rank(config(tiny_data, f"split.limit={limit}"), tmp_path / "quick.parquet")
    check_lists(lists, load_task_split(AmazonM2(tiny_data), 1, SplitConfig(limit=limit)))
    assert report.extra_training["rest"]["sessions"] == everything.targets[limit:].len()
    rest = load_task_split(AmazonM2(tiny_data), 1, SplitConfig(offset=limit, limit=5))
    assert rest.sessions.equals(everything.sessions.slice(limit, 5)) and rest.targets.equals(
        everything.targets.slice(limit, 5)
    )
    _, capped = rank(
        config(tiny_data, f"split.limit={limit}", f"reranker.max_train_sessions={limit}"), tmp_path / "capped.parquet"
    )
    assert capped.extra_training == {}


def test_settings_that_would_be_ignored_are_errors(tiny_data, tmp_path, capsys):
    """Titles nothing grounds, fusion weights of no source, and ranking settings for task 3's
    title choice would all be dropped without a word: each is an error instead."""
    from llmrec.errors import ConfigError

    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    truth = dict(zip(split.sessions["session_id"].cast(pl.Int64).to_list(), split.targets.to_list()))
    with pytest.raises(ConfigError, match="text.enabled=false"):
        rank(config(tiny_data, "task=1"), tmp_path / "a.parquet", titles_for(split))
    with pytest.raises(ConfigError, match="grounded_top=0"):
        rank(
            config(tiny_data, "task=1", "candidates.grounded_top=0"),
            tmp_path / "b.parquet",
            titles_for(split),
            text=GroundTruthText(truth, split.catalog),
        )
    with pytest.raises(ConfigError, match="'covisitt' is not a candidate source"):
        rank(
            config(tiny_data, "task=1", "reranker.kind=fusion", "reranker.fusion_weights={covisitt: 1.0}"),
            tmp_path / "c.parquet",
        )
    with pytest.raises(SystemExit):
        main(
            [
                "recommend",
                "--task",
                "3",
                "--data",
                str(tiny_data),
                "--out",
                str(tmp_path / "t3.parquet"),
                "reranker.kind=fusion",
            ]
        )
    assert "does not use the reranker settings" in capsys.readouterr().err


def test_titles_of_another_split_seed_are_flagged(tiny_data, tmp_path, capsys):
    """Titles written under another split seed come from an adapter that may have trained on
    the very sessions scored: recommend says so, loudly."""
    from llmrec.config import save_config
    from llmrec.train.config import Task3Config

    split = load_task_split(AmazonM2(tiny_data), 3, SplitConfig(limit=20))
    titles_for(split).write_parquet(tmp_path / "titles.parquet")
    save_config(Task3Config(split=SplitConfig(seed=7)), tmp_path / "titles.config.yaml")
    main(
        [
            "recommend",
            "--task",
            "3",
            "--data",
            str(tiny_data),
            "--limit",
            "20",
            "--titles",
            str(tmp_path / "titles.parquet"),
            "--out",
            str(tmp_path / "t3.parquet"),
        ]
    )
    assert "seed: trained 7, now 0" in capsys.readouterr().out


def test_a_rerun_on_changed_data_does_not_resume(tiny_data, tmp_path, monkeypatch):
    """Chunks are keyed on the data's content, not its folder name: after the files change,
    the old partial outputs are refused instead of mixed in."""
    import shutil

    from llmrec.errors import UserError
    from llmrec.rank import pipeline

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    settings = config(data, "task=1", "reranker.kind=fusion", "chunk_size=100")
    original = pipeline.SplitState.features
    calls = []

    def failing(self, chunk):
        calls.append(chunk.height)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, chunk)

    monkeypatch.setattr(pipeline.SplitState, "features", failing)
    with pytest.raises(KeyboardInterrupt):
        rank(settings, tmp_path / "run.parquet")
    monkeypatch.setattr(pipeline.SplitState, "features", original)
    (data / "products_train.csv").write_text((data / "products_train.csv").read_text().replace("Pack", "pack"))
    with pytest.raises(UserError, match="data_sha256 differs"):
        rank(settings, tmp_path / "run.parquet")


def test_two_runs_give_the_same_lists(tiny_data, tmp_path):
    """Same data, same settings, same seed: the same lists, ties included (scores are summed
    in an order-proof way and ties broken by item), whether chunks are computed one at a time
    or several at once."""
    first, _ = rank(config(tiny_data, "task=2", "reranker.kind=fusion", "workers=1"), tmp_path / "first.parquet")
    settings = config(tiny_data, "task=2", "reranker.kind=fusion", "workers=3", "chunk_size=50")
    second, _ = rank(settings, tmp_path / "second.parquet")
    assert first.equals(second)


def history_in_lists(lists: pl.DataFrame, split) -> int:
    """How many lists hold one of their session's own items."""
    overlap = lists.with_columns(split.sessions["prev_items"]).select(
        pl.col("next_item_prediction").list.set_intersection("prev_items").list.len()
    )
    return int((overlap.to_series() > 0).sum())


def test_history_items_stay_rankable_when_the_protocol_allows_them(tiny_data, tmp_path):
    """split.exclude_history=false (leave-one-out review data) lets session items into the lists,
    through the candidates as well as the fill; the default keeps them out."""
    from llmrec.baselines import BaselineConfig, run_baseline

    kept = SplitConfig(exclude_history=False)
    split = load_task_split(AmazonM2(tiny_data), 1, kept)
    lists, _ = rank(
        config(tiny_data, "task=1", "reranker.kind=fusion", "split.exclude_history=false"), tmp_path / "a.pq"
    )
    assert history_in_lists(lists, split) > split.sessions.height // 4  # repeats are common in sessions
    covisit = run_baseline("covisit", split, BaselineConfig())
    assert history_in_lists(covisit, split) > split.sessions.height // 4
    default = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    assert history_in_lists(run_baseline("covisit", default, BaselineConfig()), default) == 0


def test_ranking_shares_the_cores_among_workers(tiny_data, tmp_path, monkeypatch):
    """With reranker.threads=0 each worker's LightGBM scores on cores // workers threads (not on
    every core at once); a set reranker.threads is used as it is."""
    from llmrec.rank import pipeline
    from llmrec.rank.reranker import LightGBMRanker

    used, score = [], LightGBMRanker.score
    monkeypatch.setattr(
        LightGBMRanker, "score", lambda self, frame, threads=None: used.append(threads) or score(self, frame, threads)
    )
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda _: set(range(6)))
    shared, _ = rank(
        config(tiny_data, "split.name=test", "workers=2", "reranker.threads=0"), tmp_path / "shared.parquet"
    )
    assert used and set(used) == {3}
    used.clear()
    single, _ = rank(
        config(tiny_data, "split.name=test", "workers=2", "reranker.threads=1"), tmp_path / "single.parquet"
    )
    assert set(used) == {1} and shared.equals(single)
