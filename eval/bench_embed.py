"""Benchmark: catalog embedding backends and faiss indexes at the release's size, in one run.

1. Backends. A seeded sample of the catalog's product texts (the default text fields, as
   `recommend` embeds them) is encoded by each backend: torch fp32 (the default), onnx fp32
   and onnx int8 (`encoder.backend`, `encoder.int8`). Printed: titles/s, the projected time for
   the whole catalog, and grounding: queries (sampled products' titles with the last third of
   their words dropped, standing in for generated titles) searched exactly among the sample's
   vectors by each backend; how often the query's own product is the nearest (hit@1) or among
   the 10 nearest (hit@10), the share of torch fp32's 10 nearest each backend finds, and the
   cosine between a text's fp32 and backend vectors.
2. Indexes. The largest locale's whole catalog (llmrec indexes each locale on its own, so this
   is the largest index of a full-size run) is embedded with `--index-backend` (cached like any
   catalog embedding), and each index kind is built over it: build seconds, bytes, queries/s
   and recall@10 / @100 against exact (Flat) search.

    python eval/bench_embed.py --data data/synth-full [--sample 20000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
import polars as pl
from bench_faiss import recall, truncated  # eval/ is on the path when run as a script

from llmrec.data.dataset import AmazonM2
from llmrec.retrieve.embed import DEFAULT_TEXT_FIELDS, Encoder, EncoderConfig, embed_catalog, product_texts
from llmrec.retrieve.index import IndexConfig, VectorIndex

BACKENDS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "int8": True},
}
INDEXES = {
    "HNSW32 ef128": IndexConfig(kind="HNSW"),
    "HNSW32 ef256": IndexConfig(kind="HNSW", ef_search=256),
    "IVF nprobe32": IndexConfig(kind="IVF"),
    "IVF-PQ48 nprobe32": IndexConfig(kind="IVFPQ"),
    "IVF-PQ48 nprobe128": IndexConfig(kind="IVFPQ", nprobe=128),
}


def top(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, k)[1]


def bench_backends(products: pl.DataFrame, args) -> None:
    rows = products.with_columns(product_texts(products, DEFAULT_TEXT_FIELDS)).filter(
        pl.col("text").str.len_chars() > 0
    )
    rows = rows.unique("text", keep="first", maintain_order=True).sample(min(args.sample, rows.height), seed=args.seed)
    sources = np.arange(min(args.queries, rows.height))  # the queries are the first sampled products' titles, cut
    queries = truncated(rows["title"].fill_null(rows["text"])[: len(sources)])
    print(f"{rows.height:,} distinct product texts, {len(queries):,} queries, {args.threads} threads")
    results = {}
    for name, settings in BACKENDS.items():
        started = time.perf_counter()
        encoder = Encoder(EncoderConfig(threads=args.threads, **settings))
        loaded = time.perf_counter() - started
        encoder.encode(rows["text"][:256].to_list(), "document")  # warm-up: first-call allocations, graph setup
        started = time.perf_counter()
        vectors = encoder.encode(rows["text"].to_list(), "document", f"{name}: {rows.height:,} texts")
        seconds = time.perf_counter() - started
        results[name] = (vectors, encoder.encode(queries, "query"), rows.height / seconds, loaded)
    reference_vectors, reference_queries = results["torch"][:2]
    truth = top(reference_queries, reference_vectors, 10)
    print(
        f"\n{'backend':<10} {'titles/s':>9} {'x torch':>8} {'catalog h':>10} {'load s':>7} {'hit@1':>6} "
        f"{'hit@10':>7} {'same top 10':>12} {'cos min':>8} {'cos mean':>9}"
    )
    for name, (vectors, query_vectors, speed, loaded) in results.items():
        found = top(query_vectors, vectors, 10)
        cosines = (vectors * reference_vectors).sum(axis=1)
        print(
            f"{name:<10} {speed:>9.1f} {speed / results['torch'][2]:>7.2f}x {products.height / speed / 3600:>10.1f} "
            f"{loaded:>7.1f} {np.mean(found[:, 0] == sources):>6.3f} {(found == sources[:, None]).any(1).mean():>7.3f} "
            f"{recall(found, truth, 10):>12.3f} {cosines.min():>8.4f} {cosines.mean():>9.4f}"
        )
    print(
        "hit@k: the query's own product among the k nearest; same top 10: share of torch fp32's 10 nearest found; "
        "catalog h: hours to embed every product"
    )


def bench_indexes(products: pl.DataFrame, args) -> None:
    locale = products["locale"].cast(pl.String).value_counts(sort=True)["locale"][0]
    rows = products.filter(pl.col("locale").cast(pl.String) == locale)
    encoder = Encoder(EncoderConfig(threads=args.threads, **BACKENDS[args.index_backend]))
    vectors = embed_catalog(rows, encoder, list(DEFAULT_TEXT_FIELDS))[locale].vectors
    queries = encoder.encode(
        truncated(rows["title"].drop_nulls().sample(min(args.queries, rows.height), seed=args.seed)), "query"
    )
    print(
        f"\n{locale}: {len(vectors):,} vectors ({args.index_backend}), {len(queries):,} queries, {args.threads} threads"
    )
    exact = VectorIndex.build(vectors, IndexConfig(kind="Flat", threads=args.threads))
    started = time.perf_counter()
    truth = exact.search(queries, 100)[1]
    flat_speed = len(queries) / (time.perf_counter() - started)
    print(
        f"{'index':<20} {'build s':>8} {'MiB':>7} {'queries/s':>10} {'x Flat':>7} {'recall@10':>10} {'recall@100':>11}"
    )
    print(
        f"{'Flat (exact)':<20} {0:>8.1f} {vectors.nbytes / 2**20:>7.0f} {flat_speed:>10.1f} {1:>6.1f}x "
        f"{1:>10.3f} {1:>11.3f}"
    )
    built = {}
    for name, config in INDEXES.items():
        config.threads = args.threads
        settings = tuple(sorted(config.build_settings().items()))
        started = time.perf_counter()
        if settings not in built:
            built[settings] = VectorIndex.build(vectors, config, log=print, name=locale)
        build = time.perf_counter() - started
        index = VectorIndex(built[settings].index, built[settings].kind, config)
        started = time.perf_counter()
        found = index.search(queries, 100)[1]
        speed = len(queries) / (time.perf_counter() - started)
        size = faiss.serialize_index(index.index).nbytes / 2**20
        print(
            f"{name:<20} {build:>8.1f} {size:>7.0f} {speed:>10.1f} {speed / flat_speed:>6.1f}x "
            f"{recall(found, truth, 10):>10.3f} {recall(found, truth, 100):>11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-backend", choices=list(BACKENDS), default="onnx-int8")
    parser.add_argument("--skip", choices=["backends", "indexes"], help="leave one part out")
    args = parser.parse_args()
    products = AmazonM2(args.data).products()
    print(f"{args.data}: {products.height:,} products")
    if args.skip != "backends":
        bench_backends(products, args)
    if args.skip != "indexes":
        bench_indexes(products, args)


if __name__ == "__main__":
    main()
