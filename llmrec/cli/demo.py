"""`llmrec demo`: the whole job on the built-in synthetic data (`make demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import libraries_log, out
from llmrec.cli.tables import rich_table


def demo(
    scale: str = typer.Option("small", "--scale", help="Synthetic dataset size: tiny | small | medium | full."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/demo-<scale>)."),
    config: str = typer.Option("demo", "--config", help="A config file, or the name of a shipped one."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. llm=false split.limit=1000"),
) -> None:
    """The main job end to end on the built-in synthetic data: data, baselines, LoRA finetuning,
    title generation, grounding and reranking, every metric beside the baselines.

    Example: llmrec demo --scale small --out runs/demo-small
    """
    import polars as pl

    from llmrec import io
    from llmrec.config import load_config
    from llmrec.demo import DemoConfig, run_demo, timed
    from llmrec.report import write_report
    from llmrec.runs import summary_table

    run = load_config(
        DemoConfig, config, [*(overrides or []), f"scale={scale}", f"out={out_dir or Path('runs') / f'demo-{scale}'}"]
    )
    with libraries_log(Path(run.out) / "libraries.log"):
        result = run_demo(run, out)
        for task, headline in ((1, "MRR@100"), (2, "MRR@100"), (3, "BLEU-4")):
            title = f"task {task}, validation split of {run.data_dir} (locale columns: {headline})"
            out.print(rich_table(summary_table(result.rows, task), title))
        with timed(result.seconds, "report"):
            report = write_report(Path(run.out))
    seconds = [*result.seconds.values(), sum(result.seconds.values())]
    stages = pl.DataFrame({"stage": [*result.seconds, "total"], "seconds": [f"{s:,.1f}" for s in seconds]})
    out.print(rich_table(stages, "time per stage"))
    out.print(f"run folder: {run.out}\nreport: {report}\nother libraries' output: {Path(run.out) / 'libraries.log'}")
    io.write_text(out.export_text(clear=False), Path(run.out) / "demo.log")
