"""`llmrec report RUN_DIR`: a run folder's results as one HTML page (registered in llmrec.cli.main)."""

from __future__ import annotations

from pathlib import Path

import typer


def report(run_dir: Path = typer.Argument(..., help="A demo run folder, e.g. runs/demo-small.")) -> None:
    """Write RUN_DIR/report.html: per-locale metrics beside the baselines, task 3 BLEU by session length,
    finetuning curves and candidate recall, with the plots embedded (and saved in RUN_DIR/report/).

    Example: llmrec report runs/demo-small
    """
    from llmrec.report import write_report

    typer.echo(write_report(run_dir))
