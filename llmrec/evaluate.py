"""Score a submission file against labels: MRR/Recall/NDCG@100 (tasks 1, 2) or BLEU-4 (task 3)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.config import ConfigError
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.read import read_ground_truth
from llmrec.data.schema import TOP_K
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split
from llmrec.metrics import bleu_metrics, ranking_metrics
from llmrec.runs import config_path_for, saved_split

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


def score_split(task: int, predictions: pl.DataFrame, split: TaskSplit, source: str = "predictions") -> dict | None:
    """Metrics of predictions for a split's sessions (in order); None when it has no labels."""
    if split.targets is None:
        return None
    return evaluate(task, predictions, split.targets, split.sessions["locale"], source=source)


def evaluate_file(task: int, pred: str | Path, gt: str | Path | None = None, data: str | Path | None = None, split: str = "valid",
                  phase: int = 1, config: str | Path | None = None, tokenize: str = "13a") -> dict:
    """`llmrec evaluate`: a submission file scored against a labels file (`gt`), or against the
    labels of a split of the data folder `data`. That split is rebuilt with the split settings
    of `config`, by default the config saved beside the predictions (so `--limit` and seeds
    match the run that wrote them)."""
    predictions = read_predictions(pred, task)
    if gt is not None:
        truth = read_ground_truth(gt, task)
        targets = truth["next_item_title" if task == 3 else "next_item"]
        locales = truth["locale"] if "locale" in truth.columns else predictions["locale"]
    elif data is not None:
        saved = config or (config_path_for(pred) if config_path_for(pred).exists() else None)
        split_config = saved_split(saved, name=split, phase=phase)[1] if saved else SplitConfig(name=split, phase=phase)
        task_split = load_task_split(AmazonM2(Path(data)), task, split_config)
        if task_split.targets is None:
            raise ConfigError(f"{data}: no labels for task {task} split {split}")
        targets, locales = task_split.targets, task_split.sessions["locale"]
    else:
        raise ConfigError("give --gt FILE or --data DIR")
    return evaluate(task, predictions, targets, locales, tokenize=tokenize, source=str(pred))
