"""Measure the built-in synthetic data the way the real ES/FR/IT figures were measured, and
print them side by side: repeat shares and mean previous items of the ES/FR/IT sessions, plain
co-visitation (`llmrec baseline covisit --task 2 --split test`) learnt from about 35k ES/FR/IT
training sessions plus the test sessions' items and scored on about 35k task-2 test sessions,
and the share of test sessions whose (last item, next item) pair occurs consecutively in the
training sessions. The set is `full` (real catalog sizes) with a seeded 35k sample of its ES/FR/IT
training sessions, written as a derived data folder. Then the pair statistic for tasks 1 and 2
at each scale (phase-1 test sessions against all training sessions): it should not fall as the
set grows, as on real data where more sessions only make transitions more familiar.

    python eval/calibrate_synth.py --work runs/calibrate-synth            # about 8 minutes on two cores
    python eval/calibrate_synth.py --work runs/calibrate-synth --scales   # the 35k table only
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import polars as pl

from llmrec import io
from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import PRODUCTS_FILE, TASK_LOCALES, TRAIN_FILE, ground_truth_file, test_file
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.data.stats import familiar_transitions, session_stats
from llmrec.data.synth import MANIFEST, SynthConfig, generate
from llmrec.data.write import write_sessions
from llmrec.metrics.ranking import ranking_metrics

# Real ES/FR/IT figures on about 35k training sessions and the task-2 test sessions.
REAL = {
    "sessions with a repeated item": 0.412,
    "immediate repeat": 0.219,
    "mean previous items": 3.83,
    "co-visitation MRR@100": 0.39,
    "co-visitation Recall@100": 0.74,
    "(last, next) pair seen in training": 0.403,
}
SAMPLE_SESSIONS = 35_000
TOLERANCE = 0.10


def session_shape(sessions: pl.DataFrame) -> dict[str, float]:
    """Repeat shares and mean previous items over all the given sessions, locales pooled."""
    pooled = session_stats(sessions.select("prev_items", pl.lit("all").alias("locale")))
    row = pooled.row(0, named=True)
    return {
        "sessions with a repeated item": row["repeat"],
        "immediate repeat": row["imm_repeat"],
        "mean previous items": row["avg_len"],
    }


def derive_sample(full: Path, out: Path, sessions: int, seed: int) -> Path:
    """A data folder with the ES/FR/IT products of `full`, a seeded sample of its ES/FR/IT training
    sessions and its task-2 phase-1 test sessions with their ground truth (parquet). Kept when
    a previous run derived it from the same synthetic set (its synth.yaml), size and seed."""
    settings = {"source": io.read_yaml(full / MANIFEST), "sessions": sessions, "seed": seed}
    if (out / MANIFEST).exists() and io.read_yaml(out / MANIFEST) == settings:
        return out
    data = AmazonM2(full)
    locales = TASK_LOCALES[2]
    products = data.products().filter(pl.col("locale").is_in(locales))
    train = (
        data.train_sessions().filter(pl.col("locale").is_in(locales)).sample(n=sessions, seed=seed).sort("session_id")
    )
    io.write_parquet(products.with_columns(pl.col("locale").cast(pl.String)), out / f"{PRODUCTS_FILE}.parquet")
    write_sessions(train, out / f"{TRAIN_FILE}.parquet")
    write_sessions(data.test_sessions(2, 1), out / f"{test_file(2, 1)}.parquet")
    truth = data.ground_truth(2, 1).with_columns(pl.col("locale").cast(pl.String))
    io.write_parquet(truth, out / f"{ground_truth_file(2, 1)}.parquet")
    io.write_yaml(settings, out / MANIFEST)
    return out


def measure(folder: Path) -> dict[str, float]:
    """The table's synthetic column for a data folder holding training and task-2 test sessions."""
    data = AmazonM2(folder)
    split = load_task_split(data, 2, SplitConfig(name="test"))
    locales = TASK_LOCALES[2]
    train = data.train_sessions().filter(pl.col("locale").is_in(locales))
    shape = session_shape(pl.concat([train.select("prev_items"), split.sessions.select("prev_items")]))
    predictions = run_baseline("covisit", split, BaselineConfig())
    scores = ranking_metrics(
        predictions["next_item_prediction"], split.targets, split.sessions["locale"].cast(pl.String)
    )
    return shape | {
        "co-visitation MRR@100": scores["overall"]["mrr@100"],
        "co-visitation Recall@100": scores["overall"]["recall@100"],
        "(last, next) pair seen in training": familiar_transitions(train, split.sessions, split.targets),
        "training sessions": train.height,
        "test sessions": split.sessions.height,
    }


