"""Metrics against hand-computed values and against sacrebleu's own command line."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmrec.metrics import bleu_metrics, corpus_bleu, ranking_metrics, target_ranks


def lists(*rows: list[str] | None) -> pl.Series:
    return pl.Series(rows, dtype=pl.List(pl.String))


def strings(*values: str | None) -> pl.Series:
    return pl.Series(values, dtype=pl.String)


# --- ranking -----------------------------------------------------------------------


def test_ranks_hit_and_miss():
    preds = lists(["a", "b", "c"], ["x", "y", "z"], ["p", "q"])
    ranks = target_ranks(preds, strings("a", "z", "r"))
    assert ranks.dtype == np.int32
    assert ranks.tolist() == [1, 3, 0]


def test_metrics_ranks_1_3_absent():
    preds = lists(["a", "b", "c"], ["x", "y", "z"], ["p", "q"])
    result = ranking_metrics(preds, strings("a", "z", "r"), strings("DE", "DE", "DE"))
    overall = result["overall"]
    assert overall["mrr@100"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert overall["recall@100"] == pytest.approx(2 / 3)
    assert overall["ndcg@100"] == pytest.approx((1 / math.log2(2) + 1 / math.log2(4) + 0) / 3)
    assert overall["sessions"] == 3


def test_target_beyond_k():
    preds = lists(["a", "b", "c"])
    assert target_ranks(preds, strings("c"), k=2).tolist() == [0]
    assert target_ranks(preds, strings("c"), k=3).tolist() == [3]
    result = ranking_metrics(preds, strings("c"), strings("UK"), k=2)
    assert result["overall"] == {"mrr@2": 0.0, "recall@2": 0.0, "ndcg@2": 0.0, "sessions": 1}


def test_duplicate_ids_count_first_occurrence():
    preds = lists(["x", "a", "x", "b", "b"], ["x", "a", "x", "b", "b"])
    assert target_ranks(preds, strings("b", "x")).tolist() == [4, 1]


def test_nulls_never_hit():
    preds = lists(["a", None], None, ["a"])
    assert target_ranks(preds, strings(None, "a", "b")).tolist() == [0, 0, 0]


def test_per_locale_and_overall_is_mean_over_sessions():
    preds = lists(["j1", "j2", "j3", "t"], ["t", "x"], ["x", "t"], ["x", "y"])
    result = ranking_metrics(preds, strings("t", "t", "t", "t"), strings("JP", "DE", "DE", "DE"))
    assert list(result["per_locale"]) == ["DE", "JP"]

    de, jp, overall = result["per_locale"]["DE"], result["per_locale"]["JP"], result["overall"]
    assert de["mrr@100"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert jp["mrr@100"] == pytest.approx(1 / 4)
    # mean over all 4 sessions, not the mean of locale means (3/8)
    assert overall["mrr@100"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 4) / 4)
    assert overall["mrr@100"] != pytest.approx((de["mrr@100"] + jp["mrr@100"]) / 2)

    assert de["recall@100"] == pytest.approx(2 / 3)
    assert jp["recall@100"] == pytest.approx(1.0)
    assert overall["recall@100"] == pytest.approx(3 / 4)
    assert de["ndcg@100"] == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)
    assert jp["ndcg@100"] == pytest.approx(1 / math.log2(5))
    assert overall["ndcg@100"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert (de["sessions"], jp["sessions"], overall["sessions"]) == (3, 1, 4)


def test_ranking_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        ranking_metrics(lists(["a"]), strings("a", "b"), strings("DE", "DE"))
    with pytest.raises(ValueError, match="same length"):
        target_ranks(lists(["a"], ["b"]), strings("a"))


# --- BLEU --------------------------------------------------------------------------

REFERENCES = [
    "Apple iPhone 13 Pro Max 256GB Graphite",
    "Samsung Galaxy S21 Ultra 5G Smartphone Black",
    "Bosch Professional Akku-Bohrschrauber GSR 18V-55 mit 2 Akkus",
    "Ravensburger Puzzle 1000 Teile Neuschwanstein im Herbst",
    "Anker USB C Ladegerät 65W mit GaN Technologie",
    "サントリー 天然水 2L ×9本 ミネラルウォーター",
    "アイリスオーヤマ 電気ケトル 1.0L ホワイト",
]
HYPOTHESES = [
    "Apple iPhone 13 Pro 128GB Graphite",
    "Samsung Galaxy S21 Ultra 5G Smartphone Phantom Black",
    "Bosch Professional Akku-Bohrschrauber GSR 18V-55 ohne Akku",
    "Ravensburger Puzzle 1000 Teile Schloss Neuschwanstein",
    "Anker USB C Ladegerät 65W GaN",
    "サントリー 天然水 2L ×6本",
    "アイリスオーヤマ 電気ケトル 0.8L ブラック",
]
JA_REFERENCES = ["サントリー天然水南アルプス2リットル9本", "アイリスオーヤマ電気ケトル白色"]
JA_HYPOTHESES = ["サントリー天然水南アルプス2リットル6本", "アイリスオーヤマ電気ケトル黒色"]


def sacrebleu_cli(tmp_path: Path, hyps: list[str], refs: list[str], tokenize: str) -> float:
    ref_file, hyp_file = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    ref_file.write_text("\n".join(refs) + "\n", encoding="utf-8")
    hyp_file.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "sacrebleu", str(ref_file), "-i", str(hyp_file),
               "-b", "-w", "4", "-tok", tokenize, "-s", "none"]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(output.strip())


@pytest.mark.parametrize("tokenize", ["13a", "intl", "char", "none"])
def test_corpus_bleu_matches_sacrebleu_cli(tmp_path, tokenize):
    expected = sacrebleu_cli(tmp_path, HYPOTHESES, REFERENCES, tokenize)
    assert expected > 0
    assert corpus_bleu(HYPOTHESES, REFERENCES, tokenize=tokenize) * 100 == pytest.approx(expected, abs=0.01)


def test_defaults_are_13a_without_smoothing(tmp_path):
    expected = sacrebleu_cli(tmp_path, HYPOTHESES, REFERENCES, "13a")
    assert corpus_bleu(HYPOTHESES, REFERENCES) * 100 == pytest.approx(expected, abs=0.01)


def test_tokenizer_matters_for_japanese():
    # 13a leaves unspaced Japanese as one token per line, so no n-gram matches at all
    assert corpus_bleu(JA_HYPOTHESES, JA_REFERENCES, tokenize="13a") == 0.0
    assert corpus_bleu(JA_HYPOTHESES, JA_REFERENCES, tokenize="char") > 0.5


def test_perfect_hypotheses_score_one():
    assert corpus_bleu(REFERENCES, REFERENCES) == pytest.approx(1.0)


def test_none_hypothesis_counts_as_empty():
    with_none = [None, *HYPOTHESES[1:]]
    assert corpus_bleu(with_none, REFERENCES) == corpus_bleu(["", *HYPOTHESES[1:]], REFERENCES)


def test_bleu_metrics_per_locale():
    locales = ["UK", "UK", "DE", "DE", "DE", "JP", "JP"]
    result = bleu_metrics(HYPOTHESES, REFERENCES, locales, tokenize="char")
    assert result["overall"] == {
        "bleu": corpus_bleu(HYPOTHESES, REFERENCES, tokenize="char"),
        "sessions": 7,
    }
    assert list(result["per_locale"]) == ["DE", "JP", "UK"]
    for locale, rows in {"DE": [2, 3, 4], "JP": [5, 6], "UK": [0, 1]}.items():
        hyps, refs = [HYPOTHESES[i] for i in rows], [REFERENCES[i] for i in rows]
        assert result["per_locale"][locale] == {
            "bleu": corpus_bleu(hyps, refs, tokenize="char"),
            "sessions": len(rows),
        }


def test_bleu_errors():
    with pytest.raises(ValueError, match="length"):
        corpus_bleu(["a b"], ["a b", "c d"])
    with pytest.raises(ValueError, match="length"):
        bleu_metrics(["a b"], ["a b"], ["DE", "UK"])
    with pytest.raises(ValueError, match="13a"):
        corpus_bleu(["a b"], ["a b"], tokenize="moses")
    with pytest.raises(ValueError, match="floor"):
        corpus_bleu(["a b"], ["a b"], smooth="laplace")
    with pytest.raises(ValueError, match="at least one"):
        corpus_bleu([], [])


def test_paper_cutoffs_hit_rate_and_ndcg_at_5_and_10():
    # Targets at ranks 1, 5, 6, 10, 11 and absent.
    ranks = [1, 5, 6, 10, 11, 0]
    preds = lists(*[[f"x{i}" for i in range(1, 12)] for _ in ranks])
    targets = strings(*[f"x{r}" if r else "missing" for r in ranks])
    overall = ranking_metrics(preds, targets, strings(*["UK"] * 6))["overall"]
    assert overall["hr@5"] == pytest.approx(2 / 6)
    assert overall["hr@10"] == pytest.approx(4 / 6)
    assert overall["ndcg@5"] == pytest.approx((1 + 1 / math.log2(6)) / 6)
    assert overall["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(7) + 1 / math.log2(11)) / 6)
    assert overall["recall@100"] == pytest.approx(5 / 6)  # the existing keys are unchanged
    assert overall["hr@5"] <= overall["hr@10"] <= overall["recall@100"]
    at_10 = ranking_metrics(preds, targets, strings(*["UK"] * 6), k=10)["overall"]
    assert at_10["hr@10"] == at_10["recall@10"] == overall["hr@10"] and "hr@5" in at_10
    assert "hr@10" not in ranking_metrics(preds, targets, strings(*["UK"] * 6), k=5)["overall"]
