"""Text signals for ranking, from the retrieval layer: a product's nearest products by text,
the text similarity of two products, and products grounded from generated titles. Without
titles in the catalog there are none, and ranking runs on ids alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.item_index import ItemIndex
from llmrec.data.schema import TASK_LOCALES
from llmrec.data.split import TaskSplit
from llmrec.retrieve import CatalogIndex, GroundConfig, RetrieveConfig, ground_titles

BLOCK = 1 << 16  # product pairs compared at once: bounds the memory of gathered vectors


@dataclass
class TextConfig:
    enabled: bool = True  # false: ids only, even when the catalog has titles
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)  # encoder, product texts, index
    ground: GroundConfig = field(default_factory=GroundConfig)  # generated titles -> products


class TextSignals:
    """The catalog's text index, seen the way candidates and features use it."""

    def __init__(
        self, catalog_index: CatalogIndex, ground_config: GroundConfig | None = None, log: Callable[[str], None] = print
    ):
        self.catalog_index, self.ground_config, self.log = catalog_index, ground_config or GroundConfig(), log

    @classmethod
    def for_catalog(
        cls, catalog: pl.DataFrame, config: TextConfig, log: Callable[[str], None] = print
    ) -> TextSignals | None:
        """The catalog's embeddings and indexes (from the cache when built before), or None
        when text is disabled or no product has a title: then ranking runs on ids only."""
        if not config.enabled:
            return None
        titled = (
            catalog["title"].str.strip_chars().str.len_chars().fill_null(0).gt(0).sum()
            if "title" in catalog.columns
            else 0
        )
        if titled == 0:
            log("the catalog has no product titles: ranking on ids only (no text neighbours, no grounded titles)")
            return None
        return cls(CatalogIndex.build(catalog, config.retrieve, log=log), config.ground, log)

    def ground(self, titles: pl.DataFrame, sessions: pl.DataFrame, popularity: pl.DataFrame) -> pl.DataFrame:
        """Products of each session's locale nearest to its generated titles (session items
        excluded): session_id, locale, id, ground_score, similarity, retrieval_rank, hits, title_score."""
        return ground_titles(self.catalog_index, titles, sessions, popularity, self.ground_config, log=self.log)

    def neighbors(self, items: pl.DataFrame, k: int) -> pl.DataFrame:
        return self.catalog_index.neighbors(items, k)

    def similarity_by_code(self, index: ItemIndex) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Cosine similarity of the texts of item codes a[i] and b[i] (NaN where unknown)."""
        rows = self.catalog_index.rows_of(index.items.select("locale", "id")).fill_null(-1).to_numpy().astype(np.int64)
        catalog_index = self.catalog_index

        def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            ra, rb = rows[a], rows[b]
            out = np.full(len(a), np.nan, dtype=np.float32)
            known = np.flatnonzero((ra >= 0) & (rb >= 0))
            for start in range(0, len(known), BLOCK):
                pick = known[start : start + BLOCK]
                out[pick] = np.einsum(
                    "ij,ij->i", catalog_index.vectors_at(ra[pick]), catalog_index.vectors_at(rb[pick])
                )
            return out

        return similarity


def read_titles(path: str | Path) -> pl.DataFrame:
    """A titles parquet written by `llmrec generate` (session_id, locale, candidates, ...)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    try:
        return pl.read_parquet(path)
    except pl.exceptions.PolarsError as error:
        raise DataFormatError(path, f"not a parquet file: {str(error).splitlines()[0]}") from None


def check_titles(titles: pl.DataFrame, split: TaskSplit, name: str, allow_extra: bool = False) -> None:
    """The titles must be those of this split's sessions: same session ids, same locales
    (`allow_extra`: titles of other sessions of the same task may come along, and are unused)."""
    missing = [c for c in ("session_id", "locale", "candidates") if c not in titles.columns]
    if missing:
        raise DataFormatError(
            name, f"missing column '{missing[0]}' (write it with `llmrec generate --task {split.task}`)"
        )
    unknown = titles.filter(~pl.col("locale").is_in(list(TASK_LOCALES[split.task])))
    if unknown.height:
        raise DataFormatError(
            name,
            f"row {int(unknown['session_id'][0])} has locale {unknown['locale'][0]}, not one of task "
            f"{split.task}'s {', '.join(TASK_LOCALES[split.task])}",
        )
    sessions = split.sessions.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String))
    joined = titles.select(
        pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String).alias("titles_locale")
    ).join(sessions, on="session_id", how="left")
    foreign = joined.filter(pl.col("locale").is_null() | (pl.col("locale") != pl.col("titles_locale")))
    if allow_extra:
        foreign = foreign.filter(pl.col("locale").is_not_null())
    if foreign.height:
        raise DataFormatError(
            name,
            f"session {int(foreign['session_id'][0])} is not a session of task {split.task}'s "
            f"{split.split} split (titles written for other sessions?)",
        )
    covered = sessions.join(titles.select(pl.col("session_id").cast(pl.Int64)), on="session_id", how="semi").height
    if covered < sessions.height:
        raise DataFormatError(
            name,
            f"titles for {covered:,} of the split's {sessions.height:,} sessions; generate them for "
            f"all (`llmrec generate --task {split.task} --split {split.split}`)",
        )
