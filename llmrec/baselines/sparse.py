"""Sorted integer keys and sparse matrices: the arithmetic under co-visitation, session-KNN
and candidate generation at full size.

A (row, column) pair is one u64 key (row << 32 | column) or one entry of a sparse matrix;
grouping by sorting such keys, and scoring sessions as sparse matrix products, is several times
faster than hash group-bys over pairs of columns, and gives the same bits in every run (sums run
in one fixed order).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import sparse

SHIFT = np.uint64(32)
LOW = np.uint64(0xFFFFFFFF)


def pair_key(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return (rows.astype(np.uint64) << SHIFT) | columns.astype(np.uint64)


def split_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return keys >> SHIFT, keys & LOW


def group_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values."""
    if sorted_values.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct keys, ascending (by sorting: numpy's hash-based unique is slower here)."""
    keys = np.sort(keys)
    return keys[group_starts(keys)]


def descending_bits(scores: np.ndarray) -> np.ndarray:
    """u64 whose ascending order is the float32 `scores`' descending order (equal floats give
    equal bits)."""
    bits = np.asarray(scores, dtype=np.float32).view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


def rank_within(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order and rank of rows by (group ascending, float32 score descending); rows of equal
    group and score keep their input order. `groups` < 2**32. Returns (order, rank in group of
    each row of the order)."""
    key = (groups.astype(np.uint64) << SHIFT) | descending_bits(scores)
    order = pl.DataFrame({"key": key}).with_row_index("i").sort("key", maintain_order=True)["i"].to_numpy()
    grouped = groups[order]
    starts = group_starts(grouped)
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    return order, rank


def csr(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """A CSR matrix; duplicate (row, column) entries add up."""
    matrix = sparse.csr_matrix((values, (rows.astype(np.int64), columns.astype(np.int64))), shape=shape)
    matrix.sum_duplicates()
    return matrix


def entries(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the stored entries, ascending by (row, column)."""
    matrix.sort_indices()
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.uint32), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.uint32), matrix.data
