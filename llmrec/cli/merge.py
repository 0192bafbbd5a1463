"""`llmrec merge`: shards of a fanned-out command, assembled into its output."""

from __future__ import annotations

from pathlib import Path

import typer

from llmrec.cli.common import out


def merge(
    out_file: Path = typer.Option(..., "--out", help="The output the shards were written for (they lie beside it)."),
) -> None:
    """Assemble `<out stem>.shard-I-of-N.parquet` files (from `--shard I/N` runs of
    generate or recommend) into OUT, in the sessions' order, after checking that no shard is missing,
    doubled or from another run.

    Example: llmrec merge --out runs/titles.parquet
    """
    from llmrec.shards import merge_shards

    merged = merge_shards(out_file)
    out.print(f"wrote {out_file} ({merged.height:,} sessions)")
