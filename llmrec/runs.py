"""Run folders: what each command writes beside its output, and how later commands and the
report read it back.

Beside an output `OUT.parquet` a run writes its resolved config (`OUT.config.yaml`), its
report with metrics and throughput (`OUT.report.json`) and its console log (`OUT.log`); a
demo run folder also holds each method's predictions (`predictions_file`) and `metrics.json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from llmrec import io
from llmrec.config import load_config, save_config, to_dict
from llmrec.data.split import SplitConfig


def stem(output: str | Path) -> str:
    """`runs/pred.parquet` -> `pred`: the name every artefact of that output starts with; a
    shard's own for a shard (`pred.shard-1-of-4.parquet` -> `pred.shard-1-of-4`), so that shards
    running at once keep their configs, reports and logs apart."""
    return re.match(r"[^.]*(\.shard-\d+-of-\d+(?=\.))?", Path(output).name)[0]


def config_path_for(output: str | Path) -> Path:
    """Where the resolved config of an output file lives: `pred.parquet` -> `pred.config.yaml`."""
    return Path(output).with_name(f"{stem(output)}.config.yaml")


def finish_run(output: str | Path, config, report: dict, log_text: str) -> None:
    """Writes the resolved config, the report (None values left out) and the log beside `output`."""
    output = Path(output)
    save_config(config, config_path_for(output))
    io.write_json({k: v for k, v in report.items() if v is not None}, output.with_name(f"{stem(output)}.report.json"))
    io.write_text(log_text, output.with_name(f"{stem(output)}.log"))


def saved_split(config_file: str | Path, **changes) -> tuple[str | None, SplitConfig]:
    """The data folder and split settings of any command's saved config (only those keys are
    read), with `changes` (e.g. name="test") applied on top."""
    saved = io.read_yaml(config_file)
    split = {k: v for k, v in (saved.get("split") or {}).items() if k not in changes}
    overrides = [f"{k}={json.dumps(v)}" for k, v in {**split, **changes}.items()]
    return saved.get("data"), load_config(SplitConfig, None, overrides)


def trained_settings(adapter: str | Path) -> dict[str, object]:
    """What an adapter was trained with, from the config.yaml finetuning writes beside
    `adapter/`: `model`, `prompt.*` and the split's `valid_fraction` and `seed` (empty without
    one). A prompt laid out unlike the training prompts gives worse titles, and another split
    seed puts the adapter's training sessions among the sessions scored."""
    path = Path(adapter).parent / "config.yaml"
    if not path.exists():
        return {}
    trained = io.read_yaml(path)
    settings = {f"prompt.{key}": value for key, value in (trained.get("prompt") or {}).items()}
    settings |= {
        f"split.{key}": trained["split"][key]
        for key in ("valid_fraction", "seed")
        if key in (trained.get("split") or {})
    }
    return settings | ({"model": trained["model"]} if "model" in trained else {})


def overrides_of(settings: dict[str, object]) -> list[str]:
    """`key=value` overrides (values as JSON, which YAML reads back) of flat dotted settings."""
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


def departures(settings: dict[str, object], config) -> list[str]:
    """The dotted settings whose value in `config` (a config dataclass) differs:
    `key: trained X, now Y`."""
    found = []
    for key, value in settings.items():
        current = to_dict(config)
        for part in key.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
            found.append(f"{key}: trained {value!r}, now {current!r}")
    return found


def titles_departures(titles: str | Path, split: SplitConfig) -> list[str]:
    """How the split settings `titles` were generated with (its saved config; none: nothing
    to compare) differ from `split` in what decides which sessions are held out."""
    saved = config_path_for(titles)
    if not saved.exists():
        return []
    generated = saved_split(saved)[1]
    return departures({key: getattr(generated, key) for key in ("valid_fraction", "seed")}, split)


def predictions_file(run: str | Path, task: int, method: str) -> Path:
    """Where a run folder keeps a method's predictions: `task3/LoRA-co-visitation-titles.parquet`."""
    return Path(run) / f"task{task}" / (re.sub(r"[^0-9A-Za-z.]+", "-", method).strip("-") + ".parquet")


def summary_table(results: pl.DataFrame, task: int) -> pl.DataFrame:
    """One row per method (results: task, method, locale, metrics): overall metrics, then the
    headline metric per locale."""
    part = results.filter(pl.col("task") == task)
    headline = "bleu" if task == 3 else "mrr@100"
    metrics = ["bleu"] if task == 3 else ["mrr@100", "recall@100", "ndcg@100"]
    overall = part.filter(pl.col("locale") == "overall").select("method", *metrics, "sessions")
    per_locale = part.filter(pl.col("locale") != "overall").pivot("locale", index="method", values=headline)
    return overall.join(per_locale, on="method", how="left", maintain_order="left")
