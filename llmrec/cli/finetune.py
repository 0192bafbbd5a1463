"""`llmrec finetune` and `llmrec export`: train a LoRA adapter, fold it into its model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import libraries_log, log, out


def finetune(
    task: int = typer.Option(3, "--task", min=3, max=3, help="Only task 3 (title generation) trains an LLM."),
    config: str = typer.Option("task3", "--config", help="A config file, or the name of a shipped one."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides, e.g. train.max_steps=50 train.quantization=nf4"
    ),
) -> None:
    """LoRA/QLoRA finetuning of the config's model to write the next product's title.

    Example: llmrec finetune --task 3 --config task3 train.max_steps=200 train.out=runs/t3
    """
    from llmrec.config import load_config
    from llmrec.train.config import Task3Config
    from llmrec.train.recipe import finetune_recipe

    run = load_config(Task3Config, config, overrides or [])
    with libraries_log(Path(run.train.out) / "libraries.log"):
        metrics = finetune_recipe(run, resume=resume, log=log)
    out.print(
        f"adapter: {Path(run.train.out) / 'adapter'}  "
        + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    )


def export(
    adapter: Path = typer.Option(..., "--adapter", help="LoRA adapter folder."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the merged model."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Fold the LoRA weights into the base model."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Base model (default: the one the adapter was trained on)."
    ),
) -> None:
    """Write a standalone model: the base model with the adapter merged in.

    Example: llmrec export --merge --adapter runs/task3/adapter --out runs/task3/merged
    """
    from llmrec.config import ConfigError
    from llmrec.models.adapters import export_merged

    if not merge:
        raise ConfigError("only --merge export is supported: an unmerged adapter is already the adapter folder")
    export_merged(adapter, out_dir, model)
    out.print(f"wrote {out_dir}")
