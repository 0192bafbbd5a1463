"""Task 3 grounded: minimum-Bayes-risk choice for corpus BLEU and `llmrec recommend --task 3`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import polars as pl
import pytest
from sacrebleu.metrics import BLEU

from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.generate.mbr import expected_statistics, mbr_titles
from llmrec.metrics import corpus_bleu
from llmrec.rank import TitleChoiceConfig, choose_titles, ranked_titles

WORDS = "red blue green case phone cover pack of 2 3 large small Acme Brio".split()


def test_expected_statistics_of_one_reference_are_sacrebleus_counts():
    rng = np.random.default_rng(0)
    hypotheses = [" ".join(rng.choice(WORDS, rng.integers(1, 9))) for _ in range(20)]
    references = [" ".join(rng.choice(WORDS, rng.integers(1, 9))) for _ in range(20)]
    session, stats, length = expected_statistics([[h] for h in hypotheses], [[(r, 2.5)] for r in references])
    assert session.tolist() == list(range(20))
    for h, r, row, expected_length in zip(hypotheses, references, stats, length):
        score = BLEU(tokenize="13a").corpus_score([h], [[r]])
        assert row.tolist() == [*score.counts, *score.totals] and expected_length == score.ref_len


def test_with_known_references_the_choice_is_the_corpus_bleu_optimum():
    """With one reference of weight 1 per session the expected statistics are the real ones, so
    MBR must find the set of choices with the best corpus BLEU (brute force over all sets)."""
    rng = np.random.default_rng(1)
    for _ in range(8):
        references = [rng.choice(WORDS, rng.integers(5, 9)) for _ in range(5)]

        # Per session: a short exact prefix (precise, but too short for the brevity penalty),
        # the reference with two words changed (long, less precise) and an unrelated title.
        def changed(words):
            words = words.copy()
            words[rng.choice(len(words), 2, replace=False)] = "zzz"
            return " ".join(words)

        candidates = [[" ".join(r[:3]), changed(r), " ".join(rng.choice(WORDS, 6))] for r in references]
        references = [" ".join(r) for r in references]
        chosen = mbr_titles(candidates, [[(r, 1.0)] for r in references])
        best = max(corpus_bleu(list(combo), references) for combo in itertools.product(*candidates))
        assert corpus_bleu(chosen, references) == pytest.approx(best)


def test_weights_decide_between_references():
    candidates = [["Acme phone case red", "Brio phone cover blue"]]
    assert mbr_titles(candidates, [[("Acme phone case red", 1.0), ("Brio phone cover blue", 3.0)]]) == [
        "Brio phone cover blue"
    ]
    assert mbr_titles(candidates, [[("Acme phone case red", 3.0), ("Brio phone cover blue", 1.0)]]) == [
        "Acme phone case red"
    ]
    with pytest.raises(ValueError, match="session 0 has no weighted reference"):
        mbr_titles(candidates, [[]])


@pytest.fixture(scope="module")
def task3(tiny_data):
    return load_task_split(AmazonM2(tiny_data), 3, SplitConfig())


def test_titles_come_from_ranked_products_and_an_oracle_llm_lifts_bleu(task3):
    """Without generated titles the choice is among the top products' titles; with the true
    titles as the "generated" ones (an oracle LLM) the choice moves towards them."""
    config = TitleChoiceConfig(top=10)
    choices = ranked_titles(task3, config, BaselineConfig())
    assert len(choices) == task3.sessions.height and all(0 < len(options) <= 10 for options in choices)
    alone = choose_titles(task3, choices, None, config)
    assert alone.columns == ["locale", "next_item_title"] and alone.height == task3.sessions.height
    assert alone["locale"].to_list() == task3.sessions["locale"].cast(pl.String).to_list()
    assert all(title in options for title, options in zip(alone["next_item_title"], choices) if options)
    oracle = task3.sessions.select("session_id").with_columns(
        pl.Series(
            "candidates",
            [[{"title": t, "score": 0.0}] for t in task3.targets],
            dtype=pl.List(pl.Struct({"title": pl.String, "score": pl.Float64})),
        )
    )
    guided = choose_titles(task3, choices, oracle, config)
    targets = task3.targets.to_list()
    last = run_baseline("last-title", task3, BaselineConfig())["next_item_title"].to_list()
    assert corpus_bleu(guided["next_item_title"].to_list(), targets) > corpus_bleu(
        alone["next_item_title"].to_list(), targets
    )
    assert corpus_bleu(alone["next_item_title"].to_list(), targets) > corpus_bleu(last, targets)


def test_cli_recommend_task3_writes_a_scored_submission(tiny_data, task3, tmp_path, capsys):
    titles = task3.sessions.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String)).with_columns(
        pl.Series(
            "candidates",
            [[{"title": t, "score": -1.0}] for t in task3.targets],
            dtype=pl.List(pl.Struct({"title": pl.String, "score": pl.Float64})),
        )
    )
    titles.write_parquet(tmp_path / "titles.parquet")
    out = tmp_path / "task3.parquet"
    main(
        [
            "recommend",
            "--task",
            "3",
            "--data",
            str(tiny_data),
            "--titles",
            str(tmp_path / "titles.parquet"),
            "--out",
            str(out),
            "title_choice.llm_weight=2",
        ]
    )
    submission = pl.read_parquet(out)
    assert submission.columns == ["locale", "next_item_title"] and submission.height == task3.sessions.height
    report = json.loads((tmp_path / "task3.report.json").read_text())
    assert report["metrics"]["overall"]["bleu"] == pytest.approx(
        corpus_bleu(submission["next_item_title"].to_list(), task3.targets.to_list())
    )
    assert "llm_weight: 2.0" in (tmp_path / "task3.config.yaml").read_text()
    titles.head(3).write_parquet(tmp_path / "few.parquet")
    with pytest.raises(SystemExit):
        main(
            [
                "recommend",
                "--task",
                "3",
                "--data",
                str(tiny_data),
                "--titles",
                str(tmp_path / "few.parquet"),
                "--out",
                str(tmp_path / "x.parquet"),
            ]
        )
    assert "titles for 3 of the split's" in capsys.readouterr().err
