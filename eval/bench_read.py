"""Benchmark: read and parse the synthetic train sessions and products at the real size.

Generates `data/synth-full` first if it is missing (timed apart). Each file is read in a
fresh process so that its peak memory is its own. Target: under 60 s for 3.6M sessions.

    python eval/bench_read.py [--scale full] [--data data/synth-full]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec, whereas ru_maxrss
    carries the parent's peak over into a child on Linux."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_once(kind: str, path: str) -> None:
    """Child process: read one file, print seconds, rows, items and peak RSS as JSON."""
    from llmrec.data.read import read_products, read_sessions

    started = time.perf_counter()
    frame = read_sessions(path) if kind == "sessions" else read_products(path)
    seconds = time.perf_counter() - started
    items = int(frame["prev_items"].list.len().sum()) if kind == "sessions" else None
    peak_mib = peak_rss_mib()
    print(json.dumps({"kind": kind, "seconds": seconds, "rows": frame.height, "items": items, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        read_once(*args.child)
        return
    from llmrec.data.synth import SynthConfig, generate

    data = args.data or Path(f"data/synth-{args.scale}")
    started = time.perf_counter()
    generate(data, SynthConfig(args.scale, args.seed), progress=lambda step: print(f"  synth: {step}", flush=True))
    print(f"dataset {data}: ready in {time.perf_counter() - started:.1f} s")
    for kind, name in (("sessions", "sessions_train.csv"), ("products", "products_train.csv")):
        path = data / name
        child = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        size_mib = path.stat().st_size / 2**20
        line = f"{name}: {result['rows']:,} rows ({size_mib:,.0f} MiB) read and parsed in {result['seconds']:.1f} s"
        line += f", {result['rows'] / result['seconds']:,.0f} rows/s, peak RSS {result['peak_mib']:,.0f} MiB"
        if result["items"]:
            line += f", {result['items']:,} session items"
        print(line)


if __name__ == "__main__":
    main()
