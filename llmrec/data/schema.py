"""The Amazon-M2 release, as constants: locales, columns, file names and quirks."""

from __future__ import annotations

import polars as pl

LOCALES = ("UK", "DE", "JP", "ES", "FR", "IT")
TASK_LOCALES = {1: ("UK", "DE", "JP"), 2: ("ES", "FR", "IT"), 3: LOCALES}
LANGUAGE = {"UK": "en", "DE": "de", "JP": "ja", "ES": "es", "FR": "fr", "IT": "it"}
LOCALE_DTYPE = pl.Enum(list(LOCALES))

ID_LENGTH = 10
MIN_SESSION_LENGTH = 2
PRICE_PLACEHOLDER = 40000000.07  # the release's stand-in for a missing price
TOP_K = 100

PRODUCT_COLUMNS = ("id", "locale", "title", "price", "brand", "color", "size", "model", "material", "author", "desc")
PRODUCT_TEXT_COLUMNS = tuple(c for c in PRODUCT_COLUMNS if c not in ("id", "locale", "price"))
# Not in the release; kept when a products file has them (imported catalogues: "a,b,c" category paths).
OPTIONAL_PRODUCT_COLUMNS = ("categories",)

PRODUCTS_FILE = "products_train"
TRAIN_FILE = "sessions_train"
# Not in the release: explicit validation sessions (prev_items,next_item,locale) of an imported
# folder; when present they ARE the valid split (see llmrec.data.split).
VALID_FILE = "sessions_valid"


def test_file(task: int, phase: int) -> str:
    """Stem of a test-session file as in the labelled post-competition release."""
    return f"task{task}/sessions_test_task{task}_phase{phase}"


def ground_truth_file(task: int, phase: int) -> str:
    return f"task{task}/gt_task{task}_phase{phase}"


def released_test_file(task: int, phase: int) -> str:
    """Stem of the unlabelled test file as released during the competition."""
    return f"sessions_test_task{task}" + ("_phase2" if phase == 2 else "")
