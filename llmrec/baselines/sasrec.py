"""SASRec as a baseline and a candidate source: fitted on the ordered sessions of a split (the
labelled history with next items, plus the inputs of unlabelled sessions), it scores the
sessions themselves, not their bags of items. Items of another locale are never scored.

The network and its training on integer sequences live in `llmrec.baselines.sasrec_model`,
imported on first use so that the other baselines do not load torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from llmrec import io
from llmrec.baselines.common import all_events
from llmrec.baselines.sasrec_config import SasrecConfig
from llmrec.data.item_index import ItemIndex
from llmrec.data.split import TaskSplit
from llmrec.progress import console

if TYPE_CHECKING:
    from llmrec.baselines.sasrec_model import SasrecNet, Sequences


class Sasrec:
    name = "sasrec"

    def __init__(self, config: SasrecConfig):
        self.config = config
        self.net: SasrecNet | None = None
        self.index: ItemIndex | None = None
        self.locale_names: pl.Series | None = None
        self.item_groups: np.ndarray | None = None  # the locale number of every item code
        self.exclude_history = True  # the split's protocol, read at fit

    def fit(self, split: TaskSplit, index: ItemIndex) -> None:
        from llmrec.baselines.sasrec_model import fit_sasrec

        frame = all_events(split, index, self.config.include_unlabelled).sort("seq", "pos")
        sequences = _sequences(frame["seq"].to_numpy(), frame["item"].to_numpy())
        self._attach(index, split.exclude_history)
        self.net = fit_sasrec(
            sequences, index.items.height, self.config, log=lambda line: console.print(f"[dim]{line}[/dim]")
        )

    def save(self, path: Path) -> None:
        """The fitted weights (safetensors), for `load` in another process."""
        from safetensors.torch import save_file

        with io.atomic_path(path) as temporary:
            save_file(self.net.state_dict(), str(temporary))

    def load(self, path: Path, index: ItemIndex, exclude_history: bool) -> None:
        """The weights `save` wrote, for the same items (`index`) and settings."""
        from safetensors.torch import load_file

        from llmrec.baselines.sasrec_model import SasrecNet

        self._attach(index, exclude_history)
        self.net = SasrecNet(self.config, index.items.height)
        self.net.load_state_dict(load_file(str(path)))
        self.net.eval()

    def _attach(self, index: ItemIndex, exclude_history: bool) -> None:
        self.index, self.exclude_history = index, exclude_history
        locales = index.items["locale"].cast(pl.String)
        self.locale_names = locales.unique().sort()
        self.item_groups = self._groups(locales)

    def score_sessions(self, queries: pl.DataFrame) -> pl.DataFrame:
        """(query, item, score): the `top` best items of the session's locale for each query
        (query, locale, prev_items), best first."""
        from llmrec.baselines.sasrec_model import top_items

        sequences, query_groups, item_groups = self._encode(queries)
        ranking = top_items(
            self.net,
            sequences,
            self.config.top,
            self.exclude_history,
            query_groups,
            item_groups,
            self.config.score_memory_mb,
        )
        found = ranking.items >= 0
        return pl.DataFrame(
            {
                "query": np.broadcast_to(queries["query"].to_numpy()[:, None], found.shape)[found],
                "item": ranking.items[found].astype(np.uint32),
                "score": ranking.scores[found].astype(np.float64),
            },
            schema={"query": pl.UInt32, "item": pl.UInt32, "score": pl.Float64},
        )

    def score_candidates(self, queries: pl.DataFrame, candidates: pl.DataFrame) -> pl.DataFrame:
        """(query, item, score): SASRec's score of candidate pairs (query, item) proposed by any
        source, for the reranker's features; the queries are (query, locale, prev_items)."""
        from llmrec.baselines.sasrec_model import score_pairs

        sequences, _, _ = self._encode(queries)
        rows = queries.select("query").with_row_index("row")
        pairs = candidates.select("query", "item").join(rows, on="query", how="left", maintain_order="left")
        if pairs["row"].null_count():
            raise ValueError("score_candidates: a candidate's query is not among the queries")
        scores = score_pairs(
            self.net, sequences, pairs["row"].to_numpy().astype(np.int64), pairs["item"].to_numpy().astype(np.int64)
        )
        return pairs.select("query", "item").with_columns(pl.Series("score", scores, pl.Float64))

    def _encode(self, queries: pl.DataFrame) -> tuple[Sequences, np.ndarray, np.ndarray]:
        """The queries' item codes in order, and the locale of every query and item as integers."""
        if self.net is None:
            raise RuntimeError("sasrec: fit before scoring")
        frame = queries.select(pl.int_range(pl.len()).alias("seq"), "locale", pl.col("prev_items").alias("id")).explode(
            "id"
        )
        frame = self.index.encode(frame.with_columns(pl.int_range(pl.len()).over("seq").alias("pos")), "id")
        frame = frame.drop_nulls("item").sort("seq", "pos")
        sequences = _sequences(frame["seq"].to_numpy(), frame["item"].to_numpy(), queries.height)
        return sequences, self._groups(queries["locale"].cast(pl.String)), self.item_groups

    def _groups(self, locales: pl.Series) -> np.ndarray:
        """Locale names as integers (-1: a locale without items)."""
        numbers = pl.int_range(self.locale_names.len(), eager=True)
        return locales.replace_strict(self.locale_names, numbers, default=-1).to_numpy().astype(np.int64)


def _sequences(seq: np.ndarray, item: np.ndarray, count: int | None = None) -> Sequences:
    """Sequences from events sorted by (seq, pos); `count` sequences (seq 0..count-1, some
    possibly empty) when given, else one per distinct seq."""
    from llmrec.baselines.sasrec_model import Sequences

    if count is None:
        _, lengths = np.unique(seq, return_counts=True)
    else:
        lengths = np.bincount(seq, minlength=count)
    return Sequences(item.astype(np.int64), lengths.astype(np.int64))
