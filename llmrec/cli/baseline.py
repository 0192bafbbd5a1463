"""`llmrec baseline NAME`: popularity, co-visitation, session-KNN, last title."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import finish, given, out, show_metrics


def baseline(
    name: str = typer.Argument(..., help="popularity | covisit | sknn (tasks 1, 2) or last-title (task 3)."),
    task: int = typer.Option(..., "--task", min=1, max=3),
    data: Path = typer.Option(..., "--data"),
    split: str = typer.Option("valid", "--split", help="valid (held-out train sessions) or test."),
    phase: int = typer.Option(1, "--phase", min=1, max=2, help="Competition phase of the test files."),
    out_file: Path = typer.Option(..., "--out", help="Submission parquet to write."),
    config: Optional[str] = typer.Option(
        None, "--config", help="A config file or shipped config name with baseline settings."
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. baseline.covisit.neighbors=80"),
) -> None:
    """Run a baseline and write a competition submission; the resolved config goes beside it.

    Example: llmrec baseline covisit --task 1 --data data/synth-small --split valid --out runs/covisit.parquet
    """
    from llmrec import io
    from llmrec.baselines import BaselineRun, run_baseline
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import load_task_split
    from llmrec.evaluate import score_split

    run = load_config(
        BaselineRun,
        config,
        [*(overrides or []), *given(name=name, task=task, data=data, split__name=split, split__phase=phase)],
    )
    task_split = load_task_split(AmazonM2(Path(run.data)), run.task, run.split)
    predictions = run_baseline(run.name, task_split, run.baseline)
    io.write_parquet(predictions, out_file)
    out.print(f"wrote {out_file} ({predictions.height} sessions)")
    metrics = show_metrics(
        score_split(run.task, predictions, task_split, str(out_file)), f"task {run.task}: {out_file}"
    )
    finish(out_file, run, {"metrics": metrics})
