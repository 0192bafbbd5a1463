"""Benchmark: rank a task-1-sized test set (the synthetic release at the real size: 3.6M train
sessions, about 311k task 1 test sessions) into 100-item lists, LLM generation excluded.

Runs `llmrec recommend --split test` with the default config on ids and session signals (the
text signals need catalog embeddings, hours on two CPU cores at this size). The reranker
learns on validation sessions first; that and the ranking of the test sessions are timed
apart. Prints sessions/s of the ranking, the total, and peak memory. Target: under 15 minutes
for the ranking.

    python eval/bench_recommend.py [--scale full] [--task 1] [key=value overrides]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path


def main() -> None:
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.synth import SynthConfig, generate
    from llmrec.rank import RecommendConfig, ranking_data, recommend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full")
    parser.add_argument("--task", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-recommend/task1.parquet"))
    parser.add_argument(
        "overrides", nargs="*", help="RecommendConfig overrides, e.g. reranker.max_train_sessions=20000"
    )
    args = parser.parse_args()
    data = args.data or Path(f"data/synth-{args.scale}")
    started = time.perf_counter()
    generate(data, SynthConfig(scale=args.scale, seed=0))
    print(f"data {data} ready in {time.perf_counter() - started:.0f} s")
    config = load_config(
        RecommendConfig,
        None,
        [f"data={data}", f"task={args.task}", "split.name=test", "text.enabled=false", *args.overrides],
    )
    data_splits = ranking_data(AmazonM2(data), config)
    lists, report = recommend(config, data_splits, args.out, log=lambda line: print(line, flush=True))
    report = report.to_dict()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ranking = report["seconds_ranking"]
    print(f"\ntask {args.task} test sessions ranked: {lists.height:,}")
    print(
        "reranker training (validation split: sources, features, LightGBM): "
        f"{report['seconds_training']:.0f} s, {report['reranker']['train_sessions']:,} sessions, "
        f"{report['reranker']['trees']} trees"
    )
    print(
        f"ranking (sources on all of train, candidates, features, scoring, top 100): {ranking:.0f} s "
        f"= {lists.height / ranking:,.0f} sessions/s (target: under 900 s)"
    )
    print(f"total {report['seconds']:.0f} s, peak RSS {peak:,.0f} MiB")
    if "candidate_recall" in report:
        print(
            "candidate recall of the test sessions: "
            + ", ".join(f"{k} {v}" for k, v in report["candidate_recall"].items())
        )


if __name__ == "__main__":
    main()
