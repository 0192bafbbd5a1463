"""Sorted integer keys and sparse matrices: the arithmetic under co-visitation, session-KNN
and candidate generation at full size.

A (row, column) pair is one u64 key (row << 32 | column) or one entry of a sparse matrix;
grouping by sorting such keys, and scoring sessions as sparse matrix products, is several times
faster than hash group-bys over pairs of columns, and gives the same bits in every run (sums run
in one fixed order).
"""

from __future__ import annotations

import numpy as np
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


def positions(sorted_values: np.ndarray) -> np.ndarray:
    """Each element's position within its run of equal values (0 for the first)."""
    starts = group_starts(sorted_values)
    return np.arange(sorted_values.size) - np.repeat(starts, np.diff(np.r_[starts, sorted_values.size]))


def lookup(keys: np.ndarray, sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each key stands in `sorted_keys` (distinct, ascending) and whether it is there."""
    if sorted_keys.size == 0:
        return np.zeros(keys.size, np.int64), np.zeros(keys.size, bool)
    at = np.searchsorted(sorted_keys, keys).clip(max=sorted_keys.size - 1)
    return at, sorted_keys[at] == keys


def distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct keys, ascending (by sorting: numpy's hash-based unique is slower here)."""
    keys = np.sort(keys)
    return keys[group_starts(keys)]


def descending_bits(scores: np.ndarray) -> np.ndarray:
    """Unsigned ints (u32 for float32 scores, else u64 of their float64 values) whose ascending
    order is the scores' descending order; equal floats give equal bits, -0.0 sorts after 0.0."""
    unsigned, top = (np.uint32, 31) if scores.dtype == np.float32 else (np.uint64, 63)
    bits = (scores if scores.dtype == np.float32 else np.asarray(scores, dtype=np.float64)).view(unsigned)
    ascending = np.where(bits >> unsigned(top), ~bits, bits | unsigned(1 << top))
    return ~ascending


def rank_within(
    groups: np.ndarray, scores: np.ndarray, ties: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Order of the rows by (group ascending, score descending, `ties` ascending or else input
    order), by stable sorts from the least significant key, and each row's rank in its group
    (in that order)."""
    if scores.dtype == np.float32 and ties is None:  # one sort: (group, 32 score bits) fit in a u64 key
        order = np.argsort((groups.astype(np.uint64) << SHIFT) | descending_bits(scores), kind="stable")
    else:
        order = np.arange(groups.size) if ties is None else np.argsort(ties, kind="stable")
        order = order[np.argsort(descending_bits(scores[order]), kind="stable")]
        order = order[np.argsort(groups[order], kind="stable")]
    return order, positions(groups[order])


def first_of_each(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct key, ascending."""
    order = np.argsort(keys, kind="stable")
    return np.sort(order[group_starts(keys[order])])


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
