"""Score a submission file against labels: MRR/Recall/NDCG@100 and HR/NDCG@5,10 (tasks 1, 2)
or BLEU-4 (task 3).

Submissions are checked before they are scored, as the competition's checker would: a ranked
list (tasks 1, 2) is a non-null list of at most k distinct non-null ids, and with a catalogue
every id is a product of the row's locale; a title (task 3) is text (null counts as "").
Any breach is a one-line `DataFormatError` naming the file, the row (1-based) and the field.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.read import read_ground_truth, require_text
from llmrec.data.schema import LOCALES, TASK_LOCALES, TOP_K
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split
from llmrec.data.stats import session_items
from llmrec.errors import ConfigError
from llmrec.metrics import bleu_metrics, ranking_metrics
from llmrec.runs import config_path_for, saved_split

PREDICTION_COLUMN = {1: "next_item_prediction", 2: "next_item_prediction", 3: "next_item_title"}


def read_predictions(path: str | Path, task: int) -> pl.DataFrame:
    """A submission parquet: `locale` and `next_item_prediction` (tasks 1, 2) or `next_item_title`,
    its columns of the right types (the content is checked by `check_predictions`)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    try:
        frame = pl.read_parquet(path)
    except (Exception, pl.exceptions.PanicException) as error:  # noqa: BLE001 (a damaged file fails anywhere in the decoder)
        raise DataFormatError(
            path, f"not a parquet file: {(str(error).splitlines() or [type(error).__name__])[0]}"
        ) from None
    column = PREDICTION_COLUMN[task]
    if column not in frame.columns:
        raise DataFormatError(path, f"missing column '{column}' for task {task}", field=column)
    return _typed(frame, task, path)


def _typed(predictions: pl.DataFrame, task: int, source: str | Path) -> pl.DataFrame:
    """`locale` and the prediction column as text (a list of text for tasks 1, 2), else an error."""
    column = PREDICTION_COLUMN[task]
    text = [column] if task == 3 else []
    frame = require_text(
        predictions, Path(source), tuple(text + (["locale"] if "locale" in predictions.columns else []))
    )
    if task != 3:
        dtype = frame.schema[column]
        if dtype in (pl.List(pl.Null), pl.List(pl.Categorical)) or dtype == pl.Null:
            frame = frame.with_columns(pl.col(column).cast(pl.List(pl.String)))
        elif dtype != pl.List(pl.String):
            raise DataFormatError(source, f"expected a list of ids, got {dtype}", field=column)
    return frame


def known_items(data: AmazonM2) -> pl.DataFrame:
    """(`id`, `locale`) pairs a submission may name: the product table plus every id the folder's
    sessions mention (the release lists about 0.3% of its session ids in no product table)."""
    sessions = [data.train_sessions()] + ([data.valid_sessions()] if data.has_valid() else [])
    sessions += [data.test_sessions(t, p) for t in TASK_LOCALES for p in (1, 2) if data.has_test(t, p)]
    mentioned = pl.concat([session_items(s).with_columns(pl.col("locale").cast(pl.String)) for s in sessions])
    return pl.concat([data.products().select("id", pl.col("locale").cast(pl.String)), mentioned]).unique()


def check_predictions(
    predictions: pl.DataFrame,
    task: int,
    source: str | Path = "predictions",
    locales: pl.Series | None = None,
    catalog: pl.DataFrame | None = None,
    k: int = TOP_K,
) -> pl.DataFrame:
    """The submission with its columns typed, or a `DataFormatError` for the first bad row.

    Tasks 1, 2: every list is non-null, holds no null id, at most `k` ids and none twice; with a
    `catalog` (`id`, `locale`, e.g. `known_items`), every id is listed in the row's locale (the
    `locale` column, else `locales`). Task 3: titles are text. A `locale` column holds known locales.
    """
    column = PREDICTION_COLUMN[task]
    if column not in predictions.columns:
        raise DataFormatError(source, f"missing column '{column}' for task {task}", field=column)
    frame = _typed(predictions, task, source)
    if "locale" in frame.columns:
        unknown = ~frame["locale"].is_in(LOCALES).fill_null(False)
        if unknown.any():
            row = int(unknown.arg_true()[0])
            raise DataFormatError(source, f"unknown locale {frame['locale'][row]!r}", row=row + 1, field="locale")
    if task == 3:
        return frame
    lists = frame[column]
    _first_bad(lists.is_null(), source, column, lambda row: "missing list (null)")
    _first_bad(lists.list.eval(pl.element().is_null()).list.any(), source, column, lambda row: "a null id in the list")
    _first_bad(lists.list.len() > k, source, column, lambda row: f"{lists[row].len()} ids, at most {k} allowed")
    repeated = lists.list.n_unique() < lists.list.len()
    _first_bad(repeated, source, column, lambda row: f"id {_repeated_id(lists[row])!r} appears twice in the list")
    if catalog is not None:
        row_locales = frame["locale"] if "locale" in frame.columns else locales
        if row_locales is None:
            raise ValueError("checking ids against a catalogue needs the rows' locales: a `locale` column or `locales`")
        _check_catalog(lists, row_locales.cast(pl.String), catalog, source, column)
    return frame


