"""Per-locale statistics of a dataset folder, shaped like Table 2 of the Amazon-M2 paper."""

from __future__ import annotations

import polars as pl

from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import LOCALES


def session_stats(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per locale: sessions, interactions (next items included), previous items per session,
    repeat ratios and how often the next item is among the previous ones."""
    has_next = "next_item" in sessions.columns
    items = pl.col("prev_items")
    frame = sessions.select(
        "locale",
        items.list.len().alias("length"),
        (items.list.n_unique() < items.list.len()).alias("repeat"),
        (items.list.eval(pl.element() == pl.element().shift(1)).list.any()).alias("immediate_repeat"),
        (items.list.contains(pl.col("next_item")) if has_next else pl.lit(None, pl.Boolean)).alias("next_in_session"),
    )
    return frame.group_by("locale").agg(
        pl.len().alias("sessions"),
        (pl.col("length").sum() + (pl.len() if has_next else 0)).alias("interactions"),
        pl.col("length").mean().alias("avg_len"),
        pl.col("length").median().alias("median_len"),
        pl.col("repeat").mean().alias("repeat"),
        pl.col("immediate_repeat").mean().alias("imm_repeat"),
        pl.col("next_in_session").mean().alias("next_in_sess"),
    )


def session_items(sessions: pl.DataFrame) -> pl.DataFrame:
    """Distinct (id, locale) pairs that the sessions mention, next items included."""
    frames = [sessions.select(pl.col("prev_items").alias("id"), "locale").explode("id")]
    if "next_item" in sessions.columns:
        frames.append(sessions.select(pl.col("next_item").alias("id"), "locale"))
    return pl.concat(frames).unique()


def familiar_transitions(history: pl.DataFrame, sessions: pl.DataFrame, next_items: pl.Series) -> float:
    """Share of `sessions` whose (last previous item, next item) pair occurs as consecutive items,
    in that order and locale, in some `history` session (its next item counted as its last item):
    how familiar the step to predict is from the sessions one can learn from."""
    asked = sessions.select("locale", pl.col("prev_items").list.last().alias("a"), next_items.alias("b"))
    path = pl.concat_list("prev_items", "next_item")
    steps = history.select(
        "locale", path.list.head(path.list.len() - 1).alias("a"), path.list.tail(path.list.len() - 1).alias("b")
    ).explode("a", "b")
    seen = (
        steps.join(asked.unique(), on=["locale", "a", "b"], how="semi")
        .unique()
        .with_columns(pl.lit(True).alias("seen"))
    )
    return float(
        asked.join(seen, on=["locale", "a", "b"], how="left", maintain_order="left")["seen"].fill_null(False).mean()
    )


def dataset_stats(data: AmazonM2) -> pl.DataFrame:
    """One row per locale, plus "all": train `sessions`, `interactions` (next items included),
    previous items per session (`avg_len`, `median_len`), share of sessions with a repeated item
    (`repeat`) or an item repeated at once (`imm_repeat`), share whose next item is among the
    previous ones (`next_in_sess`, 0 in the release), catalog `products`, share with a title or
    a price (`titled`, `priced`) or also listed in another locale (`shared`), session ids absent
    from the catalog (`unlisted_ids`), explicit validation sessions (`valid`, imported folders
    only) and phase-1 test sessions per task (`test1`..`test3`)."""
    train = data.train_sessions()
    products = data.products()
    table = session_stats(train)
    catalog = products.group_by("locale").agg(
        pl.len().alias("products"),
        pl.col("title").is_not_null().mean().alias("titled"),
        pl.col("price").is_not_null().mean().alias("priced"),
    )
    shared = (
        products.with_columns(pl.col("locale").n_unique().over("id").alias("n_locales"))
        .group_by("locale")
        .agg((pl.col("n_locales") > 1).mean().alias("shared"))
    )
    catalog_keys = products.select("id", "locale").with_columns(pl.lit(True).alias("in_catalog"))
    mentioned = session_items(train).join(catalog_keys, on=["id", "locale"], how="left")
    missing = mentioned.group_by("locale").agg(pl.col("in_catalog").is_null().sum().alias("unlisted_ids"))
    table = table.join(catalog, on="locale", how="full", coalesce=True)
    table = table.join(shared, on="locale", how="left").join(missing, on="locale", how="left")
    if data.has_valid():
        table = table.join(
            data.valid_sessions().group_by("locale").agg(pl.len().alias("valid")), on="locale", how="left"
        )
    for task in (1, 2, 3):
        if data.has_test(task):
            counts = data.test_sessions(task).group_by("locale").agg(pl.len().alias(f"test{task}"))
            table = table.join(counts, on="locale", how="left")
    order = pl.DataFrame({"locale": pl.Series(LOCALES, dtype=table["locale"].dtype)})
    table = order.join(table, on="locale", how="left")
    total = _total_row(table, train)
    return pl.concat([table, total], how="vertical_relaxed")


def _total_row(table: pl.DataFrame, train: pl.DataFrame) -> pl.DataFrame:
    overall = session_stats(train.with_columns(pl.lit("UK").cast(train["locale"].dtype).alias("locale")))
    sums = table.select(
        pl.col(c).sum() for c in table.columns if c.startswith("test") or c in ("valid", "products", "unlisted_ids")
    )
    weighted = table.select(
        ((pl.col(c) * pl.col("products")).sum() / pl.col("products").sum()).alias(c)
        for c in ("titled", "priced", "shared")
    )
    row = pl.concat([overall.drop("locale"), sums, weighted], how="horizontal")
    row = row.with_columns(pl.lit("all").alias("locale")).select(table.columns)
    return row.with_columns(pl.col("locale").cast(pl.String))
