"""`llmrec report RUN_DIR`: a demo run folder's results as one self-contained HTML page.

The page holds the per-locale metrics beside the baselines, task 3 BLEU by session length,
the finetuning curves and the candidate recall of each source; every plot is embedded as a
base64 PNG (the page opens anywhere, offline) and also saved in `RUN_DIR/report/`. A section
whose inputs are missing is replaced by a one-line note, so a partial run still gets a page.
The folder layout is the one `llmrec demo` writes (`llmrec.runs`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from html import escape
from io import BytesIO
from pathlib import Path

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llmrec import io
from llmrec.config import ConfigError
from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import TASK_LOCALES
from llmrec.data.split import load_task_split
from llmrec.metrics import corpus_bleu
from llmrec.runs import predictions_file, saved_split, summary_table

HEADLINE = {1: "mrr@100", 2: "mrr@100", 3: "bleu"}
HEADLINE_NAME = {"mrr@100": "MRR@100", "bleu": "BLEU"}
# (label, largest number of previous items in the bucket; None: no limit). Sessions have at least 2.
HISTORY_BUCKETS = (("2", 2), ("3", 3), ("4", 4), ("5-6", 6), ("7-10", 10), ("11+", None))
TRAINING_PANELS = {"valid_bleu": "validation BLEU", "lr": "learning rate"}  # plotted beside the losses when logged
RECALL_REPORTS = {"rerank": "reranking", "rerank-llm": "reranking + LLM titles"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
p.note { color: #777; font-style: italic; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    html: str  # the body, or a one-line note when its inputs are missing


def write_report(run_dir: str | Path) -> Path:
    """Writes `run_dir/report.html` and the plots as `run_dir/report/*.png`; returns the page's path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run}: run folder not found")
    plots = run / "report"
    sections = [
        data_section(run),
        metrics_section(run, plots),
        history_section(run, plots),
        training_section(run, plots),
        recall_section(run, plots),
    ]
    body = "\n".join(f"<h2>{escape(s.title)}</h2>\n{s.html}" for s in sections)
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>llmrec report: {escape(run.name)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<h1>llmrec run report: {escape(run.name)}</h1>\n"
        f"<p>Run folder <code>{escape(str(run))}</code>.</p>\n{body}\n</body></html>\n"
    )
    return io.write_text(page, run / "report.html")


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def data_section(run: Path) -> Section:
    path = run / "data_stats.csv"
    if not path.exists():
        return Section("Data", note(f"Left out: no {path.name} in the run folder."))
    return Section("Data", html_table(pl.read_csv(path)))


def metrics_rows(metrics: dict) -> pl.DataFrame:
    """metrics.json as rows: task, method, locale ("overall" or a locale), and the metric columns."""
    rows = []
    for key, result in metrics.items():
        task, method = key.split("/", 1)
        for locale, values in [("overall", result["overall"]), *result["per_locale"].items()]:
            rows.append({"task": int(task.removeprefix("task")), "method": method, "locale": locale, **values})
    return pl.from_dicts(rows, infer_schema_length=None)  # tasks 1-2 and task 3 rows have different metrics


def metrics_section(run: Path, plots: Path) -> Section:
    title = "Metrics per locale, beside the baselines"
    path = run / "metrics.json"
    if not path.exists():
        return Section(title, note(f"Left out: no {path.name} in the run folder."))
    rows = metrics_rows(json.loads(path.read_text(encoding="utf-8")))
    parts = []
    for task in sorted(rows["task"].unique().to_list()):
        part = rows.filter(pl.col("task") == task)
        metric = HEADLINE[task]
        locales = ["overall", *[loc for loc in TASK_LOCALES[task] if loc in part["locale"].to_list()]]
        methods = part["method"].unique(maintain_order=True).to_list()
        values = {m: [_value(part, m, loc, metric) for loc in locales] for m in methods}
        figure = bar_figure(locales, values, HEADLINE_NAME[metric], f"Task {task}: {HEADLINE_NAME[metric]} per locale")
        image = embed(figure, plots / f"task{task}-{metric.replace('@', '')}-per-locale.png", f"task {task} per locale")
        parts.append(f"<h3>Task {task}</h3>\n{image}")
        parts.append(html_table(summary_table(part, task)))
    return Section(title, "\n".join(parts))


def _value(part: pl.DataFrame, method: str, locale: str, metric: str) -> float:
    found = part.filter((pl.col("method") == method) & (pl.col("locale") == locale))[metric]
    return float(found[0]) if len(found) and found[0] is not None else float("nan")


