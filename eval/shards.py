"""Fan-out check: `llmrec recommend --shard I/N` as N processes started together, merged with
`llmrec merge`, against the same command in one process. The shards share one fit of the
sources and the reranker (`<stem>.fitted/`: the first shard computes it, the others wait);
the merged lists must equal the one-process lists exactly.

    python eval/shards.py --data data/synth-small --shards 2 [--task 1] [--limit N] [key=value ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import polars as pl


def llmrec(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmrec", *args], stdout=subprocess.DEVNULL)


def finished(*processes: subprocess.Popen) -> None:
    codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(f"a command failed (exit codes {codes})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-small"))
    parser.add_argument("--task", default="1")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--limit", default="0", help="only the first N test sessions (0: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval-shards"))
    parser.add_argument("overrides", nargs="*", help="recommend overrides, e.g. text.enabled=false")
    args = parser.parse_args()
    command = ["recommend", "--task", args.task, "--data", str(args.data), "--split", "test", "--limit", args.limit]
    command += ["reranker.deterministic=true", *args.overrides]  # one model whatever the thread timing
    started = time.perf_counter()
    finished(llmrec(*command, "--out", str(args.out / "one.parquet")))
    one_process = time.perf_counter() - started
    started = time.perf_counter()
    shards = [
        llmrec(*command, "--out", str(args.out / "sharded.parquet"), "--shard", f"{index}/{args.shards}")
        for index in range(args.shards)
    ]
    finished(*shards)
    finished(llmrec("merge", "--out", str(args.out / "sharded.parquet")))
    sharded = time.perf_counter() - started
    one = pl.read_parquet(args.out / "one.parquet")
    merged = pl.read_parquet(args.out / "sharded.parquet")
    print(f"one process: {one.height:,} lists in {one_process:.0f} s")
    print(f"{args.shards} shards started together, then merged: {merged.height:,} lists in {sharded:.0f} s")
    print(f"merged shards equal the one-process lists: {merged.equals(one)}")
    if not merged.equals(one):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
