"""Next-item ranking metrics (KDD Cup 2023 Task 1: MRR@100 is the official score), plus the
HR@K and NDCG@K at K = 5 and 10 that the generative-recommendation papers report."""

import numpy as np
import polars as pl

PAPER_CUTOFFS = (5, 10)  # HR@K and NDCG@K of TIGER, LC-Rec and the papers that follow them


def target_ranks(predictions: pl.Series, targets: pl.Series, k: int = 100) -> np.ndarray:
    """1-based rank of each target among its first ``k`` predictions, 0 when absent.

    Columnar (explode + filter) so 300k sessions x 100 ids stays in the seconds range.
    Repeated ids count at their first position; null targets or lists never hit.
    """
    _check_lengths(predictions=predictions, targets=targets)
    hits = (
        pl.DataFrame({"pred": predictions.list.head(k), "target": targets})
        .with_row_index("row")
        .with_columns(rank=pl.col("pred").list.eval(pl.int_range(1, pl.len() + 1)))
        .explode("pred", "rank")
        .filter(pl.col("pred") == pl.col("target"))
        .group_by("row")
        .agg(pl.col("rank").min())
    )
    ranks = np.zeros(len(targets), dtype=np.int32)
    ranks[hits["row"].to_numpy()] = hits["rank"].to_numpy()
    return ranks


def ranking_metrics(predictions: pl.Series, targets: pl.Series, locales: pl.Series, k: int = 100) -> dict:
    """MRR@k, Recall@k and NDCG@k, then HR@K and NDCG@K for the paper cutoffs K <= k (5, 10),
    overall (mean over all sessions) and per locale.

    With one target per session Recall@K is the hit rate HR@K (target within the first K) and
    the ideal DCG is 1, so NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0.
    """
    _check_lengths(predictions=predictions, targets=targets, locales=locales)
    if len(targets) == 0:
        raise ValueError("ranking_metrics needs at least one session")
    rank = pl.col("rank")
    within = lambda cutoff: (rank > 0) & (rank <= cutoff)
    named = {
        f"mrr@{k}": pl.when(within(k)).then(1.0 / rank).otherwise(0.0).mean(),
        f"recall@{k}": within(k).mean(),
        f"ndcg@{k}": pl.when(within(k)).then(1.0 / (rank + 1).log(2)).otherwise(0.0).mean(),
    }
    for cutoff in (c for c in PAPER_CUTOFFS if c <= k):
        named.setdefault(f"hr@{cutoff}", within(cutoff).mean())
        named.setdefault(f"ndcg@{cutoff}", pl.when(within(cutoff)).then(1.0 / (rank + 1).log(2)).otherwise(0.0).mean())
    metrics = [expression.alias(name) for name, expression in named.items()] + [pl.len().alias("sessions")]
    frame = pl.DataFrame({"locale": locales, "rank": target_ranks(predictions, targets, k)})
    per_locale = frame.group_by("locale").agg(metrics).sort("locale")
    return {
        "overall": frame.select(metrics).row(0, named=True),
        "per_locale": {row.pop("locale"): row for row in per_locale.iter_rows(named=True)},
    }


def _check_lengths(**columns: pl.Series) -> None:
    """Fail loudly instead of silently truncating or broadcasting misaligned inputs."""
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
