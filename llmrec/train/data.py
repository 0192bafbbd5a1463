"""What finetuning learns from: every labelled history session whose next product has a title,
as prompt/completion pairs, and held-out sessions of the validation split to watch."""

from __future__ import annotations

from pathlib import Path

import datasets
import polars as pl

from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.schema import LOCALES
from llmrec.data.split import SplitConfig, load_task_split, titles_of
from llmrec.errors import ConfigError
from llmrec.prompts import prompt_dataset, resolve_template
from llmrec.train.config import Task3Config


def training_prompts(config: Task3Config, tokenizer) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, valid): train from the history of the validation split (never the held-out
    sessions), valid the first `eval_sessions` held-out sessions; both restricted to
    `train.locales` when set."""
    settings = config.train
    unknown = [locale for locale in settings.locales if locale not in LOCALES]
    if unknown:
        raise ConfigError(f"train.locales: unknown locale '{unknown[0]}' (known: {', '.join(LOCALES)})")
    split = load_task_split(AmazonM2(Path(config.data)), 3, SplitConfig(**{**vars(config.split), "name": "valid"}))
    history = split.history.with_columns(titles_of(split.history, split.catalog).alias("title")).filter(
        pl.col("title").is_not_null()
    )
    sessions = split.sessions.with_columns(split.targets.alias("title"))
    if settings.locales:
        history = history.filter(pl.col("locale").cast(pl.String).is_in(settings.locales))
        sessions = sessions.filter(pl.col("locale").cast(pl.String).is_in(settings.locales))
    if settings.train_sessions:
        history = history.sample(n=min(settings.train_sessions, history.height), seed=settings.seed)
    sessions = sessions.head(settings.eval_sessions)
    if history.height == 0 or sessions.height == 0:
        raise DataFormatError(
            config.data, f"no labelled sessions with titles to train or validate on (train.locales={settings.locales})"
        )
    prompt = resolve_template(config.prompt, config.data)
    train = prompt_dataset(history, split.catalog, prompt, history["title"], tokenizer)
    valid = prompt_dataset(sessions, split.catalog, prompt, sessions["title"], tokenizer)
    return train, valid
