"""Candidate items per session from several sources. Each source keeps its own score and rank
(`s_<source>`, `r_<source>`), so the reranker learns how far to trust each one.

Sources: co-visitation tables with different weightings, co-visitation by product id across
all locales (evidence from the large locales for ES/FR/IT), session-KNN, SASRec (a sequence
model trained on the split; off by default, as it trains for minutes), the locale's popular
items, products whose text is nearest to the session's last item, and products grounded from
the LLM's generated titles. Session items are never candidates unless the split keeps history
rankable (`split.exclude_history=false`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from llmrec import io
from llmrec.baselines.common import SplitEvents, history_items, query_items
from llmrec.baselines.covisit import (
    Covisitation,
    CovisitConfig,
    PairCounts,
    Weighting,
    covisitation,
    neighbour_matrix,
    score_neighbours,
)
from llmrec.baselines.sasrec import Sasrec
from llmrec.baselines.sasrec_config import SasrecConfig
from llmrec.baselines.sknn import SessionKnn, SknnConfig
from llmrec.baselines.sparse import distinct, lookup, pair_key, rank_within, split_key
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit
from llmrec.errors import ConfigError

MISSING_RANK = 1000  # the rank of a candidate a source did not propose
# Sources besides the named co-visitation tables.
BUILT_IN_SOURCES = ("global", "sknn", "sasrec", "popularity", "content", "grounded")


def _default_covisit() -> list[CovisitConfig]:
    return [
        CovisitConfig(name="covisit"),  # the baseline's table: near pairs, recent items weigh more
        CovisitConfig(  # raw forward transition counts from the last few items: "what comes next"
            name="covisit_next",
            weightings=[Weighting(window=1, forward=1.0, backward=0.0)],
            normalize=False,
            recency_decay=0.3,
            max_session_items=5,
        ),
        CovisitConfig(  # wide symmetric window over the whole session: "what belongs together"
            name="covisit_wide",
            weightings=[Weighting(window=10, forward=1.0, backward=1.0, distance_decay=0.5)],
            recency_decay=0.85,
            max_session_items=30,
        ),
    ]


@dataclass
class CandidateConfig:
    covisit: list[CovisitConfig] = field(default_factory=_default_covisit)
    covisit_top: int = 80  # candidates kept per session from each co-visitation table
    global_covisit: bool = True  # co-visitation of product ids over all locales (cross-locale evidence)
    global_top: int = 40
    sknn: SknnConfig = field(default_factory=SknnConfig)
    sknn_top: int = 50
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)
    # SASRec's best items per session (0: off); every candidate then also gets its SASRec score.
    sasrec_top: int = 0
    popularity_top: int = 30
    content_top: int = 30  # nearest products by text embedding to the last session item (needs titles)
    grounded_top: int = 50  # products grounded from the generated titles (needs --titles)

    @property
    def source_names(self) -> list[str]:
        """Every source a run with these settings can have (some need text or titles)."""
        return [c.name for c in self.covisit] + list(BUILT_IN_SOURCES)


NeighborSearch = Callable[[pl.DataFrame, int], pl.DataFrame]
"""(frame of `locale`, `id`, k) -> `locale`, `id`, `neighbor`, `similarity`: text neighbours."""


class CandidateSources:
    """Every source fitted on one split; `generate` proposes candidates for a chunk of queries."""

    def __init__(
        self,
        config: CandidateConfig,
        split: TaskSplit,
        index: ItemIndex,
        popularity: pl.DataFrame,
        neighbors: NeighborSearch | None = None,
        grounded: bool = False,
        fitted: Path | None = None,
        split_events: SplitEvents | None = None,
    ):
        """`popularity`: (locale, item, score); `grounded`: whether each chunk comes with products
        grounded from its titles (`generate`); `fitted`: a folder written by `save` whose tables
        are read instead of fitted again; `split_events`: the split's events when already
        encoded."""
        self.config, self.index, self.exclude_history = config, index, split.exclude_history
        names = [c.name for c in config.covisit]
        if len(set(names)) != len(names) or set(BUILT_IN_SOURCES) & set(names):
            raise ConfigError(f"candidates.covisit: names must be distinct and not a built-in source name, got {names}")
        self.covisit = [Covisitation(c) for c in config.covisit]
        self.global_table: GlobalTable | None = None
        self.sknn = SessionKnn(config.sknn) if config.sknn_top else None
        self.sasrec = Sasrec(config.sasrec) if config.sasrec_top else None
        self.popular = popularity.group_by("locale", maintain_order=True).head(config.popularity_top)
        self.neighbors = neighbors if config.content_top else None
        self.grounded = grounded and bool(config.grounded_top)
        if fitted is None:
            self._fit(split, split_events or SplitEvents.of(split, index))
        else:
            self._load(fitted)

    def _fit(self, split: TaskSplit, split_events: SplitEvents) -> None:
        window = max((w.window for c in self.config.covisit for w in c.weightings), default=0)
        counts = PairCounts.of(split_events.all(), window)
        for source in self.covisit:
            source.table = covisitation(None, source.config, counts)
        if self.config.global_covisit and self.covisit:
            self.global_table = _global_covisitation(counts, self.index, self.covisit[0].config)
        if self.sknn is not None:
            self.sknn.fit(split, self.index, split_events)
        if self.sasrec is not None:
            self.sasrec.fit(split, self.index)

    def save(self, folder: Path) -> None:
        """The fitted tables and weights as files, so that processes ranking other sessions of the
        same split (`recommend --shard`) share one fit."""
        folder.mkdir(parents=True, exist_ok=True)
        for source in self.covisit:
            io.write_parquet(source.table, folder / f"covisit-{source.name}.parquet")
        if self.global_table is not None:
            io.write_parquet(self.global_table.table, folder / "global-table.parquet")
            io.write_parquet(self.global_table.codes, folder / "global-codes.parquet")
        if self.sknn is not None:
            for name in SessionKnn.FITTED:
                io.write_parquet(getattr(self.sknn, name), folder / f"sknn-{name}.parquet")
        if self.sasrec is not None:
            self.sasrec.save(folder / "sasrec.safetensors")

    def _load(self, folder: Path) -> None:
        for source in self.covisit:
            source.table = pl.read_parquet(folder / f"covisit-{source.name}.parquet")
        if self.config.global_covisit and self.covisit:
            self.global_table = GlobalTable(
                pl.read_parquet(folder / "global-table.parquet"),
                pl.read_parquet(folder / "global-codes.parquet"),
                self.index,
            )
        if self.sknn is not None:
            for name in SessionKnn.FITTED:
                setattr(self.sknn, name, pl.read_parquet(folder / f"sknn-{name}.parquet"))
        if self.sasrec is not None:
            self.sasrec.load(folder / "sasrec.safetensors", self.index, self.exclude_history)

    @property
    def names(self) -> list[str]:
        names = [c.name for c in self.covisit]
        names += ["global"] if self.global_table is not None else []
        names += ["sknn"] if self.sknn is not None else []
        names += ["sasrec"] if self.sasrec is not None else []
        names += ["popularity"] if self.config.popularity_top else []
        names += ["content"] if self.neighbors is not None else []
        names += ["grounded"] if self.grounded else []
        return names

    def generate(self, queries: pl.DataFrame, grounded: pl.DataFrame | None = None) -> pl.DataFrame:
        """(query, item, s_<source>, r_<source> for every source): the union of every source's
        top candidates for `queries` (query, locale, prev_items), session items removed;
        `grounded`: (query, item, ground_score, ...) products grounded from their titles."""
        config = self.config
        proposals = []
        sessions = [query_items(queries, s.max_session_items, s.recency_decay) for s in self.covisit]
        for source, items in zip(self.covisit, sessions):
            proposals.append((source.name, source.score(items), config.covisit_top))
        if self.global_table is not None:  # weighted as the first table
            proposals.append(("global", self.global_table.score(sessions[0]), config.global_top))
        if self.sknn is not None:
            items = query_items(queries, self.sknn.max_session_items, self.sknn.recency_decay)
            proposals.append(("sknn", self.sknn.score(items), config.sknn_top))
        if self.sasrec is not None:
            proposals.append(("sasrec", self.sasrec.score_sessions(queries), config.sasrec_top))
        if config.popularity_top:
            popular = queries.select("query", "locale").join(self.popular, on="locale").select("query", "item", "score")
            proposals.append(("popularity", popular, config.popularity_top))
        if self.neighbors is not None:
            proposals.append(("content", self._content(queries), config.content_top))
        if self.grounded:
            if grounded is None:
                raise ValueError("generate: these sources propose grounded products, give them for the chunk")
            grounded = grounded.select("query", "item", pl.col("ground_score").alias("score"))
            proposals.append(("grounded", grounded, config.grounded_top))
        session_items = history_items(queries, self.exclude_history)
        excluded = distinct(pair_key(session_items["query"].to_numpy(), session_items["item"].to_numpy()))
        tops = {name: _top(frame, top, excluded) for name, frame, top in proposals}
        keys = distinct(np.concatenate([k for k, _, _ in tops.values()]))
        query, item = split_key(keys)
        columns = {"query": query.astype(np.uint32), "item": item.astype(np.uint32)}
        for name in self.names:
            score, rank = np.zeros(keys.size, np.float32), np.full(keys.size, MISSING_RANK, np.int32)
            found, scores, ranks = tops[name]
            where = np.searchsorted(keys, found)
            score[where], rank[where] = scores, ranks
            columns[f"s_{name}"], columns[f"r_{name}"] = score, rank
        wide = pl.DataFrame(columns)
        if self.sasrec is not None:  # the sequence model's opinion of every candidate, not only its own
            scores = self.sasrec.score_candidates(queries, wide.select("query", "item"))["score"]
            wide = wide.with_columns(scores.cast(pl.Float32).alias("s_sasrec"))
        return wide

    def _content(self, queries: pl.DataFrame) -> pl.DataFrame:
        """Text neighbours of each session's last item, scored by cosine similarity."""
        last = queries.select("query", pl.col("locale").cast(pl.String), pl.col("prev_items").list.last().alias("id"))
        found = self.neighbors(last.select("locale", "id").unique(), self.config.content_top + 1)
        found = found.filter(pl.col("neighbor") != pl.col("id")).with_columns(pl.col("locale").cast(pl.String))
        frame = last.join(found, on=["locale", "id"]).drop("id").rename({"neighbor": "id"})
        frame = frame.with_columns(pl.col("locale").cast(self.index.items["locale"].dtype))
        return self.index.encode(frame, "id").select("query", "item", pl.col("similarity").alias("score"))


