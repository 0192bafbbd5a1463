"""One faiss index per locale over unit vectors: inner product is then cosine similarity.

`Flat` is exact and needs no build, but costs O(n) per query (about 40 queries/s over 1.4M
vectors here, FACTS 5); `IVF` probes `nprobe` of `nlist` k-means cells; `IVFPQ` does the same
over vectors compressed to `pq_m` bytes (product quantization: 48 bytes instead of 1,536 for
e5-small, for catalogs whose vectors do not fit memory); `HNSW` walks a graph.
Trained indexes are cached next to the embeddings they index, so a rerun skips the build.
Search-time settings (nprobe, efSearch) are passed per search, so a cached index serves any.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import faiss
import numpy as np

from llmrec import io
from llmrec.errors import ConfigError, UserError

MIN_POINTS_PER_LIST = 39  # faiss's k-means asks for at least this many training points per cell


@dataclass
class IndexConfig:
    # HNSW by default: on real e5 title embeddings it kept recall@10 at 0.999 (efSearch 100) where IVF needed a
    # quarter of its cells probed for 0.984; on 200k catalog-like vectors HNSW32 ef128 gave 1,844 queries/s
    # (10x Flat) at recall@10 1.000, IVF nprobe=32 2,462 at 0.994 (eval/bench_faiss.py, 1 thread)
    kind: Literal["Flat", "IVF", "IVFPQ", "HNSW"] = "HNSW"
    nlist: int = 0  # IVF cells; 0: about 4 * sqrt(n) per locale
    nprobe: int = 32  # IVF cells searched per query
    pq_m: int = 48  # IVFPQ: bytes per vector (sub-quantizers of 8 bits); must divide the dimension
    hnsw_m: int = 32  # HNSW links per node
    ef_construction: int = 80
    ef_search: int = 128  # HNSW candidate list per query (at least k is used)
    threads: int = 0  # faiss OpenMP threads; 0: faiss's default (all cores)

    def __post_init__(self) -> None:
        for name in ("nprobe", "pq_m", "hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index.{name} must be at least 1")
        if self.nlist < 0 or self.threads < 0:
            raise ConfigError("index.nlist and index.threads must not be negative")

    def build_settings(self) -> dict:
        """The settings that shape a built index (search-time ones excluded)."""
        kept = {
            "IVF": ("kind", "nlist"),
            "IVFPQ": ("kind", "nlist", "pq_m"),
            "HNSW": ("kind", "hnsw_m", "ef_construction"),
            "Flat": ("kind",),
        }[self.kind]
        return {k: v for k, v in asdict(self).items() if k in kept}


def ivf_lists(n: int, config: IndexConfig) -> int:
    return config.nlist or max(1, round(4 * math.sqrt(n)))


class VectorIndex:
    """A faiss index over one locale's vectors; positions are rows of those vectors."""

    def __init__(self, index: faiss.Index, kind: str, config: IndexConfig):
        self.index, self.kind, self.config = index, kind, config

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        config: IndexConfig,
        cache: Path | None = None,
        log: Callable[[str], None] = print,
        name: str = "",
    ) -> VectorIndex:
        """Index `vectors` ((n, d) float32 unit rows). IVF falls back to Flat when there are
        too few vectors to train its cells. A trained index is read from `cache` when that file
        exists, else built and written there atomically."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dimension = vectors.shape
        kind = config.kind
        if kind == "IVFPQ" and dimension % config.pq_m:
            raise ConfigError(f"index.pq_m={config.pq_m} does not divide the vectors' dimension {dimension}")
        if kind in ("IVF", "IVFPQ") and n < MIN_POINTS_PER_LIST * ivf_lists(n, config):
            log(
                f"{name}: {n:,} vectors are too few to train {ivf_lists(n, config)} IVF cells: exact "
                "(Flat) index instead"
            )
            kind = "Flat"
        if kind == "Flat":
            index = faiss.IndexFlatIP(dimension)
            index.add(vectors)
            return cls(index, kind, config)
        if cache is not None and cache.exists():
            index = faiss.read_index(str(cache))
            if index.ntotal != n or index.d != dimension:
                raise UserError(
                    f"{cache}: cached index holds {index.ntotal} x {index.d} vectors, expected {n} x "
                    f"{dimension}: delete the file"
                )
            return cls(index, kind, config)
        with faiss_threads(config.threads):
            if kind in ("IVF", "IVFPQ"):
                codes = f"PQ{config.pq_m}" if kind == "IVFPQ" else "Flat"
                index = faiss.index_factory(dimension, f"IVF{ivf_lists(n, config)},{codes}", faiss.METRIC_INNER_PRODUCT)
                index.train(vectors)
            else:
                index = faiss.IndexHNSWFlat(dimension, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = config.ef_construction
            index.add(vectors)
        if cache is not None:
            with io.atomic_path(cache) as temporary:
                faiss.write_index(index, str(temporary))
        return cls(index, kind, config)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (len(queries), k), best first; position -1 where the
        index found fewer than k (k is capped at the index size)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.size))
        if self.kind in ("IVF", "IVFPQ"):
            params = faiss.SearchParametersIVF(nprobe=self.config.nprobe)
        elif self.kind == "HNSW":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, k))
        else:
            params = None
        with faiss_threads(self.config.threads):
            return self.index.search(queries, k, params=params)


def index_cache_name(embeddings_key: str, config: IndexConfig) -> str:
    """File name of a built index: the embeddings it holds and the settings it was built with."""
    settings = hashlib.blake2b(json.dumps(config.build_settings(), sort_keys=True).encode(), digest_size=8).hexdigest()
    return f"{embeddings_key}-{config.kind.lower()}-{settings}.faiss"


@contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    """faiss's OpenMP thread count set to `threads` (0: unchanged) for the block, then restored."""
    previous = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
