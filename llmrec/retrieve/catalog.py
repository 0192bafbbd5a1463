"""The catalog as a searchable object: products, their cached embeddings and one faiss index
per locale, built once from a catalog and a `RetrieveConfig`, then searched by vectors, by
typed titles (the playground), or by product (text neighbours).

Every product has a global `row`: locales are stored one after the other, so a row is its
locale's offset plus its position in that locale's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import polars as pl

from llmrec.retrieve.embed import Encoder, EncoderConfig, LocaleEmbeddings, embed_catalog, embeddings_folder
from llmrec.retrieve.index import IndexConfig, VectorIndex, index_cache_name

SEARCH_BATCH = 4096  # query vectors per faiss call


@dataclass
class RetrieveConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # catalog columns encoded per product, title first (e.g. title, brand, color, size, material, model). Titles
    # alone ground title-like queries best: attributes lowered hit@1 by 4-9 points on the synthetic catalog with e5
    text_fields: list[str] = field(default_factory=lambda: ["title"])
    # the model prompt of product texts ("passage: " for e5; measured 1-3 points better than "query: "); the
    # generated titles are always queries
    catalog_role: Literal["query", "document"] = "document"
    index: IndexConfig = field(default_factory=IndexConfig)
    cache_dir: str | None = None  # embeddings and built indexes; None: <llmrec cache>/embeddings


class CatalogIndex:
    """Embeddings (held once more inside Flat and IVF indexes: about 2 x 1.5 KiB per product at
    384-d) and one index per locale; the encoder stays loaded for queries."""

    def __init__(
        self,
        config: RetrieveConfig,
        encoder: Encoder,
        embeddings: dict[str, LocaleEmbeddings],
        indexes: dict[str, VectorIndex],
        products: pl.DataFrame,
        locale_dtype: pl.DataType,
    ):
        """Use `build`. `products`: row, locale, id, title, price, text, in row order."""
        self.config, self.encoder, self.embeddings, self.indexes = config, encoder, embeddings, indexes
        self.products, self.locale_dtype = products, locale_dtype
        sizes = [len(embeddings[locale].ids) for locale in embeddings]
        self.offsets = dict(zip(embeddings, np.cumsum([0, *sizes[:-1]]).tolist()))

    @classmethod
    def build(
        cls,
        catalog: pl.DataFrame,
        config: RetrieveConfig,
        encoder: Encoder | None = None,
        log: Callable[[str], None] = print,
    ) -> CatalogIndex:
        """Embeddings from the cache (encoding only what is missing), then the indexes (trained
        ones from the cache too). `encoder` defaults to the one `config.encoder` names."""
        encoder = encoder or Encoder(config.encoder)
        folder = embeddings_folder(config.cache_dir)
        embeddings = embed_catalog(catalog, encoder, config.text_fields, config.catalog_role, folder, log)
        indexes = {
            locale: VectorIndex.build(
                part.vectors, config.index, folder / index_cache_name(part.key, config.index), log, locale
            )
            for locale, part in embeddings.items()
        }
        listed = pl.concat(
            [
                part.ids.to_frame("id").with_columns(
                    pl.lit(locale, dtype=pl.String).alias("locale"), part.texts.alias("text")
                )
                for locale, part in embeddings.items()
            ]
        ).with_row_index("row")
        details = catalog.select(
            pl.col("locale").cast(pl.String),
            "id",
            *(
                pl.col(c) if c in catalog.columns else pl.lit(None, dtype=kind).alias(c)
                for c, kind in (("title", pl.String), ("price", pl.Float64))
            ),
        )
        products = listed.join(details, on=["locale", "id"], how="left", maintain_order="left").select(
            "row", "locale", "id", "title", "price", "text"
        )
        return cls(config, encoder, embeddings, indexes, products, catalog["locale"].dtype)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(self.embeddings)

    def check_locales(self, locales: pl.Series, where: str) -> None:
        """A one-line ValueError naming the first locale the index does not hold."""
        if locales.null_count():
            raise ValueError(f"{where}: locale is missing on {locales.null_count()} rows")
        present = locales.cast(pl.String).unique(maintain_order=True)
        unknown = present.filter(~present.is_in(self.locales))
        if len(unknown):
            raise ValueError(
                f"{where}: locale '{unknown[0]}' has no products in the catalog index (locales: "
                f"{', '.join(self.locales)})"
            )

    def rows_of(self, items: pl.DataFrame) -> pl.Series:
        """The row of each (locale, id) of `items`, in order; null for products not indexed."""
        keys = items.select(pl.col("locale").cast(pl.String), "id")
        return keys.join(
            self.products.select("locale", "id", "row"), on=["locale", "id"], how="left", maintain_order="left"
        )["row"]

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings of global rows, (len(rows), d) float32."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.encoder.dimension), dtype=np.float32)
        for locale, part in self.embeddings.items():
            offset = self.offsets[locale]
            inside = (rows >= offset) & (rows < offset + len(part.ids))
            out[inside] = part.vectors[rows[inside] - offset]
        return out

    def search_vectors(self, queries: np.ndarray, locales: Sequence[str] | pl.Series, k: int) -> pl.DataFrame:
        """The k nearest products of each query's own locale: `query` (position in `queries`),
        `rank` (1 = most similar), `row`, `similarity` (cosine); best first per query."""
        locales = pl.Series("locale", locales, dtype=pl.String)
        if not 1 <= k <= np.iinfo(np.uint16).max:
            raise ValueError(f"search: k must be between 1 and {np.iinfo(np.uint16).max}, got {k}")
        if len(locales) != len(queries):
            raise ValueError(f"search: {len(queries)} query vectors but {len(locales)} locales")
        self.check_locales(locales, "search")
        parts = [_empty_hits()]
        for locale in locales.unique(maintain_order=True).to_list():
            picked = np.flatnonzero((locales == locale).to_numpy())
            for start in range(0, len(picked), SEARCH_BATCH):
                batch = picked[start : start + SEARCH_BATCH]
                scores, positions = self.indexes[locale].search(queries[batch], k)
                width = positions.shape[1]
                found = positions.ravel() >= 0
                parts.append(
                    pl.DataFrame(
                        {
                            "query": np.repeat(batch, width)[found].astype(np.uint32),
                            "rank": np.tile(np.arange(1, width + 1, dtype=np.uint16), len(batch))[found],
                            "row": (positions.ravel()[found] + self.offsets[locale]).astype(np.uint32),
                            "similarity": scores.ravel()[found].astype(np.float32),
                        }
                    )
                )
        return pl.concat(parts).sort("query", "rank")

    def search_titles(self, texts: str | Sequence[str], locales: str | Sequence[str], k: int = 10) -> pl.DataFrame:
        """Products nearest to typed titles, each searched in its locale (one locale for all
        when `locales` is a string): `query` (position in `texts`), `text`, `rank`, `locale`,
        `id`, `title`, `price`, `similarity`; best first per query. Empty texts find nothing."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        locales = [locales] * len(texts) if isinstance(locales, str) else list(locales)
        if len(locales) != len(texts):
            raise ValueError(f"search_titles: {len(texts)} texts but {len(locales)} locales")
        asked = pl.DataFrame(
            {"text": texts, "locale": locales}, schema={"text": pl.String, "locale": pl.String}
        ).with_row_index("query")
        self.check_locales(asked["locale"], "search_titles")
        usable = asked.filter(pl.col("text").str.strip_chars().str.len_chars() > 0)
        vectors = self.encoder.encode(usable["text"].to_list(), "query")
        hits = self.search_vectors(vectors, usable["locale"], k)
        hits = hits.with_columns(usable["query"].gather(hits["query"]).alias("query"))
        return (
            hits.join(asked.select("query", "text"), on="query")
            .join(self.products.select("row", "locale", "id", "title", "price"), on="row")
            .sort("query", "rank")
            .select(
                "query", "text", "rank", pl.col("locale").cast(self.locale_dtype), "id", "title", "price", "similarity"
            )
        )

    def neighbors(self, items: pl.DataFrame, k: int) -> pl.DataFrame:
        """The k products whose text is nearest to each product of `items` (locale, id), in
        its locale, itself excluded: `locale`, `id`, `neighbor`, `similarity`. Products not
        indexed get none."""
        wanted = items.select(pl.col("locale").cast(pl.String), "id").unique(maintain_order=True)
        wanted = wanted.with_columns(self.rows_of(wanted).alias("row")).drop_nulls("row")
        hits = self.search_vectors(self.vectors_at(wanted["row"].to_numpy()), wanted["locale"], k + 1)
        hits = hits.with_columns(wanted["row"].gather(hits["query"]).alias("source"))
        hits = hits.filter(pl.col("row") != pl.col("source"))
        hits = hits.filter(pl.int_range(pl.len()).over("query") < k)
        names = self.products.select("row", pl.col("id").alias("neighbor"))
        return (
            hits.join(wanted.select(pl.col("row").alias("source"), "locale", "id"), on="source")
            .join(names, on="row")
            .sort("query", "rank")
            .select(pl.col("locale").cast(self.locale_dtype), "id", "neighbor", "similarity")
        )

    def similarity(self, left: pl.DataFrame, right: pl.DataFrame) -> np.ndarray:
        """Cosine similarity of the texts of products `left[i]` and `right[i]` (each a frame of
        locale, id), float32; NaN where either product is not indexed."""
        if left.height != right.height:
            raise ValueError(f"similarity: {left.height} left products but {right.height} right ones")
        a, b = self.rows_of(left), self.rows_of(right)
        known = np.flatnonzero((a.is_not_null() & b.is_not_null()).to_numpy())
        a, b = a.fill_null(0).to_numpy(), b.fill_null(0).to_numpy()
        out = np.full(left.height, np.nan, dtype=np.float32)
        for start in range(0, len(known), 1 << 16):
            pick = known[start : start + (1 << 16)]
            out[pick] = np.einsum("ij,ij->i", self.vectors_at(a[pick]), self.vectors_at(b[pick]))
        return out


def _empty_hits() -> pl.DataFrame:
    return pl.DataFrame(schema={"query": pl.UInt32, "rank": pl.UInt16, "row": pl.UInt32, "similarity": pl.Float32})