def scale_pairs(folder: Path) -> dict[int, float]:
    """Pair statistic per task: phase-1 test sessions against every training session."""
    data = AmazonM2(folder)
    train = data.train_sessions()
    return {
        task: familiar_transitions(train, data.test_sessions(task, 1), data.ground_truth(task, 1)["next_item"])
        for task in (1, 2)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path("runs/calibrate-synth"), help="Generated and derived folders."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=SAMPLE_SESSIONS, help="ES/FR/IT training sessions kept.")
    parser.add_argument(
        "--scales", nargs="*", default=["small", "medium", "full"], help="Scales for the pair statistic."
    )
    parser.add_argument(
        "--small-seeds", type=int, default=10, help="Seeds averaged at small (318 task-2 test sessions each)."
    )
    parser.add_argument("--medium-seeds", type=int, default=3, help="Seeds averaged at medium; full uses --seed only.")
    parser.add_argument("--clean", action="store_true", help="Delete the generated folders at the end.")
    args = parser.parse_args()
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", flush=True)

    def synth(scale: str, seed: int) -> Path:
        folder = args.work / (f"synth-{scale}" if seed == args.seed else f"synth-{scale}-seed{seed}")
        return generate(folder, SynthConfig(scale, seed), progress=lambda m: log(f"{scale} (seed {seed}): {m}"))

    full = synth("full", args.seed)
    sample = derive_sample(full, args.work / f"synth-full-esfrit{args.sample // 1000}k", args.sample, args.seed)
    log(f"measuring {sample}")
    synthetic = measure(sample)
    pairs: dict[str, list[dict[int, float]]] = {}
    for scale in args.scales:
        count = {"small": args.small_seeds, "medium": args.medium_seeds}.get(scale, 1)
        for seed in range(args.seed, args.seed + count):
            folder = synth(scale, seed)
            log(f"pair statistic at {scale} (seed {seed})")
            pairs.setdefault(scale, []).append(scale_pairs(folder))
            if seed != args.seed:
                shutil.rmtree(folder)

    print(
        f"\nES/FR/IT at real catalog sizes: {synthetic['training sessions']:,} training sessions, "
        f"{synthetic['test sessions']:,} task-2 test sessions (seed {args.seed})\n"
    )
    print("| statistic | real | synthetic | relative difference |\n|---|---|---|---|")
    for name, real in REAL.items():
        value = synthetic[name]
        flag = "" if abs(value / real - 1) <= TOLERANCE else " (off by more than 10%)"
        print(f"| {name} | {real:.3g} | {value:.3g} | {value / real - 1:+.1%}{flag} |")
    if pairs:
        print(
            "\n(last, next) pair of phase-1 test sessions seen in all training sessions (mean and range over seeds)\n"
        )
        print("| scale | seeds | task 1 (UK/DE/JP) | task 2 (ES/FR/IT) |\n|---|---|---|---|")
        for scale, runs in pairs.items():
            cells = []
            for task in (1, 2):
                values = [run[task] for run in runs]
                spread = f" ({min(values):.1%}-{max(values):.1%})" if len(values) > 1 else ""
                cells.append(f"{sum(values) / len(values):.1%}{spread}")
            print(f"| {scale} | {len(runs)} | {cells[0]} | {cells[1]} |")
    if args.clean:
        for folder in {full, sample, *(args.work / f"synth-{scale}" for scale in pairs)}:
            shutil.rmtree(folder, ignore_errors=True)
    log("done")


if __name__ == "__main__":
    main()
