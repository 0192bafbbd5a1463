"""`llmrec configs ...`: the shipped recipes, and any config resolved with its defaults."""

from __future__ import annotations

from typing import Optional

import typer

from llmrec.cli.common import out

app = typer.Typer(
    no_args_is_help=True, help="List the shipped configs; show one resolved (defaults + file + overrides)."
)


@app.command("list")
def list_configs() -> None:
    """The configs that ship with llmrec, found by name from any folder (`--config task3`).

    Example: llmrec configs list
    """
    from llmrec.config import SHIPPED, shipped_configs

    for name in shipped_configs():
        out.print(f"{name:<12} {SHIPPED / f'{name}.yaml'}", highlight=False)


@app.command("path")
def path(name: str = typer.Argument(..., help="A shipped config's name, e.g. task3 or accelerate/ddp.")) -> None:
    """Print where a shipped config lives, for tools that take a file (accelerate launch --config_file).

    Example: accelerate launch --config_file "$(llmrec configs path "
                                             "accelerate/ddp)" -m llmrec finetune --task 3 --config task3-gpu
    """
    from llmrec.config import find_config

    print(find_config(name))


@app.command("show")
def show(
    name: str = typer.Argument(
        ..., help="A shipped config's name, a config file, or a kind (task3, recommend, baselines, demo): its defaults."
    ),
    kind: Optional[str] = typer.Option(
        None,
        "--kind",
        help="Which settings the file holds: task3, recommend, baselines or demo "
        "(default: those of the shipped config of that name).",
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """Print a config resolved: every key with its value, defaults included.

    Example: llmrec configs show task3 train.max_steps=50
    """
    import yaml

    from llmrec.config import ConfigError, load_config, shipped_configs, to_dict
    from llmrec.recipes import RECIPES, SHIPPED_KINDS, recipe_class

    recipe = kind or name
    if recipe not in RECIPES and recipe not in SHIPPED_KINDS:
        raise ConfigError(f"--kind: say which settings {name} holds ({', '.join(RECIPES)})")
    source = (
        None if name in RECIPES and name not in shipped_configs() else name
    )  # a kind without a shipped file: its defaults
    resolved = load_config(recipe_class(recipe), source, overrides or [])
    out.print(yaml.safe_dump(to_dict(resolved), sort_keys=False, allow_unicode=True), highlight=False, markup=False)
