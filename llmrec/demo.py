"""`make demo`: the built-in synthetic data end to end, every result beside the baselines.

Data -> baselines (tasks 1-3) -> a short LoRA finetune of the default LLM -> titles generated
for the sessions of all three tasks -> task 3 titles chosen among co-visitation products' with
the generated ones as evidence; reranked 100-item lists with and without the grounded titles
-> metrics. Every stage writes into the run folder and is skipped or resumed when its
output is already there, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import polars as pl
from rich.console import Console

from llmrec import io
from llmrec.baselines import TITLE_BASELINES, BaselineConfig, run_baseline
from llmrec.config import save_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.data.stats import dataset_stats
from llmrec.data.synth import SynthConfig, generate
from llmrec.evaluate import evaluate
from llmrec.progress import console as progress_console
from llmrec.rank import RecommendConfig, TextSignals, choose_titles, ranked_titles, ranking_data, recommend
from llmrec.runs import predictions_file
from llmrec.train.config import Task3Config


@dataclass
class DemoConfig:
    """The demo's settings; its recipe (500 sessions per task, a 40-step finetune, ...) is the
    shipped `demo` config."""

    scale: str = "small"
    seed: int = 0
    out: str = "runs/demo-small"
    data: str = ""  # default: data/synth-<scale>
    split: SplitConfig = field(default_factory=SplitConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    # Ranking baselines of tasks 1 and 2; sasrec (a trained network) adds minutes: `baselines=[...,sasrec]`.
    baselines: list[str] = field(default_factory=lambda: ["popularity", "covisit", "sknn"])
    llm: bool = True  # finetune, generate and ground titles (false: data, baselines and reranking only)
    task3: Task3Config = field(default_factory=Task3Config)  # its data and split are the demo's
    recommend: RecommendConfig = field(default_factory=RecommendConfig)  # its task, data and split are the demo's

    @property
    def data_dir(self) -> Path:
        return Path(self.data or f"data/synth-{self.scale}")


@dataclass
class DemoResult:
    rows: pl.DataFrame  # task, method, locale, metrics
    seconds: dict[str, float]  # stage -> wall seconds, in the order they ran


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    """Runs every stage into `config.out` and returns the results table (task, method,
    locale, metrics) with each stage's time; metrics.json, config.yaml and every submission
    are in the run folder."""
    out, data_dir, seconds = Path(config.out), config.data_dir, {}
    save_config(dataclasses.replace(config, data=str(data_dir)), out / "config.yaml")
    with timed(seconds, "data"):
        generate(
            data_dir,
            SynthConfig(config.scale, config.seed),
            progress=lambda step: progress_console.print(f"[dim]synth[/dim] {step}"),
        )
        dataset = AmazonM2(data_dir)
        dataset.validate()
        stats = dataset_stats(dataset)
        io.write_csv(stats, out / "data_stats.csv")
        console.print(
            f"[bold]{data_dir}[/bold]: {stats['sessions'][-1]:,} train sessions, {stats['products'][-1]:,} products"
        )
        splits = {task: load_task_split(dataset, task, config.split) for task in (1, 2, 3)}
    results = Results(out, splits)
    with timed(seconds, "baselines"):
        for task, split in splits.items():
            for name in TITLE_BASELINES if task == 3 else config.baselines:
                results.add(task, name, run_baseline(name, split, config.baseline))
        choice = config.recommend.title_choice
        choices = ranked_titles(splits[3], choice, config.baseline)
        results.add(3, "co-visitation titles", choose_titles(splits[3], choices, None, choice))
    titles = llm_titles(config, dataset, results, console, seconds) if config.llm else {}
    if 3 in titles:
        with timed(seconds, "task 3 title choice"):
            results.add(3, "LoRA + co-visitation titles", choose_titles(splits[3], choices, titles[3], choice))
    with timed(seconds, "catalog embeddings and index"):
        text = TextSignals.for_catalog(dataset.products(), config.recommend.text, log=console.print)
    for task in (1, 2):
        with timed(seconds, f"task {task}: candidates, features, reranking"):
            settings = dataclasses.replace(config.recommend, task=task, data=str(data_dir), split=config.split)
            data = ranking_data(dataset, settings)
            for method, generated in (("rerank", None), ("rerank + LLM titles", titles.get(task))):
                if method != "rerank" and generated is None:
                    continue
                path = out / f"task{task}" / ("rerank-llm.parquet" if generated is not None else "rerank.parquet")
                lists, report = recommend(settings, data, path, generated, None, text, log=console.print)
                io.write_json(report.to_dict(), path.with_suffix(".report.json"))
                results.add(task, method, lists, write=False)
    io.write_json(results.metrics, out / "metrics.json")
    return DemoResult(pl.DataFrame(results.rows), seconds)


@contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall time of the block to `seconds[stage]`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


def llm_titles(
    config: DemoConfig, dataset: AmazonM2, results: Results, console: Console, seconds: dict[str, float]
) -> dict[int, pl.DataFrame]:
    """Finetune (or reuse) the LoRA adapter, then generate titles for the sessions of tasks 3, 1
    and 2 with one engine; task 3's are scored as a submission."""
    from llmrec.generate import titles_for_tasks
    from llmrec.train.finetune import check_run_folder, latest_checkpoint
    from llmrec.train.recipe import finetune_recipe

    out = Path(config.out)
    task3 = dataclasses.replace(
        config.task3,
        data=str(config.data_dir),
        split=config.split,
        train=dataclasses.replace(config.task3.train, out=str(out / "task3")),
    )
    adapter = Path(task3.train.out) / "adapter"
    check_run_folder(Path(task3.train.out), task3)  # an adapter trained with other settings is never reused
    with timed(seconds, "LoRA finetuning"):
        if not adapter.exists():
            console.print(f"finetuning {task3.model} with LoRA for {task3.train.max_steps} steps")
            finetune_recipe(task3, resume=latest_checkpoint(Path(task3.train.out)) is not None, log=console.print)
    outputs = {task: out / "titles" / f"task{task}.parquet" for task in (3, 1, 2)}
    with timed(seconds, "title generation (tasks 3, 1, 2)"):
        generated = titles_for_tasks(
            dataset, outputs, config.split, task3.prompt, task3.model, str(adapter), task3.generate, log=console.print
        )
    titles = {task: frame for task, (frame, _) in generated.items()}
    for task in titles:
        save_config(task3, out / "titles" / f"task{task}.config.yaml")
    results.add(3, f"LoRA {task3.model}", titles[3].select("locale", "next_item_title"))
    return titles


class Results:
    """Scores predictions on the demo's splits, writes them, and collects rows and metrics."""

    def __init__(self, out: Path, splits: dict):
        self.out, self.splits = out, splits
        self.rows: list[dict] = []
        self.metrics: dict = {}

    def add(self, task: int, method: str, predictions: pl.DataFrame, write: bool = True) -> None:
        split = self.splits[task]
        if write:
            io.write_parquet(predictions, predictions_file(self.out, task, method))
        result = evaluate(task, predictions, split.targets, split.sessions["locale"])
        self.metrics[f"task{task}/{method}"] = result
        for locale, values in [("overall", result["overall"]), *result["per_locale"].items()]:
            self.rows.append(
                {
                    "task": task,
                    "method": method,
                    "locale": locale,
                    **{k: v for k, v in values.items() if k != "sessions"},
                    "sessions": values["sessions"],
                }
            )
