"""Benchmark: Flat vs IVF vs HNSW faiss indexes for grounding, in one run.

Builds the three index kinds of `llmrec.retrieve.index` over N catalog vectors, searches Q
queries for their k nearest, and prints build seconds, queries/s, recall@k (and @10) of IVF
(several nprobe) and HNSW (several efSearch) against the exact Flat results, and the speed-up
over Flat.

Vectors: by default N synthetic unit 384-d vectors with a catalog's structure (product types,
families of variants within a type, items within a family), and queries that are catalog
vectors moved off by noise (cosine about 0.9 to their source, like a generated title to the real
one), so every query has true neighbours. With --data, the e5 embeddings of the largest locale
of a dataset's catalog (cached) and, as queries, its titles with the last third of the words
dropped.

    python eval/bench_faiss.py [--n 200000] [--queries 2000] [--threads 2]
    python eval/bench_faiss.py --data data/synth-small
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from llmrec.retrieve.index import IndexConfig, VectorIndex, ivf_lists


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def synthetic_catalog(n: int, dimension: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three-level clustered unit vectors (types of about 100 items > families of about 8 >
    items) and perturbed copies of random catalog vectors as queries. The spreads give the
    relative similarity profile of e5 title embeddings (a query's 10th and 100th neighbours
    about 0.4 and 0.18 of the way from the median to the source); IVF still finds real e5
    neighbours harder than these (see --data)."""
    rng = np.random.default_rng(seed)
    types = rng.standard_normal((max(1, n // 100), dimension)).astype(np.float32)
    families = types[rng.integers(0, len(types), max(1, n // 8))] + 1.2 * rng.standard_normal(
        (max(1, n // 8), dimension)
    ).astype(np.float32)
    vectors = unit(
        families[rng.integers(0, len(families), n)] + 1.2 * rng.standard_normal((n, dimension)).astype(np.float32)
    )
    sources = vectors[rng.choice(n, queries, replace=False)]
    noise = np.sqrt(1 / 0.9**2 - 1) / np.sqrt(dimension)  # |noise|^2 = 1/0.81 - 1, so cos(query, source) ~ 0.9
    return vectors, unit(sources + noise * rng.standard_normal(sources.shape).astype(np.float32))


def dataset_catalog(data: Path, queries: int, seed: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """e5 embeddings of the largest locale of `data`'s catalog (from the embedding cache when
    there) and truncated titles of that locale as queries."""
    import polars as pl

    from llmrec.data.dataset import AmazonM2
    from llmrec.retrieve.embed import Encoder, EncoderConfig, embed_catalog

    products = AmazonM2(data).products()
    locale = products["locale"].cast(pl.String).value_counts(sort=True)["locale"][0]
    products = products.filter(pl.col("locale").cast(pl.String) == locale)
    encoder = Encoder(EncoderConfig(threads=threads))
    vectors = embed_catalog(products, encoder, ["title"])[locale].vectors
    cut = truncated(products["title"].drop_nulls().sample(min(queries, products.height), seed=seed))
    return vectors, encoder.encode(cut, "query", f"embedding {len(cut)} {locale} queries")


def truncated(titles) -> list[str]:
    """Titles without their last third of words: near, not equal, to a catalog text (like a
    generated title to the real one)."""
    import polars as pl

    keep = pl.max_horizontal(pl.len() * 2 // 3, 1)
    return titles.str.split(" ").list.eval(pl.element().head(keep)).list.join(" ").to_list()


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of the exact top-k that the approximate top-k holds."""
    hits = [len(np.intersect1d(a[:k][a[:k] >= 0], b[:k])) for a, b in zip(found, truth)]
    return float(np.mean(hits)) / k


def timed_search(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    _, positions = index.search(queries, k)
    return positions, len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="catalog vectors (synthetic)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--nlist", type=int, default=0, help="IVF cells; 0: 4 * sqrt(n)")
    parser.add_argument("--nprobe", default="4,8,16,32,64")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", default="100,128,256,512")
    parser.add_argument("--threads", type=int, default=0, help="faiss threads; 0: faiss's default")
    parser.add_argument("--data", type=Path, help="a dataset folder: embed its largest locale with e5 instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    if args.data:
        vectors, queries = dataset_catalog(args.data, args.queries, args.seed, args.threads)
        source = f"e5 embeddings of {args.data} (largest locale)"
    else:
        vectors, queries = synthetic_catalog(args.n, args.dim, args.queries, args.seed)
        source = "synthetic clustered unit vectors"
    n, dimension = vectors.shape
    print(
        f"{source}: {n:,} x {dimension} catalog vectors, {len(queries):,} queries, k={args.k}, "
        f"threads={args.threads or 'default'} (ready in {time.perf_counter() - started:.1f} s)"
    )

    base = IndexConfig(nlist=args.nlist, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, threads=args.threads)
    rows = []

    def build(kind: str) -> tuple[VectorIndex, float]:
        started = time.perf_counter()
        index = VectorIndex.build(vectors, dataclasses.replace(base, kind=kind), log=print, name=kind)
        return index, time.perf_counter() - started

    flat, flat_build = build("Flat")
    truth, flat_qps = timed_search(flat, queries, args.k)
    rows.append(("Flat", "exact", flat_build, flat_qps, 1.0, 1.0))
    ivf, ivf_build = build("IVF")
    for nprobe in map(int, args.nprobe.split(",")):
        probe = VectorIndex(ivf.index, ivf.kind, dataclasses.replace(ivf.config, nprobe=nprobe))
        found, qps = timed_search(probe, queries, args.k)
        rows.append(
            (
                f"IVF{ivf_lists(n, base)},Flat" if ivf.kind == "IVF" else "IVF->Flat",
                f"nprobe={nprobe}",
                ivf_build,
                qps,
                recall(found, truth, args.k),
                recall(found, truth, 10),
            )
        )
    hnsw, hnsw_build = build("HNSW")
    for ef in map(int, args.ef_search.split(",")):
        walk = VectorIndex(hnsw.index, hnsw.kind, dataclasses.replace(hnsw.config, ef_search=ef))
        found, qps = timed_search(walk, queries, args.k)
        rows.append(
            (
                f"HNSW{args.hnsw_m}",
                f"efSearch={max(ef, args.k)}",
                hnsw_build,
                qps,
                recall(found, truth, args.k),
                recall(found, truth, 10),
            )
        )

    print(
        f"\n{'index':<16} {'search':<14} {'build s':>8} {'queries/s':>10} "
        f"{'recall@' + str(args.k):>11} {'recall@10':>10} {'speed-up':>9}"
    )
    for name, setting, seconds, qps, hit, hit10 in rows:
        print(
            f"{name:<16} {setting:<14} {seconds:>8.1f} {qps:>10.0f} {hit:>11.3f} {hit10:>10.3f} {qps / flat_qps:>8.1f}x"
        )


if __name__ == "__main__":
    main()
