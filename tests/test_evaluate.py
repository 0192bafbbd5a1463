"""`evaluate` scores only valid submissions, and scores them exactly as the metrics do."""

from __future__ import annotations

import polars as pl
import pytest

from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.evaluate import check_predictions, evaluate, known_items, read_predictions
from llmrec.metrics import bleu_metrics, ranking_metrics

CATALOG = pl.DataFrame(
    {"id": ["A000000001", "A000000002", "A000000003", "D000000001"], "locale": ["UK", "UK", "UK", "DE"]}
)
TARGETS = pl.Series(["A000000002", "D000000001"])
LOCALES = pl.Series(["UK", "DE"])


def submission(lists, locales=("UK", "DE")) -> pl.DataFrame:
    return pl.DataFrame(
        {"locale": list(locales), "next_item_prediction": lists},
        schema={"locale": pl.String, "next_item_prediction": pl.List(pl.String)},
    )


def test_valid_submissions_score_exactly_as_the_metrics():
    lists = submission([["A000000001", "A000000002"], ["D000000001"]])
    for catalog in (None, CATALOG):
        assert evaluate(1, lists, TARGETS, LOCALES, k=3, catalog=catalog) == ranking_metrics(
            lists["next_item_prediction"], TARGETS, LOCALES, k=3
        )
    titles = pl.DataFrame({"locale": ["UK", "DE"], "next_item_title": ["a saw", None]})
    references = pl.Series(["a red saw", "ein Hammer"])
    assert evaluate(3, titles, references, LOCALES) == bleu_metrics(["a saw", ""], references.to_list(), ["UK", "DE"])


REJECTED = [
    (
        [["A000000001", "A000000001"], ["D000000001"]],
        "row 1, field 'next_item_prediction'",
        "id 'A000000001' appears twice",
    ),
    (
        [["A000000001"], ["D000000001", "A000000001", "A000000002", "A000000003"]],
        "row 2, field 'next_item_prediction'",
        "4 ids, at most 3 allowed",
    ),
    (
        [["A000000001"], ["A000000002"]],
        "row 2, field 'next_item_prediction'",
        "id 'A000000002' is a product of UK, not of the row's locale DE",
    ),
    (
        [["A000000009"], ["D000000001"]],
        "row 1, field 'next_item_prediction'",
        "id 'A000000009' is not in the catalogue",
    ),
    ([["A000000001"], None], "row 2, field 'next_item_prediction'", "missing list"),
    ([["A000000001", None], ["D000000001"]], "row 1, field 'next_item_prediction'", "a null id"),
]


@pytest.mark.parametrize("lists, where, message", REJECTED)
def test_invalid_lists_are_rejected_naming_file_row_and_field(tmp_path, lists, where, message):
    path = tmp_path / "sub.parquet"
    submission(lists).write_parquet(path)
    with pytest.raises(DataFormatError) as caught:
        evaluate(1, read_predictions(path, 1), TARGETS, LOCALES, k=3, source=str(path), catalog=CATALOG)
    shown = str(caught.value)
    assert shown.startswith(str(path)) and where in shown and message in shown and "\n" not in shown


WRONG_TYPES = [
    (
        pl.DataFrame({"locale": ["UK", "DE"], "next_item_prediction": [[1, 2], [3]]}),
        1,
        "field 'next_item_prediction'",
        "expected a list of ids, got List(Int64)",
    ),
    (
        pl.DataFrame({"locale": ["UK", "DE"], "next_item_prediction": ["A000000001", "D000000001"]}),
        1,
        "field 'next_item_prediction'",
        "expected a list of ids, got String",
    ),
    (
        pl.DataFrame({"locale": [1, 2], "next_item_prediction": [["A000000001"], ["D000000001"]]}),
        1,
        "field 'locale'",
        "expected text, got Int64",
    ),
    (
        pl.DataFrame({"locale": ["UK", "XX"], "next_item_prediction": [["A000000001"], ["D000000001"]]}),
        1,
        "row 2, field 'locale'",
        "unknown locale 'XX'",
    ),
    (
        pl.DataFrame({"locale": ["UK", "DE"], "next_item_title": [1, 2]}),
        3,
        "field 'next_item_title'",
        "expected text, got Int64",
    ),
]


@pytest.mark.parametrize("frame, task, where, message", WRONG_TYPES)
def test_columns_of_the_wrong_type_are_rejected(tmp_path, frame, task, where, message):
    path = tmp_path / "sub.parquet"
    frame.write_parquet(path)
    with pytest.raises(DataFormatError) as caught:
        check_predictions(read_predictions(path, task), task, path)
    assert where in str(caught.value) and message in str(caught.value)
    with pytest.raises(DataFormatError):  # the same checks hold for frames that never were files
        check_predictions(frame, task, "frame")


def test_task3_groups_bleu_by_the_labels_locale_and_checks_the_predictions_agree():
    references = pl.Series(["a red saw with a wooden handle", "ein roter Hammer mit Stiel aus Holz"])
    unlabelled = pl.DataFrame({"next_item_title": ["a red saw with a wooden handle", "ein Hammer"]})
    result = evaluate(3, unlabelled, references, LOCALES)
    assert set(result["per_locale"]) == {"UK", "DE"} and result["per_locale"]["UK"]["bleu"] == pytest.approx(1.0)
    swapped = unlabelled.with_columns(pl.Series("locale", ["DE", "UK"]))
    with pytest.raises(DataFormatError, match="row 1, field 'locale'"):
        evaluate(3, swapped, references, LOCALES)


def test_baseline_submissions_pass_the_catalogue_check_of_the_release(tiny_data):
    data = AmazonM2(tiny_data)
    split = load_task_split(data, 1, SplitConfig(name="test"))
    lists = run_baseline("covisit", split, BaselineConfig())
    catalog = known_items(data)
    # Some session ids are in no product table (as in the release): they are known all the same.
    unlisted = catalog.join(
        data.products().select("id", pl.col("locale").cast(pl.String)), on=["id", "locale"], how="anti"
    )
    assert unlisted.height > 0
    scored = evaluate(1, lists, split.targets, split.sessions["locale"], catalog=catalog)
    assert scored == evaluate(1, lists, split.targets, split.sessions["locale"])
