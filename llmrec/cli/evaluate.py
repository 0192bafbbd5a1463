"""`llmrec evaluate`: score a submission file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import out
from llmrec.cli.tables import metrics_table


def evaluate(
    task: int = typer.Option(..., "--task", min=1, max=3),
    pred: Path = typer.Option(..., "--pred", help="Submission parquet."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Labels: gt_task{N}_phase{P}.csv or parquet."),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="Labels of a split of this folder (instead of --gt), and the catalogue ids are checked against.",
    ),
    split: str = typer.Option("valid", "--split"),
    phase: int = typer.Option(1, "--phase", min=1, max=2),
    config: Optional[Path] = typer.Option(
        None, "--config", help="A config with the split settings (default: the one saved beside --pred)."
    ),
    tokenize: str = typer.Option("13a", "--tokenize", help="sacrebleu tokenizer for task 3."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score a submission: MRR/Recall/NDCG@100 (tasks 1, 2) or BLEU-4 (task 3), overall and per locale.

    Example: llmrec evaluate --task 1 --pred runs/covisit.parquet --data data/synth-small --split valid
    """
    from llmrec.evaluate import evaluate_file

    metrics = evaluate_file(task, pred, gt, data, split, phase, config, tokenize)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    out.print(metrics_table(metrics, f"task {task}: {pred}"))
