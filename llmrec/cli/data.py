"""`llmrec data ...`: read, check and synthesize data folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from llmrec.cli.common import out
from llmrec.cli.tables import rich_table

app = typer.Typer(no_args_is_help=True, help="Read, check and synthesize Amazon-M2 data folders.")


@app.command("check")
def check(
    data: Path = typer.Option(..., "--data", help="Folder with the released files."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Validate every file and print per-locale statistics (the paper's Table 2).

    Example: llmrec data check --data data/synth-small
    """
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.stats import dataset_stats

    dataset = AmazonM2(data)
    dataset.validate()
    table = dataset_stats(dataset)
    if as_json:
        print(json.dumps(table.to_dicts(), indent=2, default=str))
        return
    out.print(rich_table(table, f"{data}: all files valid"))


@app.command("synth")
def synth(
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
