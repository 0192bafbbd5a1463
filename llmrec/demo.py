"""`make demo`: the built-in synthetic data end to end, every result beside the baselines.

Data -> baselines (tasks 1-3) -> a short LoRA finetune of the default LLM -> titles generated
for the sessions of all three tasks -> task 3 titles chosen among co-visitation products' with
the generated ones as evidence; reranked 100-item lists with and without the grounded titles
-> metrics. Every stage writes into the run folder and is skipped or resumed when its
output is already there, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from rich.console import Console

from llmrec import io
from llmrec.baselines import RANKING_BASELINES, TITLE_BASELINES, BaselineConfig, run_baseline
from llmrec.config import save_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.data.stats import dataset_stats
from llmrec.data.synth import SynthConfig, generate
from llmrec.evaluate import evaluate
from llmrec.progress import console as progress_console
from llmrec.rank import RecommendConfig, TextSignals, choose_titles, ranked_titles, recommend
from llmrec.train.config import Task3Config


def _demo_task3() -> Task3Config:
    config = Task3Config()
    config.prompt.history, config.prompt.attributes, config.prompt.max_prompt_tokens = 4, [], 160
    config.lora.layers = list(range(9, 18))
    config.train = dataclasses.replace(config.train, max_steps=40, grad_accum=1, eval_every=40, eval_sessions=32, save_every=20, log_every=5, max_minutes=0)
    return config


@dataclass
class DemoConfig:
    scale: str = "small"
    seed: int = 0
    out: str = "runs/demo-small"
    data: str = ""  # default: data/synth-<scale>
    split: SplitConfig = field(default_factory=lambda: SplitConfig(limit=500))  # the first 500 held-out sessions of each task
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    llm: bool = True  # finetune, generate and ground titles (false: data, baselines and reranking only)
    task3: Task3Config = field(default_factory=_demo_task3)  # its data and split are the demo's
    recommend: RecommendConfig = field(default_factory=RecommendConfig)  # its task, data and split are the demo's

    @property
    def data_dir(self) -> Path:
        return Path(self.data or f"data/synth-{self.scale}")


def run_demo(config: DemoConfig, console: Console) -> pl.DataFrame:
    """Runs every stage into `config.out` and returns the results table (task, method,
    locale, metrics); metrics.json, config.yaml and every submission are in the run folder."""
    out, data_dir = Path(config.out), config.data_dir
    save_config(config, out / "config.yaml")
    generate(data_dir, SynthConfig(config.scale, config.seed), progress=lambda step: progress_console.print(f"[dim]synth[/dim] {step}"))
    dataset = AmazonM2(data_dir)
    dataset.validate()
    stats = dataset_stats(dataset)
    io.write_csv(stats, out / "data_stats.csv")
    console.print(f"[bold]{data_dir}[/bold]: {stats['sessions'][-1]:,} train sessions, {stats['products'][-1]:,} products")
    splits = {task: load_task_split(dataset, task, config.split) for task in (1, 2, 3)}
    results = Results(out, splits)
    for task, split in splits.items():
        for name in TITLE_BASELINES if task == 3 else RANKING_BASELINES:
            results.add(task, name, run_baseline(name, split, config.baseline))
    choice = config.recommend.title_choice
    choices = ranked_titles(splits[3], choice, config.baseline)
    results.add(3, "co-visitation titles", choose_titles(splits[3], choices, None, choice))
    titles = llm_titles(config, dataset, results, console) if config.llm else {}
    if 3 in titles:
        results.add(3, "LoRA + co-visitation titles", choose_titles(splits[3], choices, titles[3], choice))
    text = TextSignals.for_catalog(dataset.products(), config.recommend.text, log=console.print)
    for task in (1, 2):
        settings = dataclasses.replace(config.recommend, task=task, data=str(data_dir), split=config.split)
        for method, generated in (("rerank", None), ("rerank + LLM titles", titles.get(task))):
            if method != "rerank" and generated is None:
                continue
            path = out / f"task{task}" / ("rerank-llm.parquet" if generated is not None else "rerank.parquet")
            lists, report = recommend(settings, path, generated, None, text, log=console.print)
            io.write_json(report, path.with_suffix(".report.json"))
            results.add(task, method, lists, write=False)
    io.write_json(results.metrics, out / "metrics.json")
    return pl.DataFrame(results.rows)


def llm_titles(config: DemoConfig, dataset: AmazonM2, results: Results, console: Console) -> dict[int, pl.DataFrame]:
    """Finetune (or reuse) the LoRA adapter, then generate titles for the sessions of tasks 3, 1
    and 2 with one engine; task 3's are scored as a submission."""
    from llmrec.generate import titles_for_tasks
    from llmrec.models.prepare import load_tokenizer, resolve_model
    from llmrec.train.data import training_prompts
    from llmrec.train.finetune import finetune, latest_checkpoint

    out = Path(config.out)
    task3 = dataclasses.replace(config.task3, data=str(config.data_dir), split=config.split,
                                train=dataclasses.replace(config.task3.train, out=str(out / "task3")))
    adapter = Path(task3.train.out) / "adapter"
    if not adapter.exists():
        train, valid = training_prompts(task3, load_tokenizer(task3.model))
        console.print(f"finetuning {task3.model} with LoRA for {task3.train.max_steps} steps on {len(train):,} sessions")
        finetune(task3, resolve_model(task3.model), train, valid, resume=latest_checkpoint(Path(task3.train.out)) is not None, log=console.print)
    titles = titles_for_tasks(dataset, (3, 1, 2), config.split, task3.prompt, task3.model, str(adapter), task3.generate, out / "titles", log=console.print)
    for task in titles:
        save_config(task3, out / "titles" / f"task{task}.config.yaml")
    results.add(3, f"LoRA {task3.model}", titles[3].select("locale", "next_item_title"))
    return titles


def predictions_file(run: Path, task: int, method: str) -> Path:
    """Where the demo keeps a method's predictions: `task3/LoRA-co-visitation-titles.parquet`."""
    return Path(run) / f"task{task}" / (re.sub(r"[^0-9A-Za-z.]+", "-", method).strip("-") + ".parquet")


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
            self.rows.append({"task": task, "method": method, "locale": locale, **{k: v for k, v in values.items() if k != "sessions"}, "sessions": values["sessions"]})


def summary_table(results: pl.DataFrame, task: int) -> pl.DataFrame:
    """One row per method: overall metrics, then the headline metric per locale."""
    part = results.filter(pl.col("task") == task)
    headline = "bleu" if task == 3 else "mrr@100"
    metrics = ["bleu"] if task == 3 else ["mrr@100", "recall@100", "ndcg@100"]
    overall = part.filter(pl.col("locale") == "overall").select("method", *metrics, "sessions")
    per_locale = part.filter(pl.col("locale") != "overall").pivot("locale", index="method", values=headline)
    return overall.join(per_locale, on="method", how="left", maintain_order="left")
