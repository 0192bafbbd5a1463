"""Prompts -> a task 3 submission, in chunks, so a long run that stops resumes where it was."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import polars as pl

from llmrec import io
from llmrec.config import to_dict
from llmrec.errors import ConfigError
from llmrec.generate.base import GenerateConfig, Generator
from llmrec.generate.constrained import CatalogConstraint
from llmrec.generate.rescore import ListTitles
from llmrec.progress import track
from llmrec.shards import Shard, seal_shard

if TYPE_CHECKING:
    import datasets

    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig
    from llmrec.prompts import PromptConfig

CANDIDATES = pl.List(pl.Struct({"title": pl.String, "score": pl.Float64}))
RESOURCE_SETTINGS = (
    "batch_size",
    "vllm_kv_cache_gb",
    "vllm_eager",
    "vllm_lora",
    "tensor_parallel_size",
    "data_parallel_size",
)  # change speed or memory, not the titles


def chunk_folder(out: Path) -> Path:
    return out.with_name(out.name + ".chunks")


def generate_titles(
    generator: Generator,
    prompts: datasets.Dataset,
    out: str | Path,
    config: GenerateConfig,
    log: Callable[[str], None] = print,
    constraint: CatalogConstraint | None = None,
    lists: ListTitles | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Writes `out` (`session_id`, `locale`, `next_item_title` = the best candidate, `candidates`
    = [{title, score}] best first; input order) and returns it with the throughput of this run.
    The first two columns and the order make it a task 3 submission; `session_id` (the row of
    the session file) lets tasks 1 and 2 join the titles to their sessions.

    Each finished chunk of `config.chunk_size` prompts is written atomically to
    `<out>.chunks/`; chunks already there are kept, so rerunning an interrupted command only
    generates the missing ones. The folder goes once `out` is written.

    `generate.decoding=constrained` needs `constraint`: the catalogue's titles to search;
    `generate.decoding=score` needs `lists`: the titles of each session's listed products."""
    out = Path(out)
    rows = prompts.to_polars()
    folder = chunk_folder(out)
    if (config.decoding == "constrained") != (constraint is not None):
        raise ConfigError("a CatalogConstraint goes with generate.decoding=constrained, and only with it")
    if (config.decoding == "score") != (lists is not None):
        raise ConfigError("ListTitles go with generate.decoding=score, and only with it")
    io.claim_folder(folder, _settings(config, rows, generator.fingerprint, constraint, lists))
    size = config.chunk_size
    paths = [folder / f"chunk-{k:05d}.parquet" for k in range((rows.height + size - 1) // size)]
    missing = [k for k, path in enumerate(paths) if not path.exists()]
    if len(missing) < len(paths):
        log(f"resuming: {len(paths) - len(missing)} of {len(paths)} chunks already in {folder}")
    started, tokens_before, generated = time.perf_counter(), generator.generated_tokens, 0
    for k in track(missing, "generating titles (chunks)", total=len(missing)):
        chunk = rows.slice(k * size, size)
        if constraint:
            candidates = constraint.generate(generator, chunk, config.num_beams, config.num_candidates)
        elif lists:
            candidates = lists.generate(generator, chunk)
        else:
            candidates = generator.generate(chunk["prompt"].to_list())
        frame = chunk.select("session_id", pl.col("locale").cast(pl.String)).with_columns(
            pl.Series("candidates", [[{"title": t, "score": s} for t, s in c] for c in candidates], dtype=CANDIDATES)
        )
        io.write_parquet(frame, paths[k])
        generated += chunk.height
    seconds = time.perf_counter() - started
    tokens = generator.generated_tokens - tokens_before
    throughput = {
        "prompts": generated,
        "generated_tokens": tokens,
        "seconds": round(seconds, 2),
        "prompts_per_s": round(generated / seconds, 2) if generated else None,
        "tokens_per_s": round(tokens / seconds, 1) if generated else None,
    }
    if generated:
        log(
            f"generated {generated:,} prompts in {seconds:.1f} s: {throughput['prompts_per_s']} "
            f"prompts/s, {throughput['tokens_per_s']} tokens/s"
        )
    empty = pl.DataFrame(schema={"session_id": pl.Int64, "locale": pl.String, "candidates": CANDIDATES})
    chunks = pl.concat([pl.read_parquet(path) for path in paths]) if paths else empty
    titles = chunks.select(
        pl.col("session_id").cast(pl.Int64),
        pl.col("locale").cast(pl.String),
        pl.col("candidates").list.first().struct.field("title").alias("next_item_title"),
        "candidates",
    )
    io.write_parquet(titles, out)
    shutil.rmtree(folder, ignore_errors=True)
    return titles, throughput


def titles_for_tasks(
    dataset: AmazonM2,
    outputs: dict[int, Path],
    split: SplitConfig,
    prompt: PromptConfig,
    model: str,
    adapter: str | None,
    config: GenerateConfig,
    log: Callable[[str], None] = print,
    shard: Shard | None = None,
    lists: pl.DataFrame | None = None,
) -> dict[int, tuple[pl.DataFrame, dict]]:
    """Titles for the sessions of each task of `outputs` (task -> output file) from one engine,
    loaded once; each written and resumable like `generate_titles`. Returns task -> (titles,
    throughput). With `shard`, only that slice of each task's sessions, into its shard file
    (`llmrec merge` assembles them). `lists`: with `generate.decoding=score`, ranked lists of the
    task's sessions (a submission) whose top products' titles are scored."""
    from llmrec.data.split import load_task_split
    from llmrec.generate.backends import make_generator
    from llmrec.models.prepare import load_tokenizer, resolve_model
    from llmrec.prompts import task_prompts

    if (config.decoding == "score") != (lists is not None):
        raise ConfigError(
            "generate.decoding=score scores the products of ranked lists: give --lists"
            if lists is None
            else "--lists is read by generate.decoding=score only: set it, or drop --lists"
        )
    tokenizer = load_tokenizer(model)
    inputs = {}  # everything a task's titles need but the model, checked before the model loads
    for task, out in outputs.items():
        task_split = load_task_split(dataset, task, split)
        prompts = task_prompts(task_split, dataset.root, prompt, tokenizer)
        constraint, listed = None, None
        if config.decoding == "constrained":
            constraint = CatalogConstraint.for_split(
                task_split.sessions, task_split.catalog, tokenizer, config.exclude_history
            )
        if config.decoding == "score":
            listed = ListTitles.for_split(lists, task_split.sessions, task_split.catalog, config.num_candidates)
        inputs[task] = (out, prompts, constraint, listed)
    generator = make_generator(config, resolve_model(model), adapter)
    results = {}
    try:
        for task, (out, prompts, constraint, listed) in inputs.items():
            if shard is None:
                results[task] = generate_titles(generator, prompts, out, config, log, constraint, listed)
                continue
            start, end = shard.rows(len(prompts), config.chunk_size)
            part = shard.path(out)
            results[task] = generate_titles(
                generator, prompts.select(range(start, end)), part, config, log, constraint, listed
            )
            seal_shard(
                part,
                shard,
                len(prompts),
                config.chunk_size,
                run_digest(config, prompts.to_polars(), generator.fingerprint, constraint, listed),
            )
    finally:
        if hasattr(generator, "close"):
            generator.close()
    return results


def run_digest(
    config: GenerateConfig,
    rows: pl.DataFrame,
    model: str,
    constraint: CatalogConstraint | None = None,
    lists: ListTitles | None = None,
) -> str:
    """One digest of everything that decides a whole run's titles: shards of one run share it."""
    return io.json_digest(_settings(config, rows, model, constraint, lists))


def _settings(
    config: GenerateConfig,
    rows: pl.DataFrame,
    model: str,
    constraint: CatalogConstraint | None = None,
    lists: ListTitles | None = None,
) -> dict:
    """What decides the titles: chunks on disk are reused only for the same weights (`model`:
    their digest), the same sessions and prompts, the same decoding (and catalogue titles)."""
    settings = {k: v for k, v in to_dict(config).items() if k not in RESOURCE_SETTINGS}
    sessions = (
        rows.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String), "prompt")
        .write_ipc(None)
        .getvalue()
    )
    settings["sessions_sha256"] = hashlib.sha256(sessions).hexdigest()
    settings["model_sha256"] = model
    if constraint is not None:
        settings["catalogue_sha256"] = constraint.digest
    if lists is not None:
        settings["lists_sha256"] = lists.digest
    return settings
