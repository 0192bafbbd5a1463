"""The `llmrec` command: thin typer verbs over the package's plain functions, one file per verb
or group of verbs (`llmrec.cli.*`); this module assembles them and turns user errors into
one line."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from llmrec.cli import (
    baseline,
    configs,
    data,
    demo,
    evaluate,
    finetune,
    generate,
    merge,
    models,
    playground,
    prompts,
    recommend,
    report,
)
from llmrec.errors import UserError

try:  # typer 0.2x vendors click: its usage errors and aborts are not click's own classes
    from typer._click.exceptions import ClickException as VendoredClickException
    from typer.exceptions import Abort as VendoredAbort
except ImportError:
    VendoredClickException, VendoredAbort = click.ClickException, click.exceptions.Abort

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="LLM-based generative recommendation on Amazon-M2 shopping sessions.",
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(prompts.app, name="prompts")
app.add_typer(configs.app, name="configs")
for verb in (
    baseline.baseline,
    finetune.finetune,
    generate.generate,
    recommend.recommend,
    finetune.export,
    evaluate.evaluate,
    merge.merge,
    demo.demo,
    playground.playground,
    report.report,
):
    app.command()(verb)

USAGE_ERRORS = (click.ClickException, VendoredClickException)
ABORTS = (click.exceptions.Abort, VendoredAbort)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line (no traceback unless --debug) and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args=args, prog_name="llmrec", standalone_mode=False)
    except USAGE_ERRORS as error:  # usage errors: click's own message and exit code
        error.show()
        sys.exit(error.exit_code)
    except ABORTS:
        sys.exit(130)
    except UserError as error:
        if debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
