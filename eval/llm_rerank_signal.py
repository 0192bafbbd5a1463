"""How much the LLM's log-likelihood knows about the next item, before any reranker: the top K
products of a ranked list re-sorted by the LLM's scores of their titles (`llmrec generate --lists
LISTS generate.decoding=score`), against the list's own order and their reciprocal-rank fusion,
on the sessions the titles were scored for (NDCG@10, HR@10, HR@1), and where the list holds the
next item, the rank the LLM gives it among the K.

    python eval/llm_rerank_signal.py --data runs/real-lcrec/data --split valid \\
        --lists runs/real-lcrec/reranker-selection/choice-2.parquet --scored scored-valid.parquet --top 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.metrics.ranking import ranking_metrics, target_ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--lists", type=Path, required=True, help="the ranked lists the titles were scored from")
    parser.add_argument("--scored", type=Path, required=True, help="`generate --lists ... generate.decoding=score`")
    parser.add_argument("--top", type=int, default=20, help="the products scored per list (generate.num_candidates)")
    args = parser.parse_args()
    scored = pl.read_parquet(args.scored)
    split = load_task_split(AmazonM2(args.data), 1, SplitConfig(name=args.split, limit=scored.height))
    if scored["session_id"].cast(pl.Int64).to_list() != split.sessions["session_id"].cast(pl.Int64).to_list():
        raise SystemExit(f"{args.scored}: not the first {scored.height} sessions of the {args.split} split")
    lists = pl.read_parquet(args.lists).head(scored.height)["next_item_prediction"].to_list()
    titles = dict(zip(split.catalog["id"], split.catalog["title"].str.strip_chars()))
    orders: dict[str, list[list[str]]] = {"list": [], "LLM alone": [], "reciprocal-rank fusion": []}
    k = args.top
    for items, candidates in zip(lists, scored["candidates"].to_list()):
        score = {c["title"]: c["score"] for c in candidates}
        top = [i for i in items[:k] if titles.get(i) in score]  # the scored products (those with a title)
        llm = sorted(top, key=lambda i: -score[titles[i]])
        first, second = {i: r for r, i in enumerate(top)}, {i: r for r, i in enumerate(llm)}
        fused = sorted(top, key=lambda i: -(1 / (60 + first[i]) + 1 / (60 + second[i])))
        for order, ranked in zip(orders.values(), (top, llm, fused)):
            order.append(ranked)
    print(f"{scored.height} {args.split} sessions, the top {k} products of {args.lists.name} re-sorted")
    targets, locales = split.targets, split.sessions["locale"]
    series = {name: pl.Series(order, dtype=pl.List(pl.String)) for name, order in orders.items()}
    for name, ranked in series.items():
        at10 = ranking_metrics(ranked, targets, locales, k=10)["overall"]
        hr1 = ranking_metrics(ranked, targets, locales, k=1)["overall"]["recall@1"]
        print(f"{name}: NDCG@10 {at10['ndcg@10']:.4f}, HR@10 {at10['hr@10']:.4f}, HR@1 {hr1:.4f}")
    ranks = target_ranks(series["LLM alone"], targets, k)
    ranks = ranks[ranks > 0]  # the sessions whose next item is among the scored products
    print(
        f"next item among them for {ranks.size} sessions; the LLM ranks it first for {np.mean(ranks == 1):.3f} "
        f"({1 / k:.3f} by chance), mean rank {ranks.mean():.2f} ({(k + 1) / 2:.1f} by chance)"
    )


if __name__ == "__main__":
    main()
