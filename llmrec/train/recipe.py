"""The task 3 recipe, end to end: a config's training prompts, then LoRA finetuning."""

from __future__ import annotations

from typing import Callable

from llmrec.models.prepare import load_tokenizer, resolve_model
from llmrec.train.config import Task3Config
from llmrec.train.data import training_prompts
from llmrec.train.finetune import finetune


def finetune_recipe(config: Task3Config, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Trains the adapter `config` describes into `config.train.out`; returns the final metrics."""
    train, valid = training_prompts(config, load_tokenizer(config.model))
    log(f"training on {len(train):,} sessions, validating on {len(valid):,}; run folder {config.train.out}")
    return finetune(config, resolve_model(config.model), train, valid, resume=resume, log=log)
