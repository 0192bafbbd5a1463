"""Task 3 prompts: sessions rendered as multilingual title prompts, paired with the next title."""

from __future__ import annotations

from pathlib import Path

import datasets
import polars as pl

from llmrec.config import ConfigError
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split
from llmrec.prompts.render import PromptConfig, load_templates, render_prompts, resolve_template

__all__ = [
    "PromptConfig",
    "load_templates",
    "prompt_dataset",
    "render_prompts",
    "resolve_template",
    "session_prompt",
    "split_prompts",
    "task_prompts",
]


def prompt_dataset(
    sessions: pl.DataFrame,
    catalog: pl.DataFrame,
    config: PromptConfig,
    targets: pl.Series | None = None,
    tokenizer=None,
) -> datasets.Dataset:
    """`session_id`, `locale`, `prompt` and, with targets, `completion` (" " + the next title):
    what the model reads and what it should write, one row per session in session order."""
    frame = sessions.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String))
    frame = frame.with_columns(render_prompts(sessions, catalog, config, tokenizer).alias("prompt"))
    if targets is not None:
        frame = frame.with_columns((pl.lit(" ") + targets.fill_null("")).alias("completion"))
    return (
        datasets.Dataset.from_polars(frame)
        if hasattr(datasets.Dataset, "from_polars")
        else datasets.Dataset.from_dict(frame.to_dict(as_series=False))
    )


def split_prompts(
    data: AmazonM2, task: int, split: SplitConfig, config: PromptConfig, tokenizer=None
) -> datasets.Dataset:
    """Prompts of the sessions a task predicts in a split, in output order, with the target
    title as completion for labelled task 3 splits. Tasks 1 and 2 get prompts too: their
    generated titles are grounded to products."""
    return task_prompts(load_task_split(data, task, split), data.root, config, tokenizer)


def task_prompts(
    task_split: TaskSplit, data_root: str | Path, config: PromptConfig, tokenizer=None
) -> datasets.Dataset:
    """`split_prompts` of a task split already loaded from the data folder `data_root`."""
    config = resolve_template(config, data_root)
    targets = task_split.targets if task_split.task == 3 else None
    return prompt_dataset(task_split.sessions, task_split.catalog, config, targets, tokenizer)


def session_prompt(data: AmazonM2, split: SplitConfig, config: PromptConfig, index: int, tokenizer) -> tuple[dict, int]:
    """Row `index` of the task 3 split as the model reads it (session_id, locale, prompt and,
    when labelled, completion), and the prompt's length in the tokenizer's tokens."""
    task_split = load_task_split(data, 3, split)
    if not 0 <= index < task_split.sessions.height:
        raise ConfigError(f"--index {index} is outside the {task_split.sessions.height} sessions of split {split.name}")
    row = task_split.sessions.slice(index, 1)
    target = task_split.targets.slice(index, 1) if task_split.targets is not None else None
    example = prompt_dataset(row, task_split.catalog, resolve_template(config, data.root), target, tokenizer)[0]
    return example, len(tokenizer(example["prompt"])["input_ids"])