def _top(frame: pl.DataFrame, top: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source's best `top` candidates per query (score descending, then item code), leaving
    out the `excluded` (query, item) keys (sorted): their keys, scores and ranks."""
    frame = frame.drop_nulls("item")
    keys = pair_key(frame["query"].to_numpy(), frame["item"].to_numpy())
    scores = frame["score"].cast(pl.Float32).to_numpy()
    kept = ~lookup(keys, excluded)[1]
    keys, scores = keys[kept], scores[kept]
    by_key = np.argsort(keys, kind="stable")
    keys, scores = keys[by_key], scores[by_key]
    order, rank = rank_within(split_key(keys)[0], scores)
    best = order[rank < top]
    return keys[best], scores[best], rank[rank < top].astype(np.int32)


class GlobalTable:
    """Co-visitation of product ids regardless of locale: UK/DE sessions inform ES/FR/IT ones
    wherever they list the same product."""

    def __init__(self, table: pl.DataFrame, codes: pl.DataFrame, index: ItemIndex):
        self.table = table  # a, b: global codes; w
        self.codes = codes  # item (locale code), gid (global code)
        self.matrix = neighbour_matrix(table)
        self.gid_of = _gid_of(codes, index)
        # The locale's code of each (gid, locale), or MISSING where that locale lacks the product.
        self.locales = len(index.items["locale"].dtype.categories)
        self.local = np.full(int(codes["gid"].max() or 0) * self.locales + self.locales, self.MISSING, np.int64)
        locale = index.items["locale"].to_physical().to_numpy()
        items = codes["item"].to_numpy()
        self.local[codes["gid"].to_numpy().astype(np.int64) * self.locales + locale[items]] = items

    MISSING = -1

    def score(self, items: pl.DataFrame) -> pl.DataFrame:
        """Global neighbours of the session items (query, item, weight, locale), mapped back to
        products of the session's locale; ascending by query."""
        by_gid = items.select("query", pl.Series("item", self.gid_of[items["item"].to_numpy()]), "weight")
        scored = score_neighbours(by_gid, self.matrix)
        locale = items.group_by("query").agg(pl.col("locale").first().to_physical())
        locale_of = np.zeros(int(items["query"].max() or 0) + 1, np.int64)
        locale_of[locale["query"].to_numpy()] = locale["locale"].to_numpy()
        queries = scored["query"].to_numpy()
        local = self.local[scored["item"].to_numpy().astype(np.int64) * self.locales + locale_of[queries]]
        found = local != self.MISSING
        return pl.DataFrame(
            {
                "query": queries[found],
                "item": local[found].astype(np.uint32),
                "score": scored["score"].to_numpy()[found],
            }
        )


def _global_covisitation(counts: PairCounts, index: ItemIndex, config: CovisitConfig) -> GlobalTable:
    """The first table's weighting over product ids: a session's items share its locale, so two
    of its codes differ exactly when their ids do, and the pair counts by id are the sums of
    the pair counts by code."""
    ids = index.items.select("id").unique(maintain_order=True).with_row_index("gid")
    codes = index.items.join(ids, on="id").select(pl.col("code").alias("item"), "gid").sort("item")
    window = max((w.window for w in config.weightings), default=0)
    counts = PairCounts({distance: counts.counts[distance] for distance in range(1, window + 1)})
    return GlobalTable(covisitation(None, config, counts.mapped(_gid_of(codes, index))), codes, index)


def _gid_of(codes: pl.DataFrame, index: ItemIndex) -> np.ndarray:
    """The global code (product id) of each locale code."""
    gid_of = np.zeros(index.items.height, dtype=np.uint32)
    gid_of[codes["item"].to_numpy()] = codes["gid"].to_numpy()
    return gid_of
