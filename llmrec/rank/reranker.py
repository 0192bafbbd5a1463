"""Order the candidates: a LightGBM LambdaRank model over the features (default), or a
weighted reciprocal-rank fusion of the sources that needs no training.

With one relevant item per session, LightGBM's MAP@100 is exactly MRR@100, the task's
metric, so early stopping watches the number that counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from llmrec.errors import ConfigError, UserError
from llmrec.rank.candidates import MISSING_RANK

KEYS = ("query", "item", "label", "fold")


def _default_fusion() -> dict[str, float]:
    return {
        "covisit": 1.0,
        "covisit_next": 0.6,
        "covisit_wide": 0.4,
        "global": 0.3,
        "sknn": 0.6,
        "popularity": 0.1,
        "content": 0.3,
        "grounded": 0.4,
    }


@dataclass
class RerankerConfig:
    kind: Literal["lightgbm", "fusion"] = "lightgbm"
    folds: int = 3  # validation split: each fold is ranked by a model trained on the others
    max_train_sessions: int = 50_000  # sessions the model learns from (sampled when more)
    negatives: int = 60  # candidates kept per training session besides the true one (0: all)
    hard_rank: int = 10  # negatives ranked above this by some source are kept first
    early_stopping_fraction: float = 0.2  # of the training sessions, held out for early stopping
    early_stopping_rounds: int = 40
    num_trees: int = 600
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_child_samples: int = 50
    feature_fraction: float = 0.8
    transfer_from: list[int] = field(
        default_factory=lambda: [1]
    )  # also learn from these tasks' validation sessions: [1] teaches task 2 with UK/DE/JP (ignored for task 1 itself)
    threads: int = 0  # 0: all cores when training; when ranking, the cores shared out among recommend.workers
    deterministic: bool = False  # LightGBM's bit-reproducible training (same lists every run; slower, see README)
    seed: int = 0
    fusion_weights: dict = field(default_factory=_default_fusion)  # source -> weight (fusion)
    fusion_k: float = 10.0  # reciprocal rank 1 / (k + rank)


def fold_of(session_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each session's cross-fitting fold: a seeded splitmix64 hash of its id, so the assignment
    depends on nothing but (id, seed), in any library version and any process."""
    with np.errstate(over="ignore"):
        z = np.asarray(session_ids, dtype=np.uint64) + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int8)


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in KEYS]


def training_rows(frame: pl.DataFrame, config: RerankerConfig) -> pl.DataFrame:
    """Sessions whose true item is among the candidates, with `negatives` others each: every
    candidate some source ranks in its top `hard_rank` (the ones the model must beat), then
    a seeded random sample of the rest."""
    positive = frame.filter(pl.col("label") == 1).select("query").unique()
    frame = frame.join(positive, on="query", how="semi")
    if config.negatives:
        best_rank = pl.min_horizontal([pl.col(c) for c in frame.columns if c.startswith("r_")])
        priority = (
            pl.when(best_rank < config.hard_rank)
            .then(best_rank)
            .otherwise(config.hard_rank + pl.int_range(pl.len()).shuffle(seed=config.seed).over("query"))
        )
        frame = frame.filter((pl.col("label") == 1) | (priority.rank("ordinal").over("query") <= config.negatives))
    return frame.sort("query", "item")


class LightGBMRanker:
    def __init__(self, config: RerankerConfig):
        self.config = config
        self.booster = None
        self.features: list[str] = []
        self.report: dict = {}

    def fit(self, frame: pl.DataFrame) -> LightGBMRanker:
        """`frame`: training rows (query, item, label, features...), sorted by query."""
        import lightgbm

        config = self.config
        if frame.height == 0 or frame["label"].sum() == 0:
            raise UserError("the reranker has no training session whose true item is among its candidates")
        queries = frame["query"].unique().sort()
        if queries.len() > config.max_train_sessions:
            queries = queries.sample(config.max_train_sessions, seed=config.seed).sort()
            frame = frame.join(queries.to_frame(), on="query", how="semi")
        held = queries.sample(fraction=config.early_stopping_fraction, seed=config.seed + 1)
        is_held = frame["query"].is_in(held.implode())
        self.features = feature_columns(frame)
        train, stop = frame.filter(~is_held), frame.filter(is_held)
        params = {
            "objective": "lambdarank",
            "metric": "map",
            "eval_at": [100],
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
            "feature_fraction": config.feature_fraction,
            "bagging_seed": config.seed,
            "seed": config.seed,
            "num_threads": config.threads,
            "verbose": -1,
            "lambdarank_truncation_level": 100,
        }
        if config.deterministic:  # LightGBM's own switch, with a fixed histogram layout as its docs ask
            params |= {"deterministic": True, "force_row_wise": True}
        data = self._dataset(train)
        valid = self._dataset(stop, reference=data)
        self.booster = lightgbm.train(
            params,
            data,
            num_boost_round=config.num_trees,
            valid_sets=[valid],
            valid_names=["held_out"],
            callbacks=[lightgbm.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        importance = self.booster.feature_importance("gain")
        self.report = {
            "train_sessions": int(train["query"].n_unique()),
            "early_stopping_sessions": int(stop["query"].n_unique()),
            "trees": int(self.booster.best_iteration),
            "held_out_mrr@100": round(float(self.booster.best_score["held_out"]["map@100"]), 4),
            "importance": {
                f: round(float(g), 1) for f, g in sorted(zip(self.features, importance), key=lambda p: -p[1])
            },
        }
        return self

    def _dataset(self, frame: pl.DataFrame, reference=None):
        import lightgbm

        groups = frame.group_by("query", maintain_order=True).len()["len"].to_numpy()
        return lightgbm.Dataset(
            self._matrix(frame),
            label=frame["label"].to_numpy(),
            group=groups,
            reference=reference,
            feature_name=self.features,
            free_raw_data=True,
        )

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return frame.select([pl.col(f).cast(pl.Float32) for f in self.features]).to_numpy()

    def score(self, frame: pl.DataFrame, threads: int | None = None) -> np.ndarray:
        """Scores of the frame's rows, on `threads` threads (default: the config's)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ConfigError(
                f"the candidates lack feature '{missing[0]}' the reranker was trained with (were other sources used?)"
            )
        threads = self.config.threads if threads is None else threads
        return self.booster.predict(self._matrix(frame), num_threads=threads)

    def save(self, path: Path) -> None:
        from llmrec import io

        with io.atomic_path(path) as temporary:
            self.booster.save_model(str(temporary))

    @classmethod
    def load(cls, path: Path, config: RerankerConfig) -> LightGBMRanker:
        """The reranker `save` wrote, scoring as it did."""
        import lightgbm

        ranker = cls(config)
        ranker.booster = lightgbm.Booster(model_file=str(path))
        ranker.features = ranker.booster.feature_name()
        return ranker


def fusion_scores(frame: pl.DataFrame, config: RerankerConfig) -> np.ndarray:
    """Sum over sources of weight / (k + rank); a source that did not propose the item adds 0."""
    unknown = [s for s in config.fusion_weights if f"r_{s}" not in frame.columns]
    terms = [
        pl.when(pl.col(f"r_{source}") < MISSING_RANK)
        .then(weight / (config.fusion_k + pl.col(f"r_{source}")))
        .otherwise(0.0)
        for source, weight in config.fusion_weights.items()
        if source not in unknown
    ]
    if not terms:
        raise ConfigError(
            "reranker.fusion_weights name none of the candidate sources "
            f"({', '.join(c[2:] for c in frame.columns if c.startswith('r_'))})"
        )
    return frame.select(pl.sum_horizontal(terms)).to_series().to_numpy()
