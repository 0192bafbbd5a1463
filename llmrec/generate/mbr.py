"""Minimum-Bayes-risk choice of one title per session for corpus BLEU.

The single most likely title is not the one with the highest expected BLEU: when the next
product may be one of several variants, the safest guess keeps the words they share. MBR
weighs evidence about the unknown next title (sampled titles, ranked products' titles, a
generated title) and picks, among the candidates, the one with the most expected n-gram
matches. BLEU is a corpus metric (matches and lengths are summed over all sessions before
the precisions and the brevity penalty are taken), so the choice is made for all sessions
together, by coordinate ascent on the corpus BLEU of the expected statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU

ORDER = 4


def _ngrams(tokens: list[str]) -> list[Counter]:
    return [Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)) for n in range(1, ORDER + 1)]


def expected_statistics(
    candidates: Sequence[Sequence[str]], references: Sequence[Sequence[tuple[str, float]]], tokenize: str = "13a"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session i: `candidates[i]` are the titles to choose from and `references[i]` the
    (title, weight) pairs standing in for the unknown true title: sampled titles (weight 1
    each) or ranked products' titles and a generated one with weights that say how likely each is.

    Returns `session` (session of each candidate row, flattened in order), `stats`
    ([rows, 2 * ORDER]: expected clipped matches of each n-gram order, then the candidate's
    n-gram counts) and `reference_length` ([sessions]: expected token length of the truth)."""
    if len(candidates) != len(references):
        raise ValueError(f"candidates and references differ in sessions: {len(candidates)} != {len(references)}")
    tokenizer = BLEU(tokenize=tokenize).tokenizer
    sessions, rows, reference_length = [], [], np.zeros(len(candidates))
    for i, (hypotheses, weighted) in enumerate(zip(candidates, references)):
        weights = Counter()
        for text, weight in weighted:
            weights[text] += weight
        total = sum(weights.values())
        if not total > 0:
            raise ValueError(f"session {i} has no weighted reference titles to compare its candidates with")
        grams = {text: _ngrams(tokenizer(text).split()) for text in set(hypotheses) | weights.keys()}
        reference_length[i] = sum(w * sum(grams[t][0].values()) for t, w in weights.items()) / total
        for text in hypotheses:
            mine = grams[text]
            matches = [
                sum(w * sum((mine[n] & grams[t][n]).values()) for t, w in weights.items()) / total for n in range(ORDER)
            ]
            rows.append(matches + [sum(mine[n].values()) for n in range(ORDER)])
            sessions.append(i)
    return np.asarray(sessions, dtype=np.int64), np.asarray(rows, dtype=float).reshape(-1, 2 * ORDER), reference_length


def log_corpus_bleu(totals: np.ndarray, reference_length: float) -> np.ndarray:
    """log BLEU-4 of summed statistics ([..., 2 * ORDER]: matches then counts), an order without
    matches counting as 1e-9 of one so that choices still compare where BLEU is 0."""
    matches, counts = np.maximum(totals[..., :ORDER], 1e-9), np.maximum(totals[..., ORDER:], 1.0)
    brevity = np.minimum(0.0, 1.0 - reference_length / counts[..., 0])
    return brevity + np.log(matches / counts).mean(axis=-1)


def choose(session: np.ndarray, stats: np.ndarray, reference_length: np.ndarray, sweeps: int = 10) -> np.ndarray:
    """Index (within its session) of the chosen candidate of every session, maximizing the
    corpus BLEU of the expected statistics: start from each session's candidate with the best
    sentence-level precisions, then coordinate ascent, one session at a time against the
    totals of all the others, until a sweep changes nothing."""
    n_sessions = reference_length.size
    if np.bincount(session, minlength=n_sessions).min() == 0:
        raise ValueError("every session needs at least one candidate")
    bounds = np.r_[np.flatnonzero(np.r_[True, session[1:] != session[:-1]]), session.size]
    precision = (stats[:, :ORDER] / np.maximum(stats[:, ORDER:], 1)).sum(axis=1)
    chosen = _argmax_per_session(session, bounds[:-1], precision)
    reference_total = float(reference_length.sum())
    totals = stats[chosen].sum(axis=0)
    for _ in range(sweeps):
        moved = False
        for i in np.flatnonzero(np.diff(bounds) > 1):
            options = stats[bounds[i] : bounds[i + 1]]
            scores = log_corpus_bleu(totals - stats[chosen[i]] + options, reference_total)
            best = bounds[i] + int(np.argmax(scores))
            if best != chosen[i] and scores[best - bounds[i]] > scores[chosen[i] - bounds[i]]:
                totals += stats[best] - stats[chosen[i]]
                chosen[i], moved = best, True
        if not moved:
            break
    return chosen - bounds[:-1]


def _argmax_per_session(session: np.ndarray, first: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Row index of the largest value in each session (rows grouped by session; ties: first row)."""
    order = np.lexsort((np.arange(value.size), -value, session))
    return order[first]


def mbr_titles(
    candidates: Sequence[Sequence[str]], references: Sequence[Sequence[tuple[str, float]]], tokenize: str = "13a"
) -> list[str]:
    """One title per session: the candidate whose choice maximizes expected corpus BLEU
    against the sessions' weighted reference titles."""
    session, stats, reference_length = expected_statistics(candidates, references, tokenize)
    picks = choose(session, stats, reference_length)
    return [candidates[i][k] for i, k in enumerate(picks)]
