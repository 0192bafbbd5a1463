"""`make demo`: the built-in synthetic data end to end, every result beside the baselines."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console

from llmrec import io
from llmrec.baselines import RANKING_BASELINES, TITLE_BASELINES, BaselineConfig, run_baseline
from llmrec.config import to_dict
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.data.stats import dataset_stats
from llmrec.data.synth import SynthConfig, generate
from llmrec.evaluate import evaluate
from llmrec.progress import console as progress_console


def run_demo(out: Path, data_dir: Path, synth: SynthConfig, split: SplitConfig, baselines: BaselineConfig, console: Console) -> pl.DataFrame:
    """Synthesize (or reuse) the dataset, run every baseline on the validation split of tasks
    1-3, save submissions, configs and metrics under `out`, and return the results table."""
    generate(data_dir, synth, progress=lambda step: progress_console.print(f"[dim]synth[/dim] {step}"))
    dataset = AmazonM2(data_dir)
    dataset.validate()
    stats = dataset_stats(dataset)
    io.write_csv(stats, out / "data_stats.csv")
    console.print(f"[bold]{data_dir}[/bold]: {stats['sessions'][-1]:,} train sessions, {stats['products'][-1]:,} products")
    rows, metrics = [], {}
    for task in (1, 2, 3):
        task_split = load_task_split(dataset, task, split)
        for name in TITLE_BASELINES if task == 3 else RANKING_BASELINES:
            predictions = run_baseline(name, task_split, baselines)
            io.write_parquet(predictions, out / f"task{task}" / f"{name}.parquet")
            result = evaluate(task, predictions, task_split.targets, task_split.sessions["locale"])
            metrics[f"task{task}/{name}"] = result
            for locale, values in [("overall", result["overall"]), *result["per_locale"].items()]:
                rows.append({"task": task, "method": name, "locale": locale, **{k: v for k, v in values.items() if k != "sessions"}, "sessions": values["sessions"]})
    io.write_json(metrics, out / "metrics.json")
    io.write_yaml({"synth": to_dict(synth), "data": str(data_dir), "split": to_dict(split), "baseline": to_dict(baselines)}, out / "config.yaml")
    return pl.DataFrame(rows)


def summary_table(results: pl.DataFrame, task: int) -> pl.DataFrame:
    """One row per method: overall metrics, then the headline metric per locale."""
    part = results.filter(pl.col("task") == task)
    headline = "bleu" if task == 3 else "mrr@100"
    metrics = ["bleu"] if task == 3 else ["mrr@100", "recall@100", "ndcg@100"]
    overall = part.filter(pl.col("locale") == "overall").select("method", *metrics, "sessions")
    per_locale = part.filter(pl.col("locale") != "overall").pivot("locale", index="method", values=headline)
    return overall.join(per_locale, on="method", how="left", maintain_order="left")
