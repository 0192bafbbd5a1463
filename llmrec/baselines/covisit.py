"""Co-visitation: items seen near each other in sessions, counted over every released session
(history with next items, plus the inputs of unlabelled sessions), several weightings summed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import sparse

from llmrec.baselines.common import all_events
from llmrec.baselines.sparse import csr, entries, rank_within
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
    over the events that every co-visitation table of a split is a weighted sum of. Each
    distance's counts are a sparse item x item matrix, so counting and summing tables are
    linear-time sparse conversions rather than hash group-bys over pairs of columns."""

    def __init__(self, counts: dict[int, sparse.csr_matrix]):
        self.counts = counts  # distance -> counts (a x b)

    @classmethod
    def of(cls, events: pl.DataFrame, window: int) -> PairCounts:
        """Counts of `events` (seq, pos, item) for distances 1..`window`."""
        events = events.select("seq", "pos", "item").sort("seq", "pos")
        seq, item = events["seq"].to_numpy(), events["item"].to_numpy()
        size = int(item.max()) + 1 if item.size else 0
        counts = {}
        for distance in range(1, window + 1):
            same = seq[distance:] == seq[:-distance]
            a, b = item[:-distance][same], item[distance:][same]
            differs = a != b
            counts[distance] = csr(a[differs], b[differs], np.ones(differs.sum()), (size, size))
        return cls(counts)

    @property
    def window(self) -> int:
        return max(self.counts, default=0)

    def mapped(self, codes: np.ndarray) -> PairCounts:
        """The counts of the same events with every item replaced by `codes[item]` (several
        items may share a code: their counts add up, and pairs of one code drop out)."""
        size = int(codes.max()) + 1 if codes.size else 0
        mapped = {}
        for distance, counts in self.counts.items():
            a, b, n = entries(counts)
            a, b = codes[a], codes[b]
            differs = a != b
            mapped[distance] = csr(a[differs], b[differs], n[differs], (size, size))
        return PairCounts(mapped)

    def table(self, weightings: list[Weighting]) -> sparse.csr_matrix:
        """The weighted sum of the counts: pairs at distance d count forward|backward * weight / d **
        distance_decay, backward ones transposed. Summed as sparse matrices, in one fixed order."""
        forward, backward = [], []
        for weighting in weightings:
            if weighting.window > self.window:
                raise ValueError(f"pair counts up to distance {self.window}, a weighting needs {weighting.window}")
            for distance in range(1, weighting.window + 1):
                scale = weighting.weight / distance**weighting.distance_decay
                forward += [self.counts[distance] * (weighting.forward * scale)] if weighting.forward else []
                backward += [self.counts[distance] * (weighting.backward * scale)] if weighting.backward else []
        size = self.counts[1].shape[0] if self.counts else 0
        total = sparse.csr_matrix((size, size))
        for part in forward:
            total = total + part
        if backward:
            total = total + sum(backward[1:], backward[0]).T.tocsr()
        return total


def covisitation(events: pl.DataFrame | None, config: CovisitConfig, counts: PairCounts | None = None) -> pl.DataFrame:
    """Top `neighbors` (a -> b, w) per item over all weightings, from `events` (seq, pos, item)
    or their `counts` when already taken (covering every weighting's window). The weights are
    summed in float64 from integer counts, in one fixed order, and stored as float32, so a
    run's table, and the order of tied pairs (b ascending), never changes."""
    window = max((w.window for w in config.weightings), default=0)
    counts = counts if counts is not None else PairCounts.of(events, window)
    table = counts.table(config.weightings)
    table.eliminate_zeros()
    if config.normalize:
        totals = np.asarray(table.sum(axis=1)).ravel()
        table.data /= np.repeat(totals, np.diff(table.indptr))
    a, b, w = entries(table)  # ascending by (a, b)
    w = w.astype(np.float32)
    order, rank = rank_within(a, w)  # (a, w descending), b ascending among ties
    keep = order[rank < config.neighbors]
    return pl.DataFrame({"a": a[keep], "b": b[keep], "w": w[keep]})


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
    a, b, w = table["a"].to_numpy(), table["b"].to_numpy(), table["w"].to_numpy().astype(np.float64)
    if a.size and np.all(a[1:] >= a[:-1]):  # rows already grouped (as `covisitation` writes them): no sort
        indptr = np.r_[0, np.cumsum(np.bincount(a, minlength=size))]
        return sparse.csr_matrix((w, b.astype(np.int32), indptr), shape=(size, size))
    return csr(a, b, w, (size, size))


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
