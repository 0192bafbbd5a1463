"""`llmrec recommend`: sessions -> candidates -> features -> reranked 100-item lists.

The reranker learns from sessions whose next item is known but that no candidate source has
seen the answer of: the held-out validation sessions. On `--split valid` those are also the
sessions scored, so they are cross-fitted: each fold is ranked by a model trained on the other
folds. On `--split test` the model learns on the validation split (sources fitted on 90% of
train) and ranks the test sessions (sources fitted on all of train).

Candidates and features are computed in chunks of sessions, written to `<out>.work/` as they
finish; a rerun with the same settings resumes from them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from scipy import sparse

from llmrec import io
from llmrec.baselines.common import SplitEvents, finalize, item_popularity, numbered
from llmrec.baselines.popularity import PopularityConfig
from llmrec.config import ConfigError, to_dict
from llmrec.data.dataset import AmazonM2
from llmrec.data.item_index import ItemIndex
from llmrec.data.schema import TOP_K
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split
from llmrec.progress import progress_bar, track
from llmrec.rank.candidates import MISSING_RANK, CandidateConfig, CandidateSources
from llmrec.rank.features import FeatureContext, add_features
from llmrec.rank.reranker import LightGBMRanker, RerankerConfig, fold_of, fusion_scores, training_rows
from llmrec.rank.text import TextConfig, TextSignals, check_titles
from llmrec.rank.titles import TitleChoiceConfig
from llmrec.runs import stem
from llmrec.shards import Shard, computed_once, seal_shard


@dataclass
class RecommendConfig:
    task: int = 1
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    title_choice: TitleChoiceConfig = field(
        default_factory=TitleChoiceConfig
    )  # task 3: titles of ranked products, by MBR
    chunk_size: int = 10_000  # sessions per chunk: bounds memory, drives progress and resumption
    workers: int = 2  # chunks computed at once, in threads (the heavy steps release the GIL); same lists
    k: int = TOP_K
    keep_work: bool = False  # keep <out>.work/ (features per chunk) after success


@dataclass(frozen=True)
class Grounding:
    """Generated titles of a split's sessions, grounded to products chunk by chunk."""

    titles: pl.DataFrame  # session_id, locale, candidates, ...
    text: TextSignals
    popular: pl.DataFrame  # locale, id, count: grounding's popularity re-weighting


