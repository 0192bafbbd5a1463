"""`llmrec recommend`: ranked 100-item lists (tasks 1, 2) or titles of ranked products (task 3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from llmrec.cli.common import finish, given, libraries_log, libraries_log_for, log, out, show_metrics, warn


def recommend(
    task: int = typer.Option(..., "--task", min=1, max=3, help="1, 2: ranked lists; 3: titles of ranked products."),
    data: Optional[Path] = typer.Option(None, "--data"),
    split: str = typer.Option("valid", "--split", help="valid (held-out train sessions, scored) or test."),
    phase: int = typer.Option(1, "--phase", min=1, max=2),
    titles: Optional[Path] = typer.Option(
        None, "--titles", help="Generated titles of the split's sessions (`llmrec generate --task N`)."
    ),
    valid_titles: Optional[Path] = typer.Option(
        None, "--valid-titles", help="With --split test: titles of the validation sessions the reranker learns from."
    ),
    out_file: Path = typer.Option(
        ..., "--out", help="Submission parquet: locale, next_item_prediction (task 3: next_item_title)."
    ),
    config: Optional[str] = typer.Option(
        None, "--config", help="A config file, or the name of a shipped one (default: the defaults)."
    ),
    limit: int = typer.Option(0, "--limit", help="Only the first N sessions of the split (sets split.limit; 0: all)."),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: rank only the I-th of N slices of the sessions, into <out stem>.shard-I-of-N.parquet "
        "(`llmrec merge`); the fitted sources and reranker are computed once and shared in <out stem>.fitted/.",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or ray: --shards N as Ray tasks (placed, retried), then merged."
    ),
    shards: int = typer.Option(2, "--shards", help="With --engine ray: how many shards."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides, e.g. reranker.kind=fusion candidates.covisit_top=100"
    ),
) -> None:
    """Rank 100 products per session: candidates (co-visitation, session-KNN, popularity, text
    neighbours, grounded LLM titles) reranked by LightGBM, in the competition's format.
    Task 3: the title of one of the top co-visitation products, chosen by minimum Bayes risk
    with the generated titles as evidence.

    Example: llmrec recommend --task 1 --data data/synth-small --split valid \\
        --titles runs/titles-t1.parquet --out runs/task1.parquet
    """
    if engine == "ray":
        from llmrec.engines.ray import run_shards

        paths = (("--data", data), ("--titles", titles), ("--valid-titles", valid_titles), ("--config", config))
        argv = [
            "recommend",
            *("--task", str(task), "--split", split, "--phase", str(phase), "--out", str(out_file)),
            *("--limit", str(limit)),
            *[x for option, value in paths if value is not None for x in (option, str(value))],
            *(overrides or []),
        ]
        with libraries_log(libraries_log_for(out_file)):
            merged = run_shards(argv, shards, out_file, log=log)
        out.print(f"wrote {out_file} ({merged.height:,} sessions, {shards} shards on Ray)")
        return
    from llmrec import io
    from llmrec.baselines import BaselineConfig
    from llmrec.config import ConfigError, load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import load_task_split
    from llmrec.evaluate import score_split
    from llmrec.rank import (
        RecommendConfig,
        TextSignals,
        check_title_settings,
        ranking_data,
        read_titles,
        recommend_shard,
        recommend_titles,
    )
    from llmrec.rank import recommend as rank_sessions
    from llmrec.runs import titles_departures
    from llmrec.shards import Shard

    named = given(task=task, split__name=split, split__phase=phase, data=data, split__limit=limit or None)
    run = load_config(RecommendConfig, config, [*(overrides or []), *named])
    dataset = AmazonM2(Path(run.data))
    generated = read_titles(titles) if titles else None
    for path in (titles, valid_titles):
        for change in titles_departures(path, run.split) if path else []:
            warn(
                f"{path} was generated under other split settings ({change}): the adapter may have "
                "trained on the sessions scored here"
            )
    started = time.perf_counter()
    part = Shard.parse(shard) if shard else None
    if task == 3:
        if part is not None:
            raise ConfigError("--shard ranks sessions of tasks 1 and 2; task 3 picks titles in one pass")
        check_title_settings(run)
        task_split = load_task_split(dataset, 3, run.split)
        lists = recommend_titles(task_split, generated, run.title_choice, BaselineConfig(popularity=run.popularity))
        io.write_parquet(lists, out_file)
        report = {"seconds": round(time.perf_counter() - started, 2)}
        out.print(f"wrote {out_file} ({lists.height:,} sessions in {report['seconds']:.1f} s)")
    else:
        rank_data = ranking_data(dataset, run)
        task_split = rank_data.target
        generated_valid = read_titles(valid_titles) if valid_titles else None
        written = part.path(out_file) if part else out_file
        with libraries_log(libraries_log_for(written)):
            text = TextSignals.for_catalog(dataset.products(), run.text, log=log)
            if part is None:
                lists, ranked = rank_sessions(run, rank_data, out_file, generated, generated_valid, text, log=log)
            else:
                lists, ranked = recommend_shard(
                    run, rank_data, out_file, part, generated, generated_valid, text, log=log
                )
        report = ranked.to_dict()
        out.print(f"wrote {written} ({lists.height:,} sessions, {ranked.sessions_per_s:,} sessions/s)")
        if part is not None:  # scored once merged: `llmrec merge`, then `llmrec evaluate`
            finish(written, run, report)
            return
    report["metrics"] = show_metrics(
        score_split(run.task, lists, task_split, str(out_file)), f"task {run.task}: {out_file}"
    )
    finish(out_file, run, report)
