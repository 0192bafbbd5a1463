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

    generate(
        out_dir, SynthConfig(scale=scale, seed=seed), progress=lambda step: console.print(f"[dim]synth[/dim] {step}")
    )
    out.print(f"wrote {out_dir}")


import_app = typer.Typer(
    no_args_is_help=True, help="Import interaction data of other formats as an llmrec data folder (leave-one-out)."
)
app.add_typer(import_app, name="import")


@import_app.command("lcrec")
def import_lcrec(
    inter: Path = typer.Option(..., "--inter", help="LC-Rec / TIGER interactions: {user: [item, ...]} (oldest first)."),
    items: Path = typer.Option(
        ..., "--items", help="LC-Rec / TIGER items: {item: {title, description, brand, categories}}."
    ),
    out_dir: Path = typer.Option(..., "--out", help="Data folder to write."),
    window: int = typer.Option(20, "--window", help="Previous items kept per session (the latest)."),
    prefixes: int = typer.Option(
        0, "--prefixes", help="Training sessions per user, from the end of its training part (0: all)."
    ),
    skip_short_users: bool = typer.Option(
        False, "--skip-short-users", help="Leave out users with fewer than 4 items (default: an error)."
    ),
) -> None:
    """Convert an LC-Rec / TIGER dataset (JSON) into an llmrec data folder: one English locale (UK),
    leave-one-out (last item: test, second-last: validation), windows of each user's training part.

    Example: llmrec data import lcrec --inter Scientific.inter.json --items Scientific.item.json --out data/scientific
    """
    from llmrec.data.importers import ImportConfig
    from llmrec.data.importers import import_lcrec as convert

    convert(inter, items, out_dir, ImportConfig(window=window, prefixes=prefixes, skip_short_users=skip_short_users))
    out.print(f"wrote {out_dir}")


@import_app.command("csv")
def import_csv(
    interactions: Path = typer.Option(..., "--interactions", help="CSV or parquet with user, item, timestamp."),
    items: Path = typer.Option(..., "--items", help="CSV with item, title[, description, brand, categories]."),
    out_dir: Path = typer.Option(..., "--out", help="Data folder to write."),
    window: int = typer.Option(20, "--window", help="Previous items kept per session (the latest)."),
    prefixes: int = typer.Option(
        0, "--prefixes", help="Training sessions per user, from the end of its training part (0: all)."
    ),
    skip_short_users: bool = typer.Option(
        False, "--skip-short-users", help="Leave out users with fewer than 4 items (default: an error)."
    ),
) -> None:
    """Convert your own interaction log and item table into an llmrec data folder (leave-one-out per user).

    Example: llmrec data import csv --interactions log.csv --items items.csv --out data/mine
    """
    from llmrec.data.importers import ImportConfig
    from llmrec.data.importers import import_csv as convert

    convert(
        interactions, items, out_dir, ImportConfig(window=window, prefixes=prefixes, skip_short_users=skip_short_users)
    )
    out.print(f"wrote {out_dir}")
