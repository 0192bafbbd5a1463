"""Score a submission file against labels: MRR/Recall/NDCG@100 (tasks 1, 2) or BLEU-4 (task 3)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.schema import TOP_K
from llmrec.metrics import bleu_metrics, ranking_metrics

PREDICTION_COLUMN = {1: "next_item_prediction", 2: "next_item_prediction", 3: "next_item_title"}


def read_predictions(path: str | Path, task: int) -> pl.DataFrame:
    """A submission parquet: `locale` and `next_item_prediction` (tasks 1, 2) or `next_item_title`."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    try:
        frame = pl.read_parquet(path)
    except pl.exceptions.PolarsError as error:
        raise DataFormatError(path, f"not a parquet file: {str(error).splitlines()[0]}") from None
    column = PREDICTION_COLUMN[task]
    if column not in frame.columns:
        raise DataFormatError(path, f"missing column '{column}' for task {task}", field=column)
    return frame


def evaluate(
    task: int,
    predictions: pl.DataFrame,
    targets: pl.Series,
    locales: pl.Series,
    k: int = TOP_K,
    tokenize: str = "13a",
    source: str = "predictions",
) -> dict:
    """`{"overall": {...}, "per_locale": {...}}`, rows of predictions and targets aligned by order."""
    if predictions.height != len(targets):
        raise DataFormatError(source, f"has {predictions.height} rows but the labels have {len(targets)}")
    if "locale" in predictions.columns:
        mismatch = predictions["locale"].cast(pl.String) != locales.cast(pl.String)
        if mismatch.any():
            row = int(mismatch.arg_true()[0])
            raise DataFormatError(
                source, f"locale {predictions['locale'][row]} but the label is for {locales[row]} (rows out of order?)",
                row=row + 1, field="locale",
            )
    column = PREDICTION_COLUMN[task]
    if task == 3:
        return bleu_metrics(predictions[column].fill_null("").to_list(), targets.to_list(), locales.cast(pl.String).to_list(), tokenize=tokenize)
    return ranking_metrics(predictions[column], targets, locales.cast(pl.String), k=k)
