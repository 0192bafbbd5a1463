"""Co-visitation: items seen near each other in sessions, counted over every released session
(history with next items, plus the inputs of unlabelled sessions), several weightings summed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from llmrec.baselines.common import all_events
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


@dataclass
class Weighting:
    """Pairs (a, b) with b up to `window` steps after (forward) or before (backward) a; a pair at
    distance d adds forward|backward / d ** distance_decay, and the table is scaled by `weight`."""

    window: int = 1
    forward: float = 1.0
    backward: float = 0.5
    distance_decay: float = 1.0
    weight: float = 1.0


@dataclass
class CovisitConfig:
    name: str = "covisit"  # names the table's scores when several are used (llmrec.rank)
    weightings: list[Weighting] = field(
        default_factory=lambda: [
            Weighting(window=1, forward=1.0, backward=0.6),
            Weighting(window=5, forward=1.0, backward=0.8, weight=0.3),
        ]
    )
    neighbors: int = 50  # kept per item
    normalize: bool = True  # divide each item's row by its total, so hubs do not dominate
    recency_decay: float = 0.6  # session item at r steps from the end weighs recency_decay ** r
    max_session_items: int = 20
    include_unlabelled: bool = True


def pair_weights(seq: np.ndarray, item: np.ndarray, weighting: Weighting) -> pl.DataFrame:
    """(a, b, w) summed over all sequences for one weighting; `seq` and `item` are ordered by
    sequence then position. Sums run in float64 (see `covisitation`)."""
    parts = []
    for distance in range(1, weighting.window + 1):
        same = seq[distance:] == seq[:-distance]
        a, b = item[:-distance][same], item[distance:][same]
        scale = weighting.weight / distance**weighting.distance_decay
        differs = a != b
        a, b = a[differs], b[differs]
        if weighting.forward:
            parts.append(pl.DataFrame({"a": a, "b": b, "w": np.full(a.size, weighting.forward * scale, np.float64)}))
        if weighting.backward:
            parts.append(pl.DataFrame({"a": b, "b": a, "w": np.full(a.size, weighting.backward * scale, np.float64)}))
    if not parts:
        return pl.DataFrame(schema={"a": pl.UInt32, "b": pl.UInt32, "w": pl.Float64})
    return pl.concat(parts).group_by("a", "b").agg(pl.col("w").sum())


def covisitation(events: pl.DataFrame, config: CovisitConfig) -> pl.DataFrame:
    """Top `neighbors` (a -> b, w) per item over all weightings. The weights are summed in
    float64 and stored as float32: sums taken in another order (threads) differ only in bits
    that rounding removes, so a run's table, and the order of tied pairs, does not change."""
    events = events.sort("seq", "pos")
    seq, item = events["seq"].to_numpy(), events["item"].to_numpy()
    table = pl.concat([pair_weights(seq, item, w) for w in config.weightings]).group_by("a", "b").agg(pl.col("w").sum())
    if config.normalize:
        table = table.with_columns(pl.col("w") / pl.col("w").sum().over("a"))
    table = table.with_columns(pl.col("w").cast(pl.Float32))
    return (
        table.sort(["a", "w", "b"], descending=[False, True, False])
        .group_by("a", maintain_order=True)
        .head(config.neighbors)
    )


class Covisitation:
    def __init__(self, config: CovisitConfig):
        self.config = config
        self.name = config.name
        self.max_session_items, self.recency_decay = config.max_session_items, config.recency_decay
        self.table: pl.DataFrame | None = None

    def fit(self, split: TaskSplit, index: ItemIndex) -> None:
        self.table = covisitation(all_events(split, index, self.config.include_unlabelled), self.config)

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame:
        return (
            query_items.join(self.table, left_on="item", right_on="a")
            .group_by("query", pl.col("b").alias("item"))
            .agg((pl.col("weight") * pl.col("w")).sum().cast(pl.Float32).alias("score"))
        )
