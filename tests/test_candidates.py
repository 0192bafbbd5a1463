"""Candidates and their features from the text signals: grounded titles and text neighbours
flow into the lists (stand-in text, then the real retrieval layer with a tiny encoder);
titles of other sessions are rejected."""

from __future__ import annotations

import json

import polars as pl
import pytest

from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.evaluate import evaluate
from tests.helpers import FAST, GroundTruthText, config, grounded_frame, rank, titles_for


def test_grounded_titles_flow_into_candidates_and_features(tiny_data, tmp_path):
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    truth = dict(zip(split.sessions["session_id"].cast(pl.Int64).to_list(), split.targets.to_list()))
    text = GroundTruthText(truth, split.catalog)
    lists, report = rank(config(tiny_data, "task=1"), tmp_path / "out.parquet", titles_for(split), text=text)
    assert report.candidate_recall["grounded"] == 1.0 and report.candidate_recall["all"] == 1.0
    assert report.candidate_recall["all_but_grounded"] < 0.9
    assert {"g_similarity", "text_similarity_last", "s_content"} <= set(report.reranker[0]["importance"])
    assert evaluate(1, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"] > 0.9


class ScoredTitles(GroundTruthText):
    """Grounding that proposes each session's true next item and two decoys (`decoys`: the
    products ranked highest for it without titles), alike in similarity, rank and hits; only the
    generator's score of each product's own title (a scored list's, a constrained beam's) tells
    them apart: the true item's is the best when `truthful`, all three are equal otherwise."""

    def __init__(self, truth: dict[int, str], decoys: dict[int, list[str]], catalog: pl.DataFrame, truthful: bool):
        super().__init__(truth, catalog)
        self.decoys, self.truthful = decoys, truthful

    def ground(self, titles, sessions, popularity):
        rows = []
        for session in titles["session_id"].cast(pl.Int64).to_list():
            for place, product in enumerate([self.truth[session], *self.decoys[session]]):
                row = dict(session_id=session, id=product, ground_score=1.0, similarity=0.9, retrieval_rank=1, hits=1)
                rows.append(row | {"title_score": -1.0 - place if self.truthful else -2.0})
        return grounded_frame(rows, titles)


def test_the_generators_score_of_a_products_own_title_is_a_feature(tiny_data, tmp_path):
    """`g_title_score` (and its gap to the session's best): when it is the only signal that tells
    the true item from two decoys the other sources rank high, the reranker learns it and ranks
    the true item first; with equal scores it cannot."""
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    sessions = split.sessions["session_id"].cast(pl.Int64).to_list()
    truth = dict(zip(sessions, split.targets.to_list()))
    ids_only, _ = rank(config(tiny_data, "task=1"), tmp_path / "ids.parquet")
    ranked = ids_only["next_item_prediction"].to_list()
    decoys = {s: [i for i in items if i != truth[s]][:2] for s, items in zip(sessions, ranked)}
    results = {}
    for truthful in (True, False):
        text = ScoredTitles(truth, decoys, split.catalog, truthful)
        out = tmp_path / f"{truthful}.parquet"
        lists, report = rank(config(tiny_data, "task=1"), out, titles_for(split), text=text)
        results[truthful] = evaluate(1, lists, split.targets, split.sessions["locale"])["overall"]["mrr@100"], report
    (taught, report), (untaught, _) = results[True], results[False]
    importance = report.reranker[0]["importance"]
    assert importance.get("g_title_score", 0) + importance.get("g_title_gap", 0) > 0
    assert taught > 0.9 and taught > untaught + 0.2


def test_titles_of_other_sessions_or_locales_are_rejected(tiny_data, tmp_path):
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    titles, text = titles_for(split), GroundTruthText({}, split.catalog)
    with pytest.raises(ValueError, match="not one of task 2's"):
        rank(config(tiny_data, "task=2"), tmp_path / "a.parquet", titles, text=text)
    shifted = titles.with_columns(pl.col("session_id") + 1)
    with pytest.raises(ValueError, match="is not a session of task 1's valid split"):
        rank(config(tiny_data, "task=1"), tmp_path / "b.parquet", shifted, text=text)
    with pytest.raises(ValueError, match=f"titles for 5 of the split's {split.sessions.height}"):
        rank(config(tiny_data, "task=1"), tmp_path / "c.parquet", titles.head(5), text=text)


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
    text = [
        f"text.retrieve.encoder.name={encoder}",
        "text.retrieve.encoder.threads=1",
        "text.retrieve.index.kind=Flat",
        "text.retrieve.catalog_role=query",
        f"text.retrieve.cache_dir={tmp_path / 'cache'}",
    ]
    main(
        [
            "recommend",
            "--task",
            "1",
            "--data",
            str(tiny_data),
            "--titles",
            str(tmp_path / "titles.parquet"),
            "--out",
            str(tmp_path / "t1.parquet"),
            *FAST,
            *text,
        ]
    )
    report = json.loads((tmp_path / "t1.report.json").read_text())
    titled = (true_titles.str.len_chars() > 0).mean()
    assert (
        report["candidate_recall"]["grounded"] >= 0.95 * titled
        and report["candidate_recall"]["at_k"]["grounded"]["1"] >= 0.9 * titled
    )
    assert report["candidate_recall"]["all"] > report["candidate_recall"]["all_but_grounded"]
    assert report["metrics"]["overall"]["mrr@100"] > 0.8 * titled
    assert (
        "s_content" in report["reranker"][0]["importance"]
        and "text_similarity_last" in report["reranker"][0]["importance"]
    )


def test_sasrec_is_a_candidate_source_and_scores_every_candidate(tiny_data, tmp_path):
    """candidates.sasrec_top adds SASRec's own best items (r_sasrec) and its score of every
    candidate, whichever source proposed it (s_sasrec), as reranker features."""
    from llmrec.baselines.common import item_popularity, numbered
    from llmrec.baselines.sasrec_config import SasrecConfig
    from llmrec.data.item_index import ItemIndex
    from llmrec.rank.candidates import MISSING_RANK, CandidateConfig, CandidateSources

    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig())
    index = ItemIndex.from_split(split)
    popular = item_popularity(split, index, 1.0, 0.1)
    tiny = SasrecConfig(dim=16, blocks=1, heads=1, epochs=1, threads=1)
    sources = CandidateSources(CandidateConfig(sasrec=tiny, sasrec_top=20), split, index, popular)
    assert "sasrec" in sources.names
    frame = sources.generate(numbered(split.sessions.head(30), index))
    own = frame.filter(pl.col("r_sasrec") < MISSING_RANK)
    others = frame.filter(pl.col("r_sasrec") == MISSING_RANK)
    assert own["query"].n_unique() == 30 and others.height > 0
    assert (others["s_sasrec"] != 0).all()  # scored although SASRec did not propose them
    settings = config(
        tiny_data, "task=1", "candidates.sasrec_top=20", "candidates.sasrec.dim=16", "candidates.sasrec.epochs=1"
    )
    lists, report = rank(settings, tmp_path / "out.parquet")
    assert "sasrec" in report.candidate_recall and "s_sasrec" in report.reranker[0]["importance"]