def bleu_by_history(lengths: pl.Series, targets: pl.Series, predictions: dict[str, pl.Series]) -> pl.DataFrame:
    """Corpus BLEU of each method's titles within each bucket of session length (number of
    previous items): `bucket`, `sessions`, then one column per method; empty buckets left out."""
    frame = pl.DataFrame({"length": lengths, "target": targets.fill_null("")}).with_columns(
        **{method: titles.fill_null("") for method, titles in predictions.items()}
    )
    bucket = pl.lit(HISTORY_BUCKETS[-1][0])
    for label, largest in reversed(HISTORY_BUCKETS[:-1]):
        bucket = pl.when(pl.col("length") <= largest).then(pl.lit(label)).otherwise(bucket)
    grouped = (
        frame.with_columns(bucket.alias("bucket"))
        .group_by("bucket")
        .agg(pl.len().alias("sessions"), pl.all().exclude("length"))
    )
    order = {label: k for k, (label, _) in enumerate(HISTORY_BUCKETS)}
    rows = [
        {
            "bucket": row["bucket"],
            "sessions": row["sessions"],
            **{m: corpus_bleu(row[m], row["target"]) for m in predictions},
        }
        for row in grouped.iter_rows(named=True)
    ]
    return pl.DataFrame(rows).sort(pl.col("bucket").replace_strict(order))


def history_section(run: Path, plots: Path) -> Section:
    title = "Task 3 BLEU by session length"
    config_path, metrics_path = run / "config.yaml", run / "metrics.json"
    if not config_path.exists() or not metrics_path.exists():
        return Section(
            title,
            note(f"Left out: the run folder lacks {'config.yaml' if not config_path.exists() else 'metrics.json'}."),
        )
    try:
        data, split_config = saved_split(config_path)
    except ConfigError as error:
        return Section(title, note(f"Left out: config.yaml does not give the run's split ({error})."))
    if not data or not Path(data).is_dir():
        return Section(title, note(f"Left out: the run's data folder {data} is not here."))
    methods = [
        key.split("/", 1)[1] for key in json.loads(metrics_path.read_text(encoding="utf-8")) if key.startswith("task3/")
    ]
    split = load_task_split(AmazonM2(Path(data)), 3, split_config)
    if split.targets is None:
        return Section(title, note(f"Left out: the {split_config.name} split of {data} has no task 3 labels."))
    predictions, skipped = {}, []
    for method in methods:
        path = predictions_file(run, 3, method)
        titles = pl.read_parquet(path, columns=["next_item_title"])["next_item_title"] if path.exists() else None
        if titles is None or len(titles) != split.sessions.height:
            found_titles = (
                "no " + path.name if titles is None else f"{len(titles)} titles for {split.sessions.height} sessions"
            )
            skipped.append(f"{method} ({found_titles})")
        else:
            predictions[method] = titles
    if not predictions:
        return Section(title, note("Left out: no task 3 predictions in the run folder match the run's split."))
    table = bleu_by_history(split.sessions["prev_items"].list.len(), split.targets, predictions)
    labels = [f"{b}\n({n:,})" for b, n in table.select("bucket", "sessions").iter_rows()]
    figure = bar_figure(
        labels,
        {m: table[m].to_list() for m in predictions},
        "BLEU",
        "Task 3 BLEU by number of previous items (sessions)",
    )
    html = [embed(figure, plots / "task3-bleu-by-history.png", "task 3 BLEU by history length"), html_table(table)]
    html += [note(f"Not plotted: {', '.join(skipped)}.")] if skipped else []
    return Section(title, "\n".join(html))


