"""Corpus BLEU for next-title generation (KDD Cup 2023 Task 3).

The organizers scored corpus BLEU-4 with the 13a tokenizer and no smoothing, hence the
defaults; other sacrebleu tokenizers (e.g. "char", "intl") suit Japanese titles better.
"""

from collections.abc import Sequence

import polars as pl
from sacrebleu.metrics import BLEU


def corpus_bleu(
    hypotheses: Sequence[str | None],
    references: Sequence[str],
    tokenize: str = "13a",
    smooth: str = "none",
) -> float:
    """Corpus BLEU-4 (uniform weights) on a 0-1 scale; a None hypothesis counts as ""."""
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references differ in length: {len(hypotheses)} != {len(references)}")
    if len(references) == 0:
        raise ValueError("corpus_bleu needs at least one hypothesis/reference pair")
    if tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenize!r}; valid: {sorted(BLEU.TOKENIZERS)}")
    if smooth not in BLEU.SMOOTH_DEFAULTS:
        raise ValueError(f"unknown smoothing {smooth!r}; valid: {sorted(BLEU.SMOOTH_DEFAULTS)}")
    bleu = BLEU(tokenize=tokenize, smooth_method=smooth)
    hyps = [hyp or "" for hyp in hypotheses]
    return bleu.corpus_score(hyps, [list(references)]).score / 100


def bleu_metrics(
    hypotheses: Sequence[str | None],
    references: Sequence[str],
    locales: Sequence[str],
    tokenize: str = "13a",
    smooth: str = "none",
) -> dict:
    """Corpus BLEU over all sessions and over each locale's sessions (sorted by locale)."""
    if not len(hypotheses) == len(references) == len(locales):
        raise ValueError(
            f"hypotheses, references and locales differ in length: {len(hypotheses)}, {len(references)}, {len(locales)}"
        )
    frame = pl.DataFrame(
        {"hyp": hypotheses, "ref": references, "locale": locales},
        schema={"hyp": pl.String, "ref": pl.String, "locale": pl.String},
    )

    def score(part: pl.DataFrame) -> dict:
        bleu = corpus_bleu(part["hyp"].to_list(), part["ref"].to_list(), tokenize, smooth)
        return {"bleu": bleu, "sessions": part.height}

    return {
        "overall": score(frame),
        "per_locale": {
            locale: score(part) for (locale,), part in frame.sort("locale").group_by("locale", maintain_order=True)
        },
    }