class SplitTruth(GroundTruthText):
    """Grounds each split's titles to that split's true next items (session ids of the
    validation and test splits overlap, so the titles say which split they are for)."""

    def __init__(self, truths: dict[str, dict[int, str]], catalog: pl.DataFrame):
        super().__init__({}, catalog)
        self.truths = truths

    def ground(self, titles, sessions, popularity):
        self.truth = self.truths[titles["next_item_title"][0]]
        return super().ground(titles, sessions, popularity)


def test_the_test_split_reranker_learns_from_titles_of_its_own_training_sessions(tiny_data, tmp_path):
    """On --split test the reranker learns on the validation sessions, from their own generated
    titles (--valid-titles): truthful ones teach it to trust the grounded source, which then
    carries the test sessions' true items to the top; titles of nothing teach it nothing."""
    from llmrec.config import ConfigError

    dataset = AmazonM2(tiny_data)
    splits = {name: load_task_split(dataset, 1, SplitConfig(name=name)) for name in ("valid", "test")}
    truth = {
        name: dict(zip(split.sessions["session_id"].cast(pl.Int64).to_list(), split.targets.to_list()))
        for name, split in splits.items()
    }
    titles = {
        name: titles_for(split).with_columns(pl.lit(name).alias("next_item_title")) for name, split in splits.items()
    }
    settings = config(tiny_data, "task=1", "split.name=test")
    test = splits["test"]

    def mrr(truths, out):
        lists, report = rank(
            settings, tmp_path / out, titles["test"], titles["valid"], SplitTruth(truths, test.catalog)
        )
        return evaluate(1, lists, test.targets, test.sessions["locale"])["overall"]["mrr@100"], report

    learned, report = mrr({"valid": truth["valid"], "test": truth["test"]}, "a.parquet")
    untaught, _ = mrr({"valid": {}, "test": truth["test"]}, "b.parquet")
    assert report.train_candidate_recall["grounded"] == 1.0  # the training sessions' own titles were grounded
    assert learned > 0.9 and learned > untaught + 0.2
    with pytest.raises(ConfigError, match="needs --valid-titles"):
        rank(settings, tmp_path / "c.parquet", titles["test"], None, SplitTruth(truth, test.catalog))