def _first_bad(mask: pl.Series, source, column: str, message) -> None:
    if mask.any():
        row = int(mask.arg_true()[0])
        raise DataFormatError(source, message(row), row=row + 1, field=column)


def _repeated_id(ids: pl.Series) -> str:
    return ids.filter(ids.is_duplicated())[0]


def _check_catalog(lists: pl.Series, locales: pl.Series, catalog: pl.DataFrame, source, column: str) -> None:
    """Every id is a product of its row's locale; the message says whether it is one elsewhere."""
    listed = catalog.select("id", pl.col("locale").cast(pl.String))
    ids = pl.DataFrame({"ids": lists, "locale": locales}).with_row_index("row").explode("ids").drop_nulls("ids")
    stray = ids.join(
        listed, left_on=["ids", "locale"], right_on=["id", "locale"], how="anti", maintain_order="left"
    ).head(1)
    if stray.height:
        row, item, locale = stray["row"][0], stray["ids"][0], stray["locale"][0]
        elsewhere = listed.filter(pl.col("id") == item)["locale"].unique().sort().to_list()
        where = (
            f"a product of {', '.join(elsewhere)}, not of the row's locale {locale}"
            if elsewhere
            else "not in the catalogue"
        )
        raise DataFormatError(source, f"id {item!r} is {where}", row=row + 1, field=column)


def evaluate(
    task: int,
    predictions: pl.DataFrame,
    targets: pl.Series,
    locales: pl.Series,
    k: int = TOP_K,
    tokenize: str = "13a",
    source: str = "predictions",
    catalog: pl.DataFrame | None = None,
) -> dict:
    """`{"overall": {...}, "per_locale": {...}}`, rows of predictions and targets aligned by order.

    `locales` are the labels' locales: metrics are grouped by them, and a `locale` column of
    the predictions must agree row by row. The submission is checked first (`check_predictions`,
    with `catalog` when given)."""
    if predictions.height != len(targets):
        raise DataFormatError(source, f"has {predictions.height} rows but the labels have {len(targets)}")
    predictions = check_predictions(predictions, task, source, locales, catalog, k)
    if "locale" in predictions.columns:
        mismatch = predictions["locale"] != locales.cast(pl.String)
        if mismatch.any():
            row = int(mismatch.arg_true()[0])
            raise DataFormatError(
                source,
                f"locale {predictions['locale'][row]} but the label is for {locales[row]} (rows out of order?)",
                row=row + 1,
                field="locale",
            )
    column = PREDICTION_COLUMN[task]
    if task == 3:
        return bleu_metrics(
            predictions[column].fill_null("").to_list(),
            targets.to_list(),
            locales.cast(pl.String).to_list(),
            tokenize=tokenize,
        )
    return ranking_metrics(predictions[column], targets, locales.cast(pl.String), k=k)


def score_split(task: int, predictions: pl.DataFrame, split: TaskSplit, source: str = "predictions") -> dict | None:
    """Metrics of predictions for a split's sessions (in order); None when it has no labels."""
    if split.targets is None:
        return None
    return evaluate(task, predictions, split.targets, split.sessions["locale"], source=source)


def evaluate_file(
    task: int,
    pred: str | Path,
    gt: str | Path | None = None,
    data: str | Path | None = None,
    split: str = "valid",
    phase: int = 1,
    config: str | Path | None = None,
    tokenize: str = "13a",
) -> dict:
    """`llmrec evaluate`: a submission file scored against a labels file (`gt`), or against the
    labels of a split of the data folder `data`. That split is rebuilt with the split settings
    of `config`, by default the config saved beside the predictions (so `--limit` and seeds
    match the run that wrote them). With `data`, ranked ids are also checked against its
    catalogue (`known_items`)."""
    predictions = read_predictions(pred, task)
    catalog = known_items(AmazonM2(Path(data))) if data is not None and task in (1, 2) else None
    if gt is not None:
        truth = read_ground_truth(gt, task)
        targets = truth["next_item_title" if task == 3 else "next_item"]
        if "locale" not in truth.columns and "locale" not in predictions.columns:
            raise DataFormatError(
                gt, "neither the labels nor the predictions have a locale column to group the scores by", field="locale"
            )
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
    return evaluate(task, predictions, targets, locales, tokenize=tokenize, source=str(pred), catalog=catalog)
