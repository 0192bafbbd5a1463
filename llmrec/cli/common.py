"""What the verbs share: the console (recorded, so each run's log can be saved beside its
output), printing metrics, and the end of a run."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from llmrec.cli.tables import metrics_table
from llmrec.runs import finish_run, stem

out = Console(
    width=None if sys.stdout.isatty() else 180, record=True
)  # wide tables when piped; recorded for the run log
OVERRIDES_HELP = "key=value overrides of the config, e.g. split.limit=1000"


def libraries_log(path: Path):
    """Other libraries' output (warnings, records, bars, native writes) into `path` while a verb
    runs; the console keeps llmrec's results and progress bars."""
    from llmrec.progress import console, libraries_to

    return libraries_to(path, keep=(out, console))


def libraries_log_for(output: Path) -> Path:
    """`runs/titles.parquet` -> `runs/titles.libraries.log`, beside the run's other artefacts."""
    return output.with_name(f"{stem(output)}.libraries.log")


def log(line: str) -> None:
    out.print(line, highlight=False)


def warn(line: str) -> None:
    """A setting that works but probably not as meant: loud, and kept in the run's log."""
    out.print(f"[bold yellow]warning:[/bold yellow] {line}", highlight=False)


def show_metrics(metrics: dict | None, title: str) -> dict | None:
    """Prints a metrics table (when there are metrics) and passes them on."""
    if metrics is not None:
        out.print(metrics_table(metrics, title))
    return metrics


def finish(out_file: Path, run, report: dict) -> None:
    """The resolved config, the report and this command's log, beside the output."""
    finish_run(out_file, run, report, out.export_text(clear=False))


def given(**options) -> list[str]:
    """`key=value` overrides for the command-line options that were given (`split__name` is
    the key `split.name`); options left at None are not given."""
    return [f"{key.replace('__', '.')}={value}" for key, value in options.items() if value is not None]
