"""Session-KNN: score items of the past sessions that share the most (recent) items with the
session, similarity normalized by both sessions' lengths."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from llmrec.baselines.common import SplitEvents
from llmrec.baselines.sparse import csr, distinct, entries, group_starts, pair_key, positions, split_key
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit


@dataclass
class SknnConfig:
    neighbors: int = 100  # past sessions kept per session
    postings: int = 500  # past sessions kept per item (most recent file rows), bounds the work
    recency_decay: float = 0.7
    max_session_items: int = 10
    seed: int = 0


class SessionKnn:
    name = "sknn"
    FITTED = ("lengths", "postings", "memory")  # the frames `fit` computes, all that `score` reads

    def __init__(self, config: SknnConfig):
        self.config = config
        self.max_session_items, self.recency_decay = config.max_session_items, config.recency_decay
        self._building = threading.Lock()

    def fit(self, split: TaskSplit, index: ItemIndex, split_events: SplitEvents | None = None) -> None:
        """`split_events`: the split's events when already encoded."""
        split_events = split_events or SplitEvents.of(split, index)
        events = split_events.labelled
        keys = distinct(pair_key(events["seq"].to_numpy(), events["item"].to_numpy()))  # by (seq, item)
        seq, item = split_key(keys)
        seq, item = seq.astype(np.uint32), item.astype(np.uint32)
        starts = group_starts(seq)
        self.lengths = pl.DataFrame({"seq": seq[starts], "length": np.diff(np.r_[starts, seq.size]).astype(np.uint32)})
        # Later rows of the train file stand for more recent sessions: keep those per item.
        order = np.argsort(pair_key(item, ~seq), kind="stable")  # by item, then seq descending
        kept = order[positions(item[order]) < self.config.postings]
        self.postings = pl.DataFrame({"seq": seq[kept], "item": item[kept]})
        self.memory = pl.DataFrame({"seq": seq, "item": item})

    def _matrices(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
        """Postings (item x session), memory (session x item) and session lengths, built once
        from the fitted frames (fitted here or read by `llmrec.rank`)."""
        with self._building:  # chunks are scored from several threads
            if getattr(self, "_built", None) is None:
                self._built = self._build()
        return self._built

    def _build(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
        sessions = int(self.memory["seq"].max() or 0) + 1
        items = int(self.memory["item"].max() or 0) + 1
        ones = lambda frame: np.ones(frame.height)  # noqa: E731
        seqs, postings = self.postings["seq"].to_numpy(), self.postings["item"].to_numpy()
        postings = csr(postings, seqs, ones(self.postings), (items, sessions))
        memory = csr(
            self.memory["seq"].to_numpy(), self.memory["item"].to_numpy(), ones(self.memory), (sessions, items)
        )
        lengths = np.zeros(sessions, np.float64)
        lengths[self.lengths["seq"].to_numpy()] = self.lengths["length"].to_numpy()
        return postings, memory, lengths

    def score(self, query_items: pl.DataFrame) -> pl.DataFrame:
        """(query, item, score): the items of each session's `neighbors` most similar past
        sessions (similarity descending, then the most recent), each adding the similarity."""
        postings, memory, lengths = self._matrices()
        query = query_items["query"].to_numpy()
        if query.size == 0:
            return pl.DataFrame(schema={"query": pl.UInt32, "item": pl.UInt32, "score": pl.Float32})
        first = int(query.min())
        rows = query - first
        query_length = np.bincount(rows).astype(np.float64)
        known = query_items["item"].to_numpy() < postings.shape[0]
        shape = (int(rows.max()) + 1, postings.shape[0])
        weights = query_items["weight"].to_numpy()[known]
        sessions = csr(rows[known], query_items["item"].to_numpy()[known], weights, shape)
        row, seq, overlap = entries(sessions @ postings)
        similarity = overlap.astype(np.float32).astype(np.float64) / np.sqrt(lengths[seq] * query_length[row])
        nearest = (
            pl.DataFrame({"row": row, "seq": seq, "similarity": similarity})
            .sort(["row", "similarity", "seq"], descending=[False, True, True])
            .filter(pl.int_range(pl.len()).over("row") < self.config.neighbors)
        )
        neighbours = csr(
            nearest["row"].to_numpy(),
            nearest["seq"].to_numpy(),
            nearest["similarity"].to_numpy(),
            (shape[0], memory.shape[0]),
        )
        row, item, score = entries(neighbours @ memory)
        return pl.DataFrame({"query": (row + first).astype(np.uint32), "item": item, "score": score.astype(np.float32)})
