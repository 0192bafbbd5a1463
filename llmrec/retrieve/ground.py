"""Grounding generated titles to real products: the second step of BIGRec (Bao et al. 2023,
"A Bi-Step Grounding Paradigm for Large Language Models in Recommendation Systems",
arXiv:2308.08434; code: github.com/SAI990323/BIGRec).

Each candidate title of a session retrieves the `top_k` products of the session's locale
nearest to it by text embedding; the session's own items are skipped (the next item never
repeats one). A session's candidates are then merged per product: best similarity, best
retrieval rank, how many candidates found it, and a score weighting each candidate by its
probability (softmax of the generator's log-probabilities).

Popularity (BIGRec, `data/movie/adjust_pda.py`): BIGRec ranks items by the L2 distance D
between generated-text and item embeddings, divided by (1 + P)^gamma, where P is the item's
popularity share min-max normalized to [0, 1] (`rank = (1 + pop) ** -gamma * dist`). On unit
vectors D = sqrt(2 - 2 cos) is monotone in the cosine distance, so we divide that instead:

    adjusted = 1 - (1 - cos) / (1 + P) ** gamma

which is the cosine at gamma = 0, keeps an exact match (cos = 1) first whatever the popularity,
and lifts popular items by shrinking their distance. BIGRec also min-max normalizes D per
query over the whole catalog; over a top-k list that would pin the nearest item to 0 at every
gamma, and the cosine distance already has a common [0, 2] scale, so we leave it out.
Popularity re-orders the products retrieved by similarity; it does not search the whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.errors import ConfigError
from llmrec.progress import track
from llmrec.retrieve.catalog import CatalogIndex


@dataclass
class GroundConfig:
    top_k: int = 50  # products retrieved per candidate title
    per_session: int = 100  # grounded products kept per session, best ground_score first; 0: all
    gamma: float = 0.0  # BIGRec popularity exponent; 0: similarity alone
    temperature: float = 1.0  # of the softmax over a session's candidate log-probabilities
    chunk_size: int = 10_000  # sessions encoded and grounded together (bounds memory)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 10_000:
            raise ConfigError(f"ground.top_k must be between 1 and 10000, got {self.top_k}")
        if self.per_session < 0 or self.gamma < 0 or self.chunk_size < 1 or self.temperature <= 0:
            raise ConfigError(
                "ground: per_session and gamma must not be negative, chunk_size must be at least 1, temperature above 0"
            )


GROUNDED_SCHEMA = {
    "session_id": pl.Int64,
    "locale": pl.String,
    "id": pl.String,
    "ground_score": pl.Float32,
    "similarity": pl.Float32,
    "retrieval_rank": pl.UInt16,
    "hits": pl.UInt16,
    "title_score": pl.Float32,
}


def ground_titles(
    catalog: CatalogIndex,
    titles: pl.DataFrame,
    sessions: pl.DataFrame,
    popularity: pl.DataFrame | None = None,
    config: GroundConfig | None = None,
    log: Callable[[str], None] = print,
) -> pl.DataFrame:
    """Products grounded from each session's generated titles, one row per (session, product):
    `session_id`, `locale`, `id`, `ground_score` (probability-weighted, popularity-adjusted
    similarity), `similarity` (best cosine), `retrieval_rank` (best rank among the candidates,
    1 = nearest), `hits` (candidates that retrieved it), `title_score` (the generator's score of
    a candidate that is this product's own title: a constrained beam's, a scored list's; null
    when none is). Sessions in `titles` order, products best first.

    `titles`: `session_id`, `locale`, `candidates` (list of {title, score}; a frame with only
    `next_item_title` counts as one candidate per session). `sessions`: `session_id`,
    `prev_items`, the items never returned. `popularity`: (`locale`, `id`, `count`), needed
    when gamma > 0. Sessions without a non-empty title get no rows."""
    config = config or GroundConfig()
    candidates = candidate_titles(titles, config.temperature)
    catalog.check_locales(titles["locale"], "titles")
    if titles["session_id"].is_duplicated().any():
        raise DataFormatError(
            "titles", f"session_id {titles.filter(pl.col('session_id').is_duplicated())['session_id'][0]} appears twice"
        )
    if not {"session_id", "prev_items"} <= set(sessions.columns):
        raise DataFormatError("sessions", "expected columns session_id and prev_items")
    sessions = sessions.select(pl.col("session_id").cast(titles["session_id"].dtype), "prev_items")
    unknown = titles.join(sessions, on="session_id", how="anti")
    if unknown.height:
        raise DataFormatError(
            "titles", f"session_id {unknown['session_id'][0]} is not among the sessions ({unknown.height} such)"
        )
    boost = popularity_boost(catalog, popularity, config.gamma)
    items = session_items(catalog, candidates.select("order", "session_id", "locale").unique("order"), sessions)

    groups = candidates.with_columns((pl.col("order").rle_id() // config.chunk_size).alias("chunk"))
    chunks = groups.partition_by("chunk", maintain_order=True, include_key=False)
    grounded = [_empty_grounded(titles["session_id"].dtype, catalog.locale_dtype)]
    for chunk in track(chunks, "grounding titles (chunks of sessions)", total=len(chunks)):
        found = _ground_chunk(catalog, chunk, items.join(chunk.select("order").unique(), on="order"), boost, config)
        grounded.append(
            found.with_columns(
                pl.col("session_id").cast(titles["session_id"].dtype), pl.col("locale").cast(catalog.locale_dtype)
            )
        )
    result = pl.concat(grounded)
    log(
        f"grounded titles: {result['session_id'].n_unique():,} of {titles.height:,} sessions got products "
        f"({titles.height - candidates['session_id'].n_unique():,} without a usable title)"
    )
    return result


def candidate_titles(titles: pl.DataFrame, temperature: float = 1.0) -> pl.DataFrame:
    """One row per non-empty candidate title: `order` (session's row in `titles`), `session_id`,
    `locale`, `candidate` (position in its list), `title`, `score` (as given), `weight` (softmax
    of the scores over the session's candidates; a missing score counts as the session's lowest)."""
    if "candidates" not in titles.columns and "next_item_title" in titles.columns:
        one = pl.struct(pl.col("next_item_title").alias("title"), pl.lit(0.0).alias("score"))
        titles = titles.with_columns(pl.concat_list(one).alias("candidates"))
    missing = [c for c in ("session_id", "locale", "candidates") if c not in titles.columns]
    if missing:
        raise DataFormatError("titles", f"no column '{missing[0]}' (expected session_id, locale, candidates)")
    kind = titles.schema["candidates"]
    if not (
        isinstance(kind, pl.List)
        and isinstance(kind.inner, pl.Struct)
        and {"title", "score"} <= {f.name for f in kind.inner.fields}
    ):
        raise DataFormatError("titles", f"candidates must be a list of {{title, score}} structs, got {kind}")
    frame = (
        titles.select("session_id", pl.col("locale").cast(pl.String), "candidates")
        .with_row_index("order")
        .explode("candidates")
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt16).over("order").alias("candidate"))
        .with_columns(
            pl.col("candidates").struct.field("title").str.strip_chars().alias("title"),
            pl.col("candidates").struct.field("score").cast(pl.Float64).alias("score"),
        )
        .filter(pl.col("title").str.len_chars() > 0)
    )
    score = pl.col("score").fill_null(pl.col("score").min().over("order")).fill_null(0.0)
    exponent = ((score - score.max().over("order")) / temperature).exp()
    return frame.select(
        "order",
        "session_id",
        "locale",
        "candidate",
        "title",
        "score",
        (exponent / exponent.sum().over("order")).alias("weight"),
    )


def popularity_boost(catalog: CatalogIndex, popularity: pl.DataFrame | None, gamma: float) -> np.ndarray:
    """(1 + P) ** gamma per catalog row, P the count min-max normalized within the locale
    (products absent from `popularity` count 0)."""
    if gamma == 0:
        return np.ones(catalog.products.height, dtype=np.float32)
    if popularity is None:
        raise ConfigError("ground.gamma > 0 needs an item popularity table (locale, id, count)")
    if not {"locale", "id", "count"} <= set(popularity.columns):
        raise DataFormatError("popularity", "expected columns locale, id, count")
    counts = popularity.select(pl.col("locale").cast(pl.String), "id", pl.col("count").cast(pl.Float64))
    counts = counts.group_by("locale", "id").agg(pl.col("count").sum())
    count = pl.col("count").fill_null(0.0)
    spread = count.max().over("locale") - count.min().over("locale")
    share = pl.when(spread > 0).then((count - count.min().over("locale")) / spread).otherwise(0.0)
    rows = catalog.products.select("row", "locale", "id").join(
        counts, on=["locale", "id"], how="left", maintain_order="left"
    )
    return rows.select(((1.0 + share) ** gamma).cast(pl.Float32)).to_series().to_numpy()


def session_items(catalog: CatalogIndex, sessions_of_titles: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """(order, row): the indexed products among each session's previous items."""
    items = sessions_of_titles.join(sessions, on="session_id").explode("prev_items").rename({"prev_items": "id"})
    items = items.with_columns(catalog.rows_of(items).alias("row")).drop_nulls("row")
    return items.select("order", "row").unique()


def _ground_chunk(
    catalog: CatalogIndex, chunk: pl.DataFrame, items: pl.DataFrame, boost: np.ndarray, config: GroundConfig
) -> pl.DataFrame:
    texts = chunk.select("locale", "title").unique(maintain_order=True).with_row_index("text")
    own_titles = catalog.products.select(
        pl.col("locale").cast(pl.String), pl.col("title").str.strip_chars(), "row"
    ).drop_nulls("title")
    title_scores = (
        chunk.join(own_titles, on=["locale", "title"])
        .group_by("order", "row")
        .agg(pl.col("score").max().cast(pl.Float32).alias("title_score"))
    )
    chunk = chunk.join(texts, on=["locale", "title"]).select(
        "order", "session_id", "locale", "candidate", "weight", "text"
    )
    vectors = catalog.encoder.encode(texts["title"].to_list(), "query")
    item_counts = items.group_by("order").len("n_items")
    margin = int(item_counts["n_items"].quantile(0.9) or 0) if item_counts.height else 0
    first_k = config.top_k + margin
    hits = catalog.search_vectors(vectors, texts["locale"], first_k).rename({"query": "text"})
    kept = _kept(chunk, hits, items, config.top_k)
    # a candidate whose full result list lost too many products to session items searches again, deep enough
    full = hits.group_by("text").len("found").filter(pl.col("found") == first_k)
    counts = kept.group_by("order", "candidate").len("kept")
    short = (
        chunk.join(counts, on=["order", "candidate"], how="left")
        .filter(pl.col("kept").fill_null(0) < config.top_k)
        .join(full, on="text")
        .join(item_counts, on="order")
        .group_by("text")
        .agg(pl.col("n_items").max())
    )
    if short.height:
        deeper = catalog.search_vectors(
            vectors[short["text"].to_numpy()],
            texts["locale"].gather(short["text"]),
            config.top_k + int(short["n_items"].max()),
        )
        deeper = deeper.with_columns(short["text"].gather(deeper["query"]).alias("text")).drop("query")
        hits = pl.concat([hits.join(short.select("text"), on="text", how="anti"), deeper.select(hits.columns)])
        kept = _kept(chunk, hits, items, config.top_k)
    adjusted = 1.0 - (1.0 - pl.col("similarity")) / pl.Series("boost", boost[kept["row"].to_numpy()])
    merged = (
        kept.with_columns(adjusted.alias("adjusted"))
        .group_by("order", "row")
        .agg(
            pl.col("session_id").first(),
            pl.col("locale").first(),
            (pl.col("weight") * pl.col("adjusted")).sum().cast(pl.Float32).alias("ground_score"),
            pl.col("similarity").max(),
            pl.col("retrieval_rank").min(),
            pl.len().cast(pl.UInt16).alias("hits"),
        )
        .join(title_scores, on=["order", "row"], how="left")
    )
    merged = merged.sort(
        ["order", "ground_score", "similarity", "retrieval_rank", "row"], descending=[False, True, True, False, False]
    )
    if config.per_session:
        merged = merged.group_by("order", maintain_order=True).head(config.per_session)
    return merged.join(catalog.products.select("row", "id"), on="row", maintain_order="left").select(
        list(GROUNDED_SCHEMA)
    )


def _kept(chunk: pl.DataFrame, hits: pl.DataFrame, items: pl.DataFrame, top_k: int) -> pl.DataFrame:
    """Each candidate's hits without the session's items, re-ranked 1.. and cut at top_k."""
    rows = chunk.join(hits, on="text").join(items, on=["order", "row"], how="anti")
    rows = rows.with_columns(
        pl.col("rank").rank("ordinal").over("order", "candidate").cast(pl.UInt16).alias("retrieval_rank")
    )
    return rows.filter(pl.col("retrieval_rank") <= top_k).drop("rank")


def _empty_grounded(session_dtype: pl.DataType, locale_dtype: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame(schema=GROUNDED_SCHEMA | {"session_id": session_dtype, "locale": locale_dtype})