@dataclass
class SplitState:
    """One split with everything fitted on it: sources, feature context, labels."""

    split: TaskSplit
    index: ItemIndex
    queries: pl.DataFrame  # query, locale, prev_items, session_id, target (item code or null)
    sources: CandidateSources
    context: FeatureContext
    popular: pl.DataFrame
    grounding: Grounding | None = None

    def features(self, chunk: pl.DataFrame) -> pl.DataFrame:
        grounded = self.grounded(chunk) if self.grounding is not None else None
        candidates = self.sources.generate(chunk, grounded)
        frame = add_features(candidates, chunk, self.context, grounded)
        labels = chunk.select("query", pl.col("target").alias("item"), pl.lit(1, dtype=pl.Int8).alias("label"))
        frame = frame.join(labels.drop_nulls("item"), on=["query", "item"], how="left").with_columns(
            pl.col("label").fill_null(0)
        )
        return frame

    def grounded(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """(query, item, ground_score, similarity, retrieval_rank, hits, title_score): products grounded from
        the titles of the chunk's sessions, leaving out the items a list may not hold (the
        session's own, unless history stays rankable). Grounded per chunk, a session's products
        do not depend on which other sessions a process ranks."""
        sessions = chunk.select("session_id", "prev_items", "locale")
        if not self.split.exclude_history:
            sessions = sessions.with_columns(pl.col("prev_items").list.head(0))
        titles = self.grounding.titles.join(chunk.select("session_id"), on="session_id", how="semi")
        found = self.grounding.text.ground(titles, sessions, self.grounding.popular)
        found = found.join(chunk.select("query", "session_id"), on="session_id").drop("session_id")
        found = found.with_columns(pl.col("locale").cast(self.index.items["locale"].dtype))
        return self.index.encode(found, "id").drop_nulls("item")


def prepare_split(
    split: TaskSplit,
    config: RecommendConfig,
    titles: pl.DataFrame | None,
    text: TextSignals | None,
    log: Callable[[str], None],
    fitted: Path | None = None,
) -> SplitState:
    """Fit every candidate source and the feature context on `split`; with `fitted`, the
    sources' tables are read from that folder (`CandidateSources.save`) instead."""
    started = time.perf_counter()
    index = ItemIndex.from_split(split)
    split_events = SplitEvents.of(split, index)
    popular = item_popularity(
        split, index, config.popularity.next_item_weight, config.popularity.prev_item_weight, split_events
    )
    queries = numbered(split.sessions, index).with_columns(split.sessions["session_id"].cast(pl.Int64))
    if split.targets is not None and split.task in (1, 2):
        targets = index.encode(queries.select("query", "locale", pl.Series("id", split.targets)), "id")
        queries = queries.join(targets.select("query", pl.col("item").alias("target")), on="query", how="left")
    else:
        queries = queries.with_columns(pl.lit(None, dtype=pl.UInt32).alias("target"))
    grounding = None
    if titles is not None and text is not None and config.candidates.grounded_top:
        titles = titles.join(queries.select("session_id"), on="session_id", how="semi")
        grounding = Grounding(titles, text, popular_ids(popular, index))
    neighbors = text.neighbors if text is not None else None
    sources = CandidateSources(
        config.candidates, split, index, popular, neighbors, grounding is not None, fitted, split_events
    )
    similarity = text.similarity_by_code(index) if text is not None else None
    context = FeatureContext.build(
        split,
        index,
        sources.covisit[0].matrix if sources.covisit else sparse.csr_matrix((0, 0)),
        similarity,
        split_events,
    )
    log(
        f"{split.split} split, task {split.task}: {queries.height:,} sessions, sources "
        f"{', '.join(sources.names)} {'read from ' + str(fitted) if fitted else 'fitted'} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return SplitState(split, index, queries, sources, context, popular, grounding)


def popular_ids(popular: pl.DataFrame, index: ItemIndex) -> pl.DataFrame:
    """(locale, id, count) for grounding's popularity re-weighting."""
    return popular.with_columns(index.decode(popular).alias("id")).select(
        pl.col("locale").cast(pl.String), "id", pl.col("score").alias("count")
    )


@dataclass
class RankingData:
    """What `recommend` reads, loaded once by the caller: the sessions to rank, the validation
    split its reranker learns from when ranking the test split, and further labelled sessions
    every fold learns from (the held-out sessions past `split.limit`, other tasks' validation
    sessions for `reranker.transfer_from`)."""

    target: TaskSplit
    learn: TaskSplit | None = None
    extra: dict[str, TaskSplit] = field(default_factory=dict)  # name -> labelled split
    digest: str = ""  # the data folder's content digest: a rerun resumes only from chunks of the same data


def ranking_data(dataset: AmazonM2, config: RecommendConfig) -> RankingData:
    """The splits `recommend` needs under `config`, from one dataset."""
    if config.task not in (1, 2):
        raise ConfigError(f"recommend ranks products for tasks 1 and 2, not task {config.task}")
    target = load_task_split(dataset, config.task, config.split)
    learn = None
    budget = config.reranker.max_train_sessions
    if config.reranker.kind == "lightgbm" and config.split.name == "test":
        limit = min(config.split.limit or budget, budget)
        learn = load_task_split(dataset, config.task, dataclasses.replace(config.split, name="valid", limit=limit))
    extra = {}
    if config.reranker.kind == "lightgbm":
        if config.split.name == "valid" and config.split.limit and budget > config.split.limit:
            offset, limit = config.split.offset + config.split.limit, budget - config.split.limit
            extra["rest"] = load_task_split(
                dataset, config.task, dataclasses.replace(config.split, offset=offset, limit=limit)
            )
        for task in config.reranker.transfer_from:
            if task not in (1, 2):
                raise ConfigError(f"reranker.transfer_from: {task} is not a ranking task (1 or 2)")
            if task != config.task:
                transfer = dataclasses.replace(config.split, name="valid", offset=0, limit=budget)
                extra[f"transfer-{task}"] = load_task_split(dataset, task, transfer)
    extra = {name: split for name, split in extra.items() if split.sessions.height}
    return RankingData(target, learn, extra, io.folder_digest(dataset.root))


@dataclass
class RankReport:
    """What a `recommend` run measured: candidate recall per source (of the ranked sessions
    when labelled, and of the sessions the reranker learned from), the reranker's training
    summary (one per fold when cross-fitted) and timings."""

    task: int
    split: str
    candidate_recall: dict | None = None
    train_candidate_recall: dict | None = None
    extra_training: dict[str, dict] = field(default_factory=dict)  # name -> candidate recall of those sessions
    reranker: dict | list[dict] | None = None
    seconds_training: float = 0.0
    seconds_ranking: float = 0.0
    seconds: float = 0.0
    sessions_per_s: float = 0.0

    def to_dict(self) -> dict:
        report = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "extra_training"}
        if self.extra_training:
            report["extra_training"] = {
                name: {"train_candidate_recall": recall} for name, recall in self.extra_training.items()
            }
        return report


def check_settings(config: RecommendConfig, titles: pl.DataFrame | None, text: TextSignals | None) -> None:
    """Settings that would be silently ignored are errors: titles that cannot be grounded (text
    off, or no grounded candidates kept), fusion weights of sources that do not exist."""
    if titles is not None and text is None:
        raise ConfigError(
            "--titles given but there are no text signals to ground them with (text.enabled=false, or a catalog "
            "without titles): drop --titles or enable text"
        )
    if titles is not None and not config.candidates.grounded_top:
        raise ConfigError(
            "--titles given but candidates.grounded_top=0 keeps none of their products: drop --titles or set it"
        )
    unknown = [name for name in config.reranker.fusion_weights if name not in config.candidates.source_names]
    if unknown:
        raise ConfigError(
            f"reranker.fusion_weights: '{unknown[0]}' is not a candidate source "
            f"({', '.join(config.candidates.source_names)})"
        )


def check_title_settings(config: RecommendConfig) -> None:
    """`recommend --task 3` chooses among co-visitation products' titles: candidate, reranker and
    text settings would be ignored, so setting them is an error."""
    defaults = RecommendConfig()
    for name in ("candidates", "reranker", "text"):
        if getattr(config, name) != getattr(defaults, name):
            raise ConfigError(
                f"recommend --task 3 does not use the {name} settings (it picks among co-visitation products' titles: "
                "see title_choice.*); remove them from the config and the command line"
            )


def recommend(
    config: RecommendConfig,
    data: RankingData,
    out: str | Path,
    titles: pl.DataFrame | None = None,
    valid_titles: pl.DataFrame | None = None,
    text: TextSignals | None = None,
    log: Callable[[str], None] = print,
) -> tuple[pl.DataFrame, RankReport]:
    """Writes the submission `out` (locale, next_item_prediction; session order) and returns
    it with a report.

    `titles` are generated titles for the sessions of `data.target` (session_id, locale,
    candidates), `valid_titles` those of `data.learn` when ranking the test split; `text`
    gives text neighbours, text similarity and grounding (None: ids only)."""
    out = Path(out)
    started = time.perf_counter()
    _check_inputs(config, data, titles, valid_titles, text)
    work = out.with_name(out.name + ".work")
    io.claim_folder(work, _settings(config, titles, valid_titles) | {"data_sha256": data.digest})
    report = RankReport(task=config.task, split=config.split.name)
    model, extra = _learned(config, data, valid_titles, text, work, report, log)
    report.seconds_training = round(time.perf_counter() - started, 1)
    state = prepare_split(data.target, config, titles, text, log)
    if config.reranker.kind == "lightgbm" and config.split.name == "valid":
        lists, report.candidate_recall, report.reranker = _cross_fitted(state, config, work / "valid", extra, log)
    else:
        lists, report.candidate_recall = _ranked(state, config, model, work / "test")
    io.write_parquet(lists, out)
    if model is not None:
        model.save(out.with_name(f"{stem(out)}.lgb.txt"))
    return lists, _finished(report, started, lists.height, work, config)


def recommend_shard(
    config: RecommendConfig,
    data: RankingData,
    out: str | Path,
    shard: Shard,
    titles: pl.DataFrame | None = None,
    valid_titles: pl.DataFrame | None = None,
    text: TextSignals | None = None,
    log: Callable[[str], None] = print,
) -> tuple[pl.DataFrame, RankReport]:
    """Shard I of N of `recommend`'s lists, written to `<stem>.shard-I-of-N.parquet` for
    `llmrec merge` to assemble into `out`. What every shard needs, the reranker and the sources
    fitted on the ranked split, is computed once by the first shard to need it and shared as
    files (`<stem>.fitted/`); each shard then ranks its own chunks of sessions exactly as one
    process ranks them."""
    out = Path(out)
    started = time.perf_counter()
    if config.reranker.kind == "lightgbm" and config.split.name == "valid":
        raise ConfigError(
            "--shard: on --split valid the reranker is cross-fitted on every scored session, which no shard "
            "holds alone; shard --split test, or use reranker.kind=fusion"
        )
    _check_inputs(config, data, titles, valid_titles, text)
    settings = _settings(config, titles, valid_titles) | {"data_sha256": data.digest}
    learned_keys = ("train_candidate_recall", "extra_training", "reranker")

    def fit(folder: Path) -> None:
        learned = RankReport(task=config.task, split=config.split.name)
        model, _ = _learned(config, data, valid_titles, text, folder / "work", learned, log)
        shutil.rmtree(folder / "work", ignore_errors=True)
        if model is not None:
            model.save(folder / "reranker.lgb.txt")
        prepare_split(data.target, config, None, text, log).sources.save(folder / "sources")
        io.write_json({key: getattr(learned, key) for key in learned_keys}, folder / "learned.json")

    shared = _settings(config, None, valid_titles) | {"data_sha256": data.digest}  # the fit does not read titles
    fitted = computed_once(out.with_name(f"{stem(out)}.fitted"), shared, fit, log)
    report = RankReport(task=config.task, split=config.split.name)
    for key, value in json.loads((fitted / "learned.json").read_text(encoding="utf-8")).items():
        setattr(report, key, value)
    model_file = fitted / "reranker.lgb.txt"
    model = LightGBMRanker.load(model_file, config.reranker) if model_file.exists() else None
    report.seconds_training = round(time.perf_counter() - started, 1)
    state = prepare_split(data.target, config, titles, text, log, fitted / "sources")
    size, total = config.chunk_size, state.queries.height
    start, end = shard.rows(total, size)
    part = shard.path(out)
    work = part.with_name(part.name + ".work")
    io.claim_folder(work, settings)
    lists, report.candidate_recall = _ranked(state, config, model, work, range(start // size, -(-end // size)))
    io.write_parquet(lists, part)
    seal_shard(part, shard, total, size, io.json_digest(settings))
    return lists, _finished(report, started, lists.height, work, config)


def _check_inputs(
    config: RecommendConfig,
    data: RankingData,
    titles: pl.DataFrame | None,
    valid_titles: pl.DataFrame | None,
    text: TextSignals | None,
) -> None:
    check_settings(config, titles if titles is not None else valid_titles, text)
    if titles is not None:
        check_titles(titles, data.target, "--titles")
    if data.learn is not None:
        if valid_titles is not None:
            check_titles(valid_titles, data.learn, "--valid-titles", allow_extra=True)
        elif titles is not None and config.candidates.grounded_top:
            raise ConfigError(
                "--split test with --titles needs --valid-titles too: the reranker learns from the validation "
                "sessions' grounded titles"
            )


def _learned(
    config: RecommendConfig,
    data: RankingData,
    valid_titles: pl.DataFrame | None,
    text: TextSignals | None,
    work: Path,
    report: RankReport,
    log: Callable[[str], None],
) -> tuple[LightGBMRanker | None, pl.DataFrame | None]:
    """What the reranker learns besides the ranked sessions: the extra labelled splits'
    training rows, and when ranking the test split, the model trained on the validation split
    (and those rows). Fills the report's training fields."""
    extra = None
    if config.reranker.kind == "lightgbm" and data.extra:
        extra, report.extra_training = _extra_training(data.extra, config, text, work, log)
    model = None
    if data.learn is not None:
        state = prepare_split(data.learn, config, valid_titles, text, log)
        train, report.train_candidate_recall = _training_rows(state, config, work / "train")
        model = LightGBMRanker(config.reranker).fit(_with_extra(train, extra))
        report.reranker = model.report
    return model, extra


def _finished(report: RankReport, started: float, sessions: int, work: Path, config: RecommendConfig) -> RankReport:
    """The report with its timings, once the run's work folder is removed (unless kept)."""
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = round(time.perf_counter() - started, 1)
    report.sessions_per_s = round(sessions / max(report.seconds, 1e-9), 1)
    report.seconds_ranking = round(report.seconds - report.seconds_training, 1)
    return report


def _settings(config: RecommendConfig, titles, valid_titles) -> dict:
    settings = to_dict(config)
    settings.pop("keep_work")
    settings.pop("chunk_size")  # chunks are keyed by their size below
    settings.pop("workers")
    for name, frame in (("titles", titles), ("valid_titles", valid_titles)):
        digest = (
            None
            if frame is None
            else hashlib.sha256(frame.select("session_id", "candidates").write_ipc(None).getvalue()).hexdigest()
        )
        settings[f"{name}_sha256"] = digest
    return settings


def _chunks(
    state: SplitState,
    config: RecommendConfig,
    folder: Path,
    label: str,
    compute: Callable[[pl.DataFrame], pl.DataFrame],
    chunks: range | None = None,
) -> list[Path]:
    """Each chunk's frame from `compute` (every chunk of the split, or `chunks`), written once to
    `folder`; existing chunks are reused."""
    size = config.chunk_size
    chunks = range(-(-state.queries.height // size)) if chunks is None else chunks
    paths = {chunk: _chunk_path(config, folder, chunk) for chunk in chunks}
    todo = [chunk for chunk, path in paths.items() if not path.exists()]

    def write(chunk: int) -> None:
        io.write_parquet(compute(state.queries.slice(chunk * size, size)), paths[chunk])

    if config.workers <= 1:
        for chunk in track(todo, label, total=len(todo)):
            write(chunk)
        return list(paths.values())
    waiting = iter(todo)
    with ThreadPoolExecutor(config.workers) as pool, progress_bar(len(todo), label) as advance:
        running = {pool.submit(write, chunk) for chunk in islice(waiting, config.workers)}
        while running:  # a chunk starts only when another ends: after an error or interrupt, none does
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                advance()
                running |= {pool.submit(write, chunk) for chunk in islice(waiting, 1)}
    return list(paths.values())


def _scoring_threads(config: RecommendConfig) -> int:
    """LightGBM threads per chunk when ranking: `reranker.threads` when set, else the cores
    shared out among the chunks computed at once (each worker predicting on every core
    oversubscribes them: 926 against 1,099 sessions/s at full size on 2 cores, see README)."""
    if config.reranker.threads:
        return config.reranker.threads
    return max(1, len(os.sched_getaffinity(0)) // max(1, config.workers))


def _chunk_path(config: RecommendConfig, folder: Path, chunk: int) -> Path:
    return folder / f"chunk-{config.chunk_size}-{chunk:05d}.parquet"


def _training_rows(state: SplitState, config: RecommendConfig, folder: Path) -> tuple[pl.DataFrame, dict]:
    """Sampled training rows of every labelled session of `state`, and its candidate recall."""
    recall = _Recall(state.sources.names)

    def compute(chunk: pl.DataFrame) -> pl.DataFrame:
        return training_rows(state.features(chunk), config.reranker)

    paths = _chunks(state, config, folder, "reranker training features", compute)
    rows = pl.concat([pl.read_parquet(p) for p in paths])
    recall.add(rows, state.queries)
    return rows, recall.result()


def _extra_training(
    extra: dict[str, TaskSplit],
    config: RecommendConfig,
    text: TextSignals | None,
    work: Path,
    log: Callable[[str], None],
) -> tuple[pl.DataFrame, dict[str, dict]]:
    """Training rows of the extra labelled splits, in fold -1 so every fold learns from them,
    with their candidate recall. Their queries are offset past the task's own. Sources they
    lack (grounded titles: generated only for the scored sessions) stay null, which LightGBM
    treats as unknown rather than as "not proposed"."""
    parts, recalls = [], {}
    for number, (name, split) in enumerate(extra.items(), start=1):
        state = prepare_split(split, dataclasses.replace(config, task=split.task), None, text, log)
        rows, recalls[name] = _training_rows(state, config, work / name)
        offset = (pl.col("query").cast(pl.UInt64) + number * 10**8).alias("query")
        parts.append(rows.with_columns(offset, pl.lit(-1, dtype=pl.Int8).alias("fold")))
    return pl.concat(parts, how="diagonal_relaxed"), recalls


def _with_extra(train: pl.DataFrame, extra: pl.DataFrame | None) -> pl.DataFrame:
    """`train` plus the extra splits' rows (same columns, query order)."""
    if extra is None:
        return train
    merged = pl.concat([train.with_columns(pl.col("query").cast(pl.UInt64)), extra], how="diagonal_relaxed")
    return merged.select(train.columns).sort("query", "item")


def _cross_fitted(
    state: SplitState, config: RecommendConfig, folder: Path, extra: pl.DataFrame | None, log: Callable[[str], None]
) -> tuple[pl.DataFrame, dict, list[dict]]:
    """Validation sessions ranked fold by fold, each by a model trained on the other folds:
    the lists, the candidate recall and each fold's training summary."""
    folds = config.reranker.folds
    if folds < 2:
        raise ConfigError(
            "reranker.folds must be at least 2 on the validation split (a model never ranks the "
            "sessions it learned from)"
        )
    folds_frame = state.queries.select(
        "query", pl.Series("fold", fold_of(state.queries["session_id"].to_numpy(), folds, config.reranker.seed))
    )
    paths = _chunks(
        state,
        config,
        folder,
        "candidates and features",
        lambda chunk: state.features(chunk).join(folds_frame, on="query"),
    )
    recall = _Recall(state.sources.names)
    train = []
    for chunk, path in enumerate(paths):
        frame = pl.read_parquet(path)
        recall.add(frame, state.queries.slice(chunk * config.chunk_size, config.chunk_size))
        train.append(training_rows(frame, config.reranker))
    train = _with_extra(pl.concat(train), extra)
    models = []
    for fold in range(folds):
        log(f"training the reranker for fold {fold + 1} of {folds}")
        models.append(LightGBMRanker(config.reranker).fit(train.filter(pl.col("fold") != fold)))
    lists = []
    for path, chunk in zip(paths, track(range(len(paths)), "ranking", total=len(paths))):
        frame = pl.read_parquet(path)
        scores = np.zeros(frame.height)
        for fold, model in enumerate(models):
            rows = (frame["fold"] == fold).to_numpy()
            if rows.any():
                scores[rows] = model.score(frame.filter(pl.Series(rows)))
        lists.append(
            _top_k(state, frame.select("query", "item").with_columns(pl.Series("score", scores)), chunk, config)
        )
    return pl.concat(lists), recall.result(), [model.report for model in models]


def _ranked(
    state: SplitState,
    config: RecommendConfig,
    model: LightGBMRanker | None,
    folder: Path,
    chunks: range | None = None,
) -> tuple[pl.DataFrame, dict | None]:
    """Every chunk (or `chunks`) ranked by `model` (or fused without one), and the candidate
    recall when the sessions are labelled; ranked lists are the saved chunks. Each chunk's true
    items' source ranks are saved beside it, so a resumed run reports the recall of every chunk."""
    labelled = state.queries["target"].null_count() < state.queries.height
    positives = lambda path: path.with_name(path.name.replace("chunk-", "positives-", 1))  # noqa: E731

    def compute(queries: pl.DataFrame) -> pl.DataFrame:
        frame = state.features(queries)
        chunk = int(queries["query"][0]) // config.chunk_size
        if labelled:
            ranks = [f"r_{name}" for name in state.sources.names]
            io.write_parquet(
                frame.filter(pl.col("label") == 1).select("label", *ranks),
                positives(_chunk_path(config, folder, chunk)),
            )
        scores = (
            model.score(frame, _scoring_threads(config)) if model is not None else fusion_scores(frame, config.reranker)
        )
        ranked = _top_k(state, frame.select("query", "item").with_columns(pl.Series("score", scores)), chunk, config)
        return ranked.with_columns(pl.lit(chunk).alias("chunk"))

    paths = _chunks(state, config, folder, "candidates, features, ranking", compute, chunks)
    if not paths:  # a shard past the last chunk (more shards than chunks)
        return pl.DataFrame(schema={"locale": pl.String, "next_item_prediction": pl.List(pl.String)}), None
    lists = pl.concat([pl.read_parquet(p) for p in paths])
    if not labelled:
        return lists.drop("chunk"), None
    recall = _Recall(state.sources.names)
    for path, chunk in zip(paths, lists["chunk"].unique(maintain_order=True).to_list()):
        queries = state.queries.slice(chunk * config.chunk_size, config.chunk_size)
        recall.add(pl.read_parquet(positives(path)), queries)
    return lists.drop("chunk"), recall.result()


def _top_k(state: SplitState, scored: pl.DataFrame, chunk: int, config: RecommendConfig) -> pl.DataFrame:
    queries = state.queries.slice(chunk * config.chunk_size, config.chunk_size)
    return finalize(queries, state.index, scored, state.popular, config.k, state.split.exclude_history)


class _Recall:
    """How often each source, all of them, and all but the grounded titles hold the true item;
    per source also within its first K candidates (recall@K curves for reports)."""

    CUTOFFS = (1, 5, 10, 20, 50)

    def __init__(self, sources: list[str]):
        self.sources = sources
        self.hits = {name: 0 for name in [*sources, "all", "all_but_grounded"]}
        self.at = {name: {k: 0 for k in self.CUTOFFS} for name in sources}
        self.sessions = 0

    def add(self, frame: pl.DataFrame, queries: pl.DataFrame) -> None:
        self.sessions += queries["target"].is_not_null().sum()
        positives = frame.filter(pl.col("label") == 1)
        for name in self.sources:
            ranks = positives[f"r_{name}"]
            self.hits[name] += int((ranks < MISSING_RANK).sum())
            for k in self.CUTOFFS:
                self.at[name][k] += int((ranks < k).sum())
        self.hits["all"] += positives.height
        others = [pl.col(f"r_{n}") < MISSING_RANK for n in self.sources if n != "grounded"]
        self.hits["all_but_grounded"] += positives.filter(pl.any_horizontal(others)).height if others else 0

    def result(self) -> dict:
        share = lambda hits: round(hits / max(1, self.sessions), 4)  # noqa: E731
        return {name: share(hits) for name, hits in self.hits.items()} | {
            "sessions": int(self.sessions),
            "at_k": {name: {str(k): share(h) for k, h in cutoffs.items()} for name, cutoffs in self.at.items()},
        }
