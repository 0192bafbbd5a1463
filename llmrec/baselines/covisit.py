"""Co-visitation: items seen near each other in sessions, counted over every released session
(history with next items, plus the inputs of unlabelled sessions), several weightings summed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import sparse

from llmrec.baselines.common import all_events
from llmrec.baselines.sparse import csr, entries, group_starts, pair_key, rank_within, split_key, sum_by_key
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


class PairCounts:
    """How often item b follows item a at each distance d (same sequence, a != b): the one pass
    over the events that every co-visitation table of a split is a weighted sum of. Pairs are
    u64 keys (a << 32 | b), counted by sorting, several times faster than hashing at these
    sizes."""

    def __init__(self, counts: dict[int, tuple[np.ndarray, np.ndarray]]):
        self.counts = counts  # distance -> (distinct keys ascending, counts)

    @classmethod
    def of(cls, events: pl.DataFrame, window: int) -> PairCounts:
        """Counts of `events` (seq, pos, item) for distances 1..`window`."""
        events = events.select("seq", "pos", "item").sort("seq", "pos")
        seq, item = events["seq"].to_numpy(), events["item"].to_numpy().astype(np.uint64)
        counts = {}
        for distance in range(1, window + 1):
            same = seq[distance:] == seq[:-distance]
            a, b = item[:-distance][same], item[distance:][same]
            differs = a != b
            counts[distance] = sum_by_key(pair_key(a[differs], b[differs]), np.ones(differs.sum(), np.uint32))
        return cls(counts)

    @property
    def window(self) -> int:
        return max(self.counts, default=0)

    def mapped(self, codes: np.ndarray) -> PairCounts:
        """The counts of the same events with every item replaced by `codes[item]` (several
        items may share a code: their counts add up, and pairs of one code drop out)."""
        codes = codes.astype(np.uint64)
        mapped = {}
        for distance, (keys, n) in self.counts.items():
            a, b = codes[split_key(keys)[0]], codes[split_key(keys)[1]]
            differs = a != b
            mapped[distance] = sum_by_key(pair_key(a[differs], b[differs]), n[differs])
        return PairCounts(mapped)

    def weights(self, weighting: Weighting) -> list[tuple[np.ndarray, np.ndarray]]:
        """(keys, w) parts of one weighting: each distance's counts forward, and transposed
        backward, times the weight of a pair at that distance."""
        if weighting.window > self.window:
            raise ValueError(f"pair counts up to distance {self.window}, the weighting needs {weighting.window}")
        parts = []
        for distance in range(1, weighting.window + 1):
            keys, n = self.counts[distance]
            scale = weighting.weight / distance**weighting.distance_decay
            if weighting.forward:
                parts.append((keys, n * (weighting.forward * scale)))
            if weighting.backward:
                a, b = split_key(keys)
                parts.append((pair_key(b, a), n * (weighting.backward * scale)))
        return parts


def covisitation(events: pl.DataFrame | None, config: CovisitConfig, counts: PairCounts | None = None) -> pl.DataFrame:
    """Top `neighbors` (a -> b, w) per item over all weightings, from `events` (seq, pos, item)
    or their `counts` when already taken (covering every weighting's window). The weights are
    summed in float64 from integer counts, in one fixed order, and stored as float32, so a
    run's table, and the order of tied pairs (b ascending), never changes."""
    window = max((w.window for w in config.weightings), default=0)
    counts = counts if counts is not None else PairCounts.of(events, window)
    parts = [part for weighting in config.weightings for part in counts.weights(weighting)]
    if not parts:
        return pl.DataFrame(schema={"a": pl.UInt32, "b": pl.UInt32, "w": pl.Float32})
    keys, w = sum_by_key(np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts]))
    a, b = split_key(keys)  # ascending by (a, b)
    if config.normalize and a.size:
        starts = group_starts(a)
        w = w / np.repeat(np.add.reduceat(w, starts), np.diff(np.r_[starts, a.size]))
    w = w.astype(np.float32)
    order, rank = rank_within(a, w)  # (a, w descending), b ascending among ties
    keep = order[rank < config.neighbors]
    return pl.DataFrame({"a": a[keep].astype(np.uint32), "b": b[keep].astype(np.uint32), "w": w[keep]})


class Covisitation:
    def __init__(self, config: CovisitConfig):
        self.config = config
        self.name = config.name
        self.max_session_items, self.recency_decay = config.max_session_items, config.recency_decay
        self.table: pl.DataFrame | None = None

    @property
    def table(self) -> pl.DataFrame | None:
        return self._table

    @table.setter
    def table(self, table: pl.DataFrame | None) -> None:
        self._table = table
        self.matrix = None if table is None else neighbour_matrix(table)

    def fit(self, split: TaskSplit, index: ItemIndex) -> None:
        self.table = covisitation(all_events(split, index, self.config.include_unlabelled), self.config)

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame:
        """(query, item, score): each session's items' neighbours, weighted by the item's
        recency weight, summed; ascending by (query, item)."""
        return score_neighbours(query_items, self.matrix)


def neighbour_matrix(table: pl.DataFrame) -> sparse.csr_matrix:
    """The (a -> b, w) table as a square sparse matrix over every code it mentions."""
    size = int(max(table["a"].max(), table["b"].max())) + 1 if table.height else 0
    return csr(table["a"].to_numpy(), table["b"].to_numpy(), table["w"].to_numpy().astype(np.float64), (size, size))


def score_neighbours(query_items: pl.DataFrame, neighbours: sparse.csr_matrix) -> pl.DataFrame:
    """(query, item, score) = sum over the query's items i of weight(i) * w(i -> item): the
    sessions as a sparse matrix times the neighbour matrix; ascending by (query, item)."""
    known = query_items.filter(pl.col("item") < neighbours.shape[0])
    if known.height == 0:
        return pl.DataFrame(schema={"query": pl.UInt32, "item": pl.UInt32, "score": pl.Float32})
    queries = known["query"].to_numpy()
    first = int(queries.min())
    shape = (int(queries.max()) - first + 1, neighbours.shape[0])
    sessions = csr(queries - first, known["item"].to_numpy(), known["weight"].to_numpy(), shape)
    rows, items, scores = entries(sessions @ neighbours)
    return pl.DataFrame({"query": (rows + first).astype(np.uint32), "item": items, "score": scores.astype(np.float32)})
