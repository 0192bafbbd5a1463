"""Where `recommend`'s ranking time goes: the fit of the sources on the ranked split, profiled
by function, then a few chunks of sessions timed by step (candidates and features, LightGBM
scoring, top 100), with peak memory. Complements eval/bench_recommend.py, which times the
whole run.

    python eval/profile_recommend.py --data data/synth-full --model runs/bench-recommend/task1.lgb.txt [--chunks 2]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
from pathlib import Path

import polars as pl


def main() -> None:
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.rank import RecommendConfig, ranking_data
    from llmrec.rank.pipeline import _top_k, prepare_split
    from llmrec.rank.reranker import LightGBMRanker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-full"))
    parser.add_argument("--model", type=Path, required=True, help="a reranker saved by recommend (<stem>.lgb.txt)")
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--functions", type=int, default=25, help="rows of the fit's profile")
    args = parser.parse_args()
    config = load_config(
        RecommendConfig, None, [f"data={args.data}", "task=1", "split.name=test", "text.enabled=false"]
    )
    data = ranking_data(AmazonM2(args.data), config)
    profile = cProfile.Profile()
    profile.enable()
    state = prepare_split(data.target, config, None, None, print)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(
        r"llmrec|scipy|polars.*(join|sort|unique)", args.functions
    )
    model = LightGBMRanker.load(args.model, config.reranker)
    for chunk in range(args.chunks):
        queries = state.queries.slice(chunk * config.chunk_size, config.chunk_size)
        started = time.perf_counter()
        frame = state.features(queries)
        features = time.perf_counter() - started
        scores = model.score(frame)
        scoring = time.perf_counter() - started - features
        _top_k(state, frame.select("query", "item").with_columns(pl.Series("score", scores)), chunk, config)
        top = time.perf_counter() - started - features - scoring
        print(
            f"chunk {chunk}: {queries.height:,} sessions, {frame.height:,} candidates; candidates and features "
            f"{features:.2f} s, LightGBM {scoring:.2f} s, top 100 {top:.2f} s"
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.1f} GiB")


if __name__ == "__main__":
    main()
