"""`llmrec generate`: next-product titles from an LLM, with vLLM or HF generate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import finish, given, libraries_log, libraries_log_for, log, out, show_metrics, warn


def generate(
    task: int = typer.Option(
        3, "--task", min=1, max=3, help="3: the submission; 1, 2: titles of those tasks' sessions, to ground."
    ),
    backend: Optional[str] = typer.Option(
        None, "--backend", help="vllm | hf (default: the config's generate.backend)."
    ),
    model: Optional[str] = typer.Option(None, "--model", help="Base model (default: the config's model)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter folder from `llmrec finetune`."),
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split"),
    phase: int = typer.Option(1, "--phase", min=1, max=2, help="Competition phase of the test files."),
    out_file: Path = typer.Option(..., "--out", help="Parquet: session_id, locale, next_item_title, candidates."),
    config: str = typer.Option("task3", "--config", help="A config file, or the name of a shipped one."),
    lists: Optional[Path] = typer.Option(
        None,
        "--lists",
        help="With generate.decoding=score: ranked lists of the split's sessions (a submission, rows in session "
        "order) whose top generate.num_candidates products' titles the model scores.",
    ),
    limit: int = typer.Option(0, "--limit", help="Only the first N sessions of the split (sets split.limit; 0: all)."),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: only the I-th of N slices of the sessions, into <out stem>.shard-I-of-N.parquet (`llmrec merge`).",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or ray: --shards N as Ray tasks (placed, retried), then merged."
    ),
    shards: int = typer.Option(2, "--shards", help="With --engine ray: how many shards."),
    gpus_per_shard: float = typer.Option(
        0.0, "--gpus-per-shard", help="With --engine ray: GPUs each shard's task asks Ray for."
    ),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides, e.g. generate.decoding=beam generate.num_candidates=4"
    ),
) -> None:
    """Generate next-product titles (n candidates with scores) with vLLM or HF generate.

    Example: llmrec generate --task 3 --backend vllm --adapter runs/task3/adapter \\
        --data data/synth-small --split valid --out runs/titles.parquet
    """
    if engine == "ray":
        from llmrec.engines.ray import run_shards

        argv = [
            "generate",
            "--task",
            str(task),
            "--split",
            split,
            "--phase",
            str(phase),
            "--out",
            str(out_file),
            "--config",
            config,
            "--limit",
            str(limit),
            *[
                x
                for option, value in (
                    ("--backend", backend),
                    ("--model", model),
                    ("--adapter", adapter),
                    ("--data", data),
                    ("--lists", lists),
                )
                if value is not None
                for x in (option, str(value))
            ],
            *(overrides or []),
        ]
        with libraries_log(libraries_log_for(out_file)):
            merged = run_shards(argv, shards, out_file, gpus_per_shard, log=log)
        out.print(f"wrote {out_file} ({merged.height} sessions, {shards} shards on Ray)")
        return
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import load_task_split
    from llmrec.evaluate import read_predictions, score_split
    from llmrec.generate import titles_for_tasks
    from llmrec.runs import departures, overrides_of, trained_settings
    from llmrec.shards import Shard
    from llmrec.train.config import Task3Config

    named = given(
        split__name=split,
        split__phase=phase,
        data=data,
        model=model,
        generate__backend=backend,
        split__limit=limit or None,
    )
    trained = (
        trained_settings(adapter) if adapter else {}
    )  # the adapter's model, prompt and split, below what the user sets
    run = load_config(Task3Config, config, [*overrides_of(trained), *(overrides or []), *named])
    for change in departures(trained, run):
        consequence = (
            "it was trained on sessions this split holds out and scores"
            if change.startswith("split.")
            else "titles may be worse"
        )
        warn(f"the adapter was trained with other settings ({change}): {consequence}")
    dataset = AmazonM2(Path(run.data))
    adapter_folder = str(adapter) if adapter else None
    part = Shard.parse(shard) if shard else None
    ranked = read_predictions(lists, 1) if lists is not None else None
    with libraries_log(libraries_log_for(part.path(out_file) if part else out_file)):
        results = titles_for_tasks(
            dataset, {task: out_file}, run.split, run.prompt, run.model, adapter_folder, run.generate, log, part, ranked
        )
    titles, throughput = results[task]
    written = part.path(out_file) if part else out_file
    out.print(f"wrote {written} ({titles.height} sessions)")
    metrics = (
        score_split(3, titles, load_task_split(dataset, 3, run.split), str(out_file))
        if task == 3 and part is None
        else None
    )
    finish(written, run, {"throughput": throughput, "metrics": show_metrics(metrics, f"task 3: {out_file}")})
