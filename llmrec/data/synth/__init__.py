"""The built-in synthetic Amazon-M2: same files, same formats, same statistics, any scale.

`generate(out, scale, seed)` writes `products_train.csv`, `sessions_train.csv` and, per task,
`task{N}/sessions_test_task{N}_phase{1,2}.csv` with `task{N}/gt_task{N}_phase{1,2}.csv`,
the labelled layout published after the competition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from llmrec import io
from llmrec.data.schema import (
    LOCALE_DTYPE,
    LOCALES,
    PRODUCT_COLUMNS,
    PRODUCTS_FILE,
    TASK_LOCALES,
    TRAIN_FILE,
    ground_truth_file,
    test_file,
)
from llmrec.data.synth.catalog import build_catalog
from llmrec.data.synth.sessions import HABITS, LocaleMarket, simulate
from llmrec.data.write import write_sessions
from llmrec.errors import ConfigError

# The real release (train sessions, products, mean previous items per session).
REAL_TRAIN_SESSIONS = {"UK": 1_182_181, "DE": 1_111_416, "JP": 979_119, "ES": 89_047, "FR": 117_561, "IT": 126_925}
REAL_PRODUCTS = {"UK": 500_180, "DE": 518_327, "JP": 395_009, "ES": 42_503, "FR": 44_577, "IT": 50_461}
REAL_MEAN_LENGTH = {"UK": 4.1, "DE": 4.4, "JP": 4.5, "ES": 3.7, "FR": 3.6, "IT": 3.7}
# Test sessions per phase, as a share of the locale's train sessions (tasks 1/2 and task 3).
TEST_SHARE = {1: 0.095, 2: 0.095, 3: 0.016}
UNLISTED_SHARE = 0.003
SCALES = {"tiny": 0.001, "small": 0.01, "medium": 0.07, "full": 1.0}
# Below `full` the catalog shrinks more slowly than the sessions (products ~ fraction ** 0.9), as
# a sample of the release's sessions covers more than its share of the products: each product has
# fewer sessions at smaller scales, so transitions get more familiar as the set grows, as on real data.
CATALOG_GROWTH = 0.9
MANIFEST = "synth.yaml"
GENERATOR_VERSION = 2  # bumped whenever the generator's output changes: a folder of another version is written again


@dataclass(frozen=True)
class SynthConfig:
    scale: str = "small"
    seed: int = 0

    @property
    def fraction(self) -> float:
        if self.scale not in SCALES:
            raise ConfigError(f"unknown scale {self.scale!r}; choose one of {', '.join(SCALES)}")
        return SCALES[self.scale]


def generate(out: str | Path, config: SynthConfig, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Write a synthetic dataset into `out`. Re-running with the same config (and generator
    version) on a complete folder does nothing; an interrupted run leaves no partial file
    (writes are atomic)."""
    out = Path(out)
    manifest = out / MANIFEST
    if manifest.exists() and io.read_yaml(manifest) == asdict(config) | {"generator": GENERATOR_VERSION}:
        progress("already complete")
        return out
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    # Every locale keeps enough products for 100-item lists, even at the tiny scale.
    products_per_locale = {
        loc: max(300, round(n * config.fraction**CATALOG_GROWTH)) for loc, n in REAL_PRODUCTS.items()
    }
    progress("catalog")
    catalog = build_catalog(rng, products_per_locale)
    frames = []
    for locale in LOCALES:
        progress(f"sessions {locale}")
        market = LocaleMarket.build(rng, catalog, locale)
        n_train = max(200, round(REAL_TRAIN_SESSIONS[locale] * config.fraction))
        n_test = {task: round(n_train * share) for task, share in TEST_SHARE.items() if locale in TASK_LOCALES[task]}
        n_total = n_train + 2 * sum(n_test.values())
        offsets, items, next_items = simulate(rng, market, n_total, REAL_MEAN_LENGTH[locale], HABITS[locale])
        ids = market.ids
        parts = {"train": n_train} | {f"{task}.{phase}": n for task, n in n_test.items() for phase in (1, 2)}
        split = np.repeat(list(parts), list(parts.values()))
        frames.append(
            pl.DataFrame(
                {
                    "prev_items": _lists(ids[items], offsets),
                    "next_item": ids[next_items],
                    "locale": np.full(n_total, locale),
                    "part": split,
                }
            )
        )
    sessions = pl.concat(frames).with_columns(pl.col("locale").cast(LOCALE_DTYPE))
    # The release interleaves locales; shuffle rows within each file.
    sessions = sessions.sample(fraction=1.0, shuffle=True, seed=config.seed)
    out.mkdir(parents=True, exist_ok=True)
    progress("writing")
    # Like the release, a few session items are missing from the product table.
    listed = catalog.listings.select(PRODUCT_COLUMNS).sample(fraction=1.0, shuffle=True, seed=config.seed)
    products = listed.slice(0, round(listed.height * (1 - UNLISTED_SHARE)))
    io.write_csv(products, out / f"{PRODUCTS_FILE}.csv")
    write_sessions(sessions.filter(pl.col("part") == "train"), out / f"{TRAIN_FILE}.csv")
    titles = catalog.listings.select(
        pl.col("id").alias("next_item"), "locale", pl.col("title").alias("next_item_title")
    )
    for task in (1, 2, 3):
        for phase in (1, 2):
            part = sessions.filter(pl.col("part") == f"{task}.{phase}")
            write_sessions(part.drop("next_item"), out / f"{test_file(task, phase)}.csv")
            truth = part.select("next_item", pl.col("locale").cast(pl.String))
            if task == 3:
                truth = truth.join(titles, on=["next_item", "locale"], how="left", maintain_order="left").select(
                    "next_item_title", "locale"
                )
            io.write_csv(truth, out / f"{ground_truth_file(task, phase)}.csv")
    io.write_yaml(asdict(config) | {"generator": GENERATOR_VERSION}, manifest)
    progress(f"done in {time.perf_counter() - started:.1f}s")
    return out


def _lists(values: np.ndarray, offsets: np.ndarray) -> pl.Series:
    """A list<string> column from flat values and offsets, without a Python loop."""
    return pl.Series(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.string())))
