"""Benchmark: rank a task-1-sized test set (the synthetic release at the real size: 3.6M train
sessions, about 311k task 1 test sessions) into 100-item lists, LLM generation excluded.

Runs `recommend --split test` with the default config on ids and session signals (the text
signals need catalog embeddings, hours on two CPU cores at this size) in a fresh process, so
that its peak memory is its own. The reranker learns on validation sessions first; that and the
ranking of the test sessions (fitting the sources on all of train, candidates, features,
scoring, top 100) are timed apart. Prints sessions/s of the ranking, peak memory and MRR@100
against the released ground truth. Targets: at least 1,000 sessions/s, at most 12 GiB.

`--against REV` first runs the same benchmark on the code of git revision REV (checked out in
a temporary worktree), then on this tree, and prints the ratios: both measured in one run on
one machine.

    python eval/bench_recommend.py [--scale full] [--task 1] [--against REV] [key=value overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rank_once(data: str, task: int, out: str, overrides: list[str]) -> None:
    """Child process: rank the test split with whichever `llmrec` is importable; print JSON."""
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.metrics.ranking import ranking_metrics
    from llmrec.rank import RecommendConfig, ranking_data, recommend

    config = load_config(
        RecommendConfig,
        None,
        [f"data={data}", f"task={task}", "split.name=test", "text.enabled=false", *overrides],
    )
    splits = ranking_data(AmazonM2(data), config)
    lists, report = recommend(config, splits, out, log=lambda line: print(line, file=sys.stderr, flush=True))
    report = report.to_dict()
    result = {
        "sessions": lists.height,
        "seconds_training": report["seconds_training"],
        "seconds_ranking": report["seconds_ranking"],
        "seconds": report["seconds"],
        "peak_mib": peak_rss_mib(),
        "trees": report["reranker"]["trees"],
    }
    if splits.target.targets is not None:
        metrics = ranking_metrics(lists["next_item_prediction"], splits.target.targets, lists["locale"])
        result["mrr@100"] = metrics["overall"]["mrr@100"]
    print(json.dumps(result))


def measured(code: Path, args: argparse.Namespace, out: Path) -> dict:
    """The benchmark's result with the `llmrec` package of the tree `code`."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--data", str(args.data)]
    command += ["--task", str(args.task), "--out", str(out), *args.overrides]
    environment = os.environ | {"PYTHONPATH": str(code)}
    result = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def describe(name: str, result: dict) -> str:
    rate = result["sessions"] / result["seconds_ranking"]
    mrr = f", MRR@100 {result['mrr@100']:.4f}" if "mrr@100" in result else ""
    return (
        f"{name}: reranker training {result['seconds_training']:.0f} s ({result['trees']} trees), ranking "
        f"{result['sessions']:,} sessions {result['seconds_ranking']:.0f} s = {rate:,.0f} sessions/s, "
        f"peak RSS {result['peak_mib'] / 1024:.1f} GiB{mrr}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full")
    parser.add_argument("--task", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-recommend/task1.parquet"))
    parser.add_argument("--against", help="git revision to measure first, in a temporary worktree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="RecommendConfig overrides, e.g. chunk_size=20000")
    args = parser.parse_args()
    args.data = args.data or Path(f"data/synth-{args.scale}")
    if args.child:
        rank_once(str(args.data), args.task, str(args.out), args.overrides)
        return
    from llmrec.data.synth import SynthConfig, generate

    started = time.perf_counter()
    generate(args.data, SynthConfig(scale=args.scale, seed=0))
    print(f"data {args.data} ready in {time.perf_counter() - started:.0f} s", flush=True)
    results = {}
    if args.against:
        folder = Path(tempfile.mkdtemp(prefix="bench-against-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), args.against], check=True)
        try:
            results[args.against] = measured(folder, args, args.out.with_name(f"against-{args.out.name}"))
            print(describe(args.against, results[args.against]), flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=True)
            shutil.rmtree(folder, ignore_errors=True)
    results["this tree"] = measured(ROOT, args, args.out)
    print(describe("this tree", results["this tree"]))
    if args.against:
        before, after = results[args.against], results["this tree"]
        speed = (after["sessions"] / after["seconds_ranking"]) / (before["sessions"] / before["seconds_ranking"])
        print(
            f"ratio to {args.against}: ranking {speed:.2f}x as fast, peak RSS "
            f"{after['peak_mib'] / before['peak_mib']:.2f}x"
            + (f", MRR@100 {after['mrr@100'] - before['mrr@100']:+.4f}" if "mrr@100" in after else "")
        )


if __name__ == "__main__":
    main()
