"""What a method may learn from and what it is scored on, for each task and split.

`valid` holds out a seeded 10% of the train sessions (the paper's 90/10 by session);
`test` predicts the released test sessions. Previous items of every unlabelled session
(held-out and test) are inputs, so methods may count them; targets never leak.

A folder with an explicit validation file (`sessions_valid.csv|parquet`, written by
`llmrec.data.importers` for the leave-one-out protocol) splits by that file instead, because
its test sessions continue the validation sessions' users, so the test inputs contain the
validation targets:
- `valid` predicts every validation session (file order; `valid_fraction` and `seed` are not
  used), learns from `sessions_train`, and counts only the validation inputs as unlabelled,
  never the test files' inputs;
- `test` also learns from the validation sessions (their targets are known by then) and counts
  the inputs of the predicted test file (tasks 1 and 3 hold the same sessions) as unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import TASK_LOCALES
from llmrec.errors import ConfigError

SPLITS = ("valid", "test")


@dataclass
class SplitConfig:
    name: Literal["valid", "test"] = "valid"
    phase: int = 1  # test files of competition phase 1 or 2
    valid_fraction: float = 0.1
    seed: int = 0
    limit: int = 0  # predict only the first N sessions of the split (0: all): quick runs of slow methods
    offset: int = 0  # skip the first N sessions of the split (with `limit`: a window of it)
    # Session items are never ranked (M2: the next item is never one of them); false lets them be
    # recommended, as the leave-one-out protocol of review datasets allows.
    exclude_history: bool = True


@dataclass(frozen=True)
class TaskSplit:
    task: int
    split: str
    sessions: pl.DataFrame  # session_id, prev_items, locale: the sessions to predict, in output order
    targets: pl.Series | None  # next_item (tasks 1, 2) or next_item_title (task 3); None when unlabelled
    history: pl.DataFrame  # labelled sessions to learn from: session_id, prev_items, locale, next_item
    unlabelled: pl.DataFrame  # prev_items of sessions whose next item is unknown here (fair input)
    catalog: pl.DataFrame  # the product table (id, locale, title, price, attributes)
    exclude_history: bool = True  # session items never appear in a ranked list (SplitConfig.exclude_history)


def train_valid_split(
    train: pl.DataFrame, valid_fraction: float = 0.1, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Seeded split by session; both parts keep file order."""
    if not 0 < valid_fraction < 1:
        raise ConfigError(f"split.valid_fraction must be in (0, 1), got {valid_fraction}")
    rng = np.random.default_rng(seed)
    is_valid = pl.Series("is_valid", rng.random(train.height) < valid_fraction)
    return train.filter(~is_valid), train.filter(is_valid)


def titles_of(items: pl.DataFrame, products: pl.DataFrame, item_column: str = "next_item") -> pl.Series:
    """Title of each (item, locale) row, null when the catalog has no title for it."""
    catalog = products.select(pl.col("id").alias(item_column), "locale", "title")
    return items.select(item_column, "locale").join(
        catalog, on=[item_column, "locale"], how="left", maintain_order="left"
    )["title"]


def load_task_split(data: AmazonM2, task: int, config: SplitConfig) -> TaskSplit:
    split, phase = config.name, config.phase
    if task not in TASK_LOCALES:
        raise ConfigError(f"task must be 1, 2 or 3, got {task}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if phase not in (1, 2):
        raise ConfigError(f"phase must be 1 or 2, got {phase}")
    if data.has_valid():
        return _explicit_split(data, task, config)
    train = data.train_sessions()
    released_tests = [
        data.test_sessions(t, p).select("prev_items", "locale")
        for t in (1, 2, 3)
        for p in (1, 2)
        if data.has_test(t, p)
    ]
    if split == "valid":
        history, held_out = train_valid_split(train, config.valid_fraction, config.seed)
        sessions, targets = _labelled(data, task, held_out.filter(pl.col("locale").is_in(TASK_LOCALES[task])))
        unlabelled = [held_out.select("prev_items", "locale"), *released_tests]
    else:
        history = train
        sessions = data.test_sessions(task, phase)
        targets = _test_targets(data, task, phase, sessions)
        unlabelled = released_tests
    return _task_split(data, task, config, sessions, targets, history, unlabelled)


def _explicit_split(data: AmazonM2, task: int, config: SplitConfig) -> TaskSplit:
    """The split of a folder with explicit validation sessions (the module's docstring says why)."""
    train, valid = data.train_sessions(), data.valid_sessions()
    if config.name == "valid":
        sessions, targets = _labelled(data, task, valid.filter(pl.col("locale").is_in(TASK_LOCALES[task])))
        return _task_split(data, task, config, sessions, targets, train, [valid.select("prev_items", "locale")])
    history = pl.concat([train, valid.with_columns(pl.col("session_id") + train.height)])
    sessions = data.test_sessions(task, config.phase)
    targets = _test_targets(data, task, config.phase, sessions)
    return _task_split(data, task, config, sessions, targets, history, [sessions.select("prev_items", "locale")])


def _labelled(data: AmazonM2, task: int, sessions: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Held-out sessions and their targets; task 3 predicts the next item's title, so sessions
    whose next item has none are left out."""
    if task != 3:
        return sessions, sessions["next_item"]
    sessions = sessions.with_columns(titles_of(sessions, data.products()).alias("next_item_title"))
    sessions = sessions.filter(pl.col("next_item_title").is_not_null())
    return sessions, sessions["next_item_title"]


def _test_targets(data: AmazonM2, task: int, phase: int, sessions: pl.DataFrame) -> pl.Series | None:
    if not data.has_ground_truth(task, phase):
        return None
    truth = data.ground_truth(task, phase)
    if truth.height != sessions.height:
        raise ValueError(
            f"ground truth of task {task} phase {phase} has {truth.height} rows, test file {sessions.height}"
        )
    return truth["next_item_title" if task == 3 else "next_item"]


def _task_split(data, task, config, sessions, targets, history, unlabelled) -> TaskSplit:
    if config.limit or config.offset:
        window = lambda frame: frame.slice(config.offset, config.limit or None)
        sessions, targets = window(sessions), (window(targets) if targets is not None else None)
    return TaskSplit(
        task=task,
        split=config.name,
        sessions=sessions.select("session_id", "prev_items", "locale"),
        targets=targets,
        history=history,
        unlabelled=pl.concat(unlabelled)
        if unlabelled
        else pl.DataFrame(schema={"prev_items": pl.List(pl.String), "locale": history["locale"].dtype}),
        catalog=data.products(),
        exclude_history=config.exclude_history,
    )
