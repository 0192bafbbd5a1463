"""`llmrec playground`: the prompt playground in the browser (registered in llmrec.cli.main)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import log


def playground(
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: the config's, data/synth-small)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="A default model, a local folder or a hub id (default: gemma-3-270m)."
    ),
    adapter: Optional[Path] = typer.Option(
        None,
        "--adapter",
        help="A PEFT LoRA adapter folder, e.g. runs/demo-small/task3/adapter; the model and prompt "
        "settings it was trained with become the defaults.",
    ),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf (starts in seconds) or vllm."),
    data_root: Optional[Path] = typer.Option(
        None,
        "--data-root",
        help="The page may open data folders under this one only (default: the folder holding --data).",
    ),
    runs_root: Optional[Path] = typer.Option(
        None,
        "--runs-root",
        help="... and models and adapters under this one only, besides the default models (default: runs).",
    ),
    allow_hub: bool = typer.Option(
        False, "--allow-hub", help="Let the page load Hugging Face hub ids (the hub stays offline otherwise)."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to serve on (0.0.0.0: reachable from other machines: anyone there can use it).",
    ),
    port: int = typer.Option(7860, "--port"),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    config: Optional[Path] = typer.Option(None, "--config", help="A playground config YAML (PlaygroundConfig)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. retrieve.index.kind=Flat ground_k=10"),
) -> None:
    """Edit prompts live, generate next-product titles and see the products they ground to, in a local web page.

    Example: llmrec playground --data data/synth-small --adapter runs/demo-small/task3/adapter --port 7860
    """
    from llmrec.playground.app import serve
    from llmrec.playground.service import playground_config

    settings = playground_config(
        config,
        overrides or [],
        data=str(data) if data else None,
        model=model,
        adapter=str(adapter) if adapter else None,
        backend=backend,
        data_root=str(data_root) if data_root else None,
        runs_root=str(runs_root) if runs_root else None,
        allow_hub=allow_hub or None,
    )
    serve(settings, host, port, open_browser, log=log)
