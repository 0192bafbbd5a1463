"""A folder of Amazon-M2 files, found by their released names, read once and kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.read import read_ground_truth, read_products, read_sessions
from llmrec.data.schema import PRODUCTS_FILE, TRAIN_FILE, VALID_FILE, ground_truth_file, released_test_file, test_file


@dataclass
class AmazonM2:
    """The released files in `root`. Parquet twins are preferred when present (same content, faster)."""

    root: Path
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DataFormatError(self.root, "data folder not found")

    def find(self, stem: str) -> Path | None:
        for suffix in (".parquet", ".csv"):
            path = self.root / f"{stem}{suffix}"
            if path.exists():
                return path
        return None

    def require(self, *stems: str) -> Path:
        for stem in stems:
            path = self.find(stem)
            if path is not None:
                return path
        raise DataFormatError(self.root / f"{stems[0]}.csv", "file not found")

    def _cached(self, key: str, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def products(self) -> pl.DataFrame:
        return self._cached("products", lambda: read_products(self.require(PRODUCTS_FILE)))

    def train_sessions(self) -> pl.DataFrame:
        return self._cached("train", lambda: read_sessions(self.require(TRAIN_FILE), with_next_item=True))

    def has_valid(self) -> bool:
        """Whether the folder holds explicit validation sessions (an imported leave-one-out folder)."""
        return self.find(VALID_FILE) is not None

    def valid_sessions(self) -> pl.DataFrame:
        return self._cached("valid", lambda: read_sessions(self.require(VALID_FILE), with_next_item=True))

    def test_path(self, task: int, phase: int = 1) -> Path:
        return self.require(test_file(task, phase), released_test_file(task, phase))

    def test_sessions(self, task: int, phase: int = 1) -> pl.DataFrame:
        return self._cached(
            f"test{task}.{phase}", lambda: read_sessions(self.test_path(task, phase), with_next_item=False)
        )

    def has_test(self, task: int, phase: int = 1) -> bool:
        return any(self.find(s) for s in (test_file(task, phase), released_test_file(task, phase)))

    def has_ground_truth(self, task: int, phase: int = 1) -> bool:
        return self.find(ground_truth_file(task, phase)) is not None

    def validate(self) -> None:
        """Read and check every file present (products and train sessions are required)."""
        self.products()
        self.train_sessions()
        if self.has_valid():
            self.valid_sessions()
        for task in (1, 2, 3):
            for phase in (1, 2):
                if self.has_test(task, phase):
                    sessions = self.test_sessions(task, phase)
                    if self.has_ground_truth(task, phase) and self.ground_truth(task, phase).height != sessions.height:
                        raise DataFormatError(
                            self.require(ground_truth_file(task, phase)),
                            f"{self.ground_truth(task, phase).height} labels for {sessions.height} test sessions",
                        )

    def ground_truth(self, task: int, phase: int = 1) -> pl.DataFrame:
        return self._cached(
            f"gt{task}.{phase}", lambda: read_ground_truth(self.require(ground_truth_file(task, phase)), task)
        )