def training_section(run: Path, plots: Path) -> Section:
    title = "LoRA finetuning"
    path = run / "task3" / "train_log.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return Section(title, note("Left out: no task3/train_log.jsonl in the run folder."))
    log = (
        pl.read_ndjson(path, infer_schema_length=None).unique("step", keep="last", maintain_order=True).sort("step")
    )  # a resumed run logs steps again
    panels = [("loss", "loss")] + [(c, TRAINING_PANELS[c]) for c in TRAINING_PANELS if c in log.columns]
    figure = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    for axes, (column, label) in zip(figure.subplots(1, len(panels), sharex=True, squeeze=False)[0], panels):
        if column == "loss":
            axes.plot(log["step"], log["loss"], label="train loss")
            if "valid_loss" in log.columns:
                valid = log.drop_nulls("valid_loss")
                axes.plot(valid["step"], valid["valid_loss"], "o-", label="validation loss")
            axes.legend()
        else:
            shown = log.drop_nulls(column)
            axes.plot(
                shown["step"],
                shown[column],
                "o-" if column == "valid_bleu" else "-",
                color="tab:green" if column == "valid_bleu" else "tab:gray",
            )
            if column == "lr":
                axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        axes.set_xlabel("optimizer step")
        axes.set_title(label)
        axes.grid(alpha=0.3)
    last = log.row(-1, named=True)
    facts = f"{last['step']} steps; last train loss {last['loss']:.4f}"
    facts += f"; {last['tokens_per_s']:.0f} training tokens/s" if last.get("tokens_per_s") is not None else ""
    return Section(title, f"{embed(figure, plots / 'task3-training.png', 'training curves')}\n<p>{escape(facts)}.</p>")


def recall_section(run: Path, plots: Path) -> Section:
    title = "Candidate recall per source"
    found = [(task, name, run / f"task{task}" / f"{name}.report.json") for task in (1, 2) for name in RECALL_REPORTS]
    found = [(task, name, path) for task, name, path in found if path.exists()]
    parts, missing = [], []
    for task, name, path in found:
        report = json.loads(path.read_text(encoding="utf-8"))
        key = "candidate_recall" if "candidate_recall" in report else "train_candidate_recall"
        recall = report.get(key)
        if not recall or not recall.get("at_k"):
            missing.append(f"task{task}/{path.name}")
            continue
        heading = f"Task {task}, {RECALL_REPORTS[name]}" + (
            "" if key == "candidate_recall" else " (the reranker's training sessions)"
        )
        figure = recall_figure(recall, f"{heading}: {recall['sessions']:,} sessions")
        image = embed(figure, plots / f"task{task}-{name}-recall.png", heading)
        parts.append(f"<h3>{escape(heading)}</h3>\n{image}\n{html_table(recall_table(recall))}")
    if not found:
        return Section(title, note("Left out: no task1/ or task2/ rerank report (*.report.json) in the run folder."))
    if missing:
        parts.append(note(f"No candidate recall in {', '.join(missing)}."))
    return Section(title, "\n".join(parts))


def recall_table(recall: dict) -> pl.DataFrame:
    """One row per source: recall within its first K candidates, then over all of them; the
    union of every source ("all") and of all but the grounded titles close the table."""
    cutoffs = sorted({k for cuts in recall["at_k"].values() for k in cuts}, key=int)
    rows = [
        {"source": s, **{f"@{k}": cuts.get(k) for k in cutoffs}, "all candidates": recall.get(s)}
        for s, cuts in recall["at_k"].items()
    ]
    rows += [{"source": s, "all candidates": recall[s]} for s in ("all", "all_but_grounded") if s in recall]
    return pl.DataFrame(rows)


def recall_figure(recall: dict, title: str) -> Figure:
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    for source, cuts in recall["at_k"].items():
        ks = sorted(cuts, key=int)
        axes.plot([int(k) for k in ks], [cuts[k] for k in ks], "o-", label=source)
    if "all" in recall:
        axes.axhline(recall["all"], color="black", linestyle="--", linewidth=1, label="all sources together")
    axes.set_xscale("log")
    cutoffs = sorted({int(k) for cuts in recall["at_k"].values() for k in cuts})
    axes.set_xticks(cutoffs, [str(k) for k in cutoffs])
    axes.minorticks_off()
    axes.set_xlabel("K: the source's first K candidates")
    axes.set_ylabel("recall (true next item found)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def bar_figure(groups: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> Figure:
    """Grouped bars: one group per label, one bar per series, the value written above it."""
    figure = Figure(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(series)) ** 0.5 + 2), 4))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        positions = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = axes.bar(positions, values, width, label=name)
        axes.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.margins(y=0.2)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def embed(figure: Figure, path: Path, alt: str) -> str:
    """The figure as an <img> holding its PNG, which is also written to `path`."""
    FigureCanvasAgg(figure)
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    png = buffer.getvalue()
    with io.atomic_path(path) as temporary:
        temporary.write_bytes(png)
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def html_table(frame: pl.DataFrame) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        return (
            f"{value:.4f}"
            if isinstance(value, float)
            else escape(f"{value:,}" if isinstance(value, int) else str(value))
        )

    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
