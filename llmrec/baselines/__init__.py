"""Baselines behind one interface: `fit(split, index)` then `score(query_items)`, or, for a
sequence model that reads the ordered sessions, `score_sessions(queries)`; the shared driver
ranks every session in chunks and writes the competition's submission frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import polars as pl

from llmrec.baselines.common import finalize, item_popularity, numbered, query_items
from llmrec.baselines.covisit import Covisitation, CovisitConfig
from llmrec.baselines.last_title import last_titles
from llmrec.baselines.popularity import Popularity, PopularityConfig
from llmrec.baselines.sasrec import Sasrec, SasrecConfig
from llmrec.baselines.sknn import SessionKnn, SknnConfig
from llmrec.data.item_index import ItemIndex
from llmrec.data.schema import TOP_K
from llmrec.data.split import SplitConfig, TaskSplit
from llmrec.errors import ConfigError
from llmrec.progress import track

RANKING_BASELINES = ("popularity", "covisit", "sknn", "sasrec")
TITLE_BASELINES = ("last-title",)


@dataclass
class BaselineConfig:
    k: int = TOP_K
    chunk_size: int = 20_000  # sessions ranked at once: bounds memory, drives the progress bar
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    covisit: CovisitConfig = field(default_factory=CovisitConfig)
    sknn: SknnConfig = field(default_factory=SknnConfig)
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)


@dataclass
class BaselineRun:
    """Everything that determines `llmrec baseline`'s output; saved beside it as `<out>.config.yaml`."""

    name: str = "covisit"
    task: int = 1
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


class Recommender(Protocol):
    name: str
    max_session_items: int  # how many of the latest distinct session items it looks at
    recency_decay: float  # their weights: recency_decay ** steps-from-the-end

    def fit(self, split: TaskSplit, index: ItemIndex) -> None: ...

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame: ...


@runtime_checkable
class SessionRecommender(Protocol):
    """A recommender that needs each session's items in order, repeats included."""

    name: str

    def fit(self, split: TaskSplit, index: ItemIndex) -> None: ...

    # (query, locale, prev_items) -> (query, item, score)
    def score_sessions(self, queries: pl.DataFrame) -> pl.DataFrame: ...


def make_recommender(name: str, config: BaselineConfig) -> Recommender | SessionRecommender:
    if name == "popularity":
        return Popularity()
    if name == "covisit":
        return Covisitation(config.covisit)
    if name == "sknn":
        return SessionKnn(config.sknn)
    if name == "sasrec":
        return Sasrec(config.sasrec)
    raise ConfigError(f"unknown baseline {name!r}; ranking baselines: {', '.join(RANKING_BASELINES)}")


def recommend(recommender: Recommender | SessionRecommender, split: TaskSplit, config: BaselineConfig) -> pl.DataFrame:
    """The submission frame (`locale`, `next_item_prediction`) in session order."""
    index = ItemIndex.from_split(split)
    recommender.fit(split, index)
    popular = item_popularity(split, index, config.popularity.next_item_weight, config.popularity.prev_item_weight)
    queries = numbered(split.sessions, index)
    chunks = range(0, queries.height, config.chunk_size)
    parts = []
    for start in track(chunks, f"{recommender.name}: ranking sessions", total=len(chunks)):
        chunk = queries.slice(start, config.chunk_size)
        if isinstance(recommender, SessionRecommender):
            scored = recommender.score_sessions(chunk)
        else:
            items = query_items(chunk, recommender.max_session_items, recommender.recency_decay)
            scored = recommender.score(items)
        parts.append(finalize(chunk, index, scored, popular, config.k, split.exclude_history))
    if not parts:
        return pl.DataFrame(schema={"locale": pl.String, "next_item_prediction": pl.List(pl.String)})
    return pl.concat(parts)


def run_baseline(name: str, split: TaskSplit, config: BaselineConfig) -> pl.DataFrame:
    """Predictions of baseline `name` for the split: ranked lists (tasks 1, 2) or titles (task 3)."""
    if name not in RANKING_BASELINES + TITLE_BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {', '.join(RANKING_BASELINES + TITLE_BASELINES)}")
    if split.task == 3:
        if name not in TITLE_BASELINES:
            raise ConfigError(
                f"baseline {name!r} does not generate titles; task 3 baselines: {', '.join(TITLE_BASELINES)}"
            )
        titles = last_titles(split.sessions, split.catalog)
        return pl.DataFrame({"locale": split.sessions["locale"].cast(pl.String), "next_item_title": titles})
    if name not in RANKING_BASELINES:
        raise ConfigError(
            f"baseline {name!r} does not rank items; task {split.task} baselines: {', '.join(RANKING_BASELINES)}"
        )
    return recommend(make_recommender(name, config), split, config)
