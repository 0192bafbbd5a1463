"""`llmrec prompts ...`: see exactly what the model reads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import given, out

app = typer.Typer(no_args_is_help=True, help="Inspect task 3 prompts.")


@app.command("show")
def show(
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split"),
    index: int = typer.Option(0, "--index", help="Row of the split's sessions."),
    config: str = typer.Option("task3", "--config", help="A config file, or the name of a shipped one."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Tokenizer for the prompt budget (default: the config's model)."
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. prompt.history=8"),
) -> None:
    """Print exactly what the model reads for one session, and the target title.

    Example: llmrec prompts show --data data/synth-small --split valid --index 3
    """
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.models.prepare import load_tokenizer
    from llmrec.prompts import session_prompt
    from llmrec.train.config import Task3Config

    run = load_config(Task3Config, config, [*(overrides or []), *given(split__name=split, data=data, model=model)])
    example, tokens = session_prompt(AmazonM2(Path(run.data)), run.split, run.prompt, index, load_tokenizer(run.model))
    out.rule(f"session {example['session_id']} ({example['locale']}), prompt: {tokens} tokens", style="dim")
    out.print(example["prompt"], highlight=False, markup=False)
    out.rule("target", style="dim")
    out.print(example.get("completion", "(unlabelled)").strip(), highlight=False, markup=False)
