"""Run reports: a fake demo run folder (metrics, task 3 predictions on the tiny data's
validation split, a training log, a rerank report) becomes one HTML page with embedded PNGs;
missing inputs become notes; a plotted BLEU equals a direct corpus BLEU."""

from __future__ import annotations

import base64
import json
import re
import shutil
from io import BytesIO
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from llmrec import io
from llmrec.config import save_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import load_task_split, titles_of
from llmrec.demo import DemoConfig
from llmrec.errors import ConfigError
from llmrec.evaluate import evaluate
from llmrec.metrics import corpus_bleu
from llmrec.report import bleu_by_history, write_report
from llmrec.runs import predictions_file

LLM = (
    "LoRA + tiny-llm"  # a method name with spaces and a plus: its file is LoRA-tiny-llm.parquet, as the demo writes it
)
SECTIONS = (
    "Data",
    "Metrics per locale, beside the baselines",
    "Task 3 BLEU by session length",
    "LoRA finetuning",
    "Candidate recall per source",
)
PNG = b"\x89PNG\r\n\x1a\n"


def ranking_result(mrr: dict[str, float]) -> dict:
    per_locale = {
        locale: {"mrr@100": v, "recall@100": min(1.0, 3 * v), "ndcg@100": 1.5 * v, "sessions": 10}
        for locale, v in mrr.items()
    }
    overall = {
        k: sum(p[k] for p in per_locale.values()) / len(per_locale) for k in ("mrr@100", "recall@100", "ndcg@100")
    }
    return {"overall": overall | {"sessions": 10 * len(mrr)}, "per_locale": per_locale}


@pytest.fixture(scope="module")
def split(tiny_data):
    return load_task_split(AmazonM2(tiny_data), 3, DemoConfig(data=str(tiny_data)).split)


@pytest.fixture(scope="module")
def predictions(split) -> dict[str, pl.Series]:
    """The last-title baseline, and an "LLM" that writes the true title without its last word."""
    last = split.sessions.select(pl.col("prev_items").list.last().alias("next_item"), "locale")
    return {
        "last-title": titles_of(last, split.catalog).fill_null(""),
        LLM: split.targets.str.replace(r"\s+\S+$", ""),
    }


@pytest.fixture(scope="module")
def run(tiny_data, split, predictions, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo-tiny"
    save_config(DemoConfig(data=str(tiny_data), out=str(run)), run / "config.yaml")
    io.write_csv(pl.DataFrame({"locale": ["UK", "DE"], "sessions": [120, 110]}), run / "data_stats.csv")
    metrics = {
        "task1/popularity": ranking_result({"UK": 0.05, "DE": 0.04, "JP": 0.06}),
        "task1/rerank": ranking_result({"UK": 0.31, "DE": 0.28, "JP": 0.35}),
        "task2/popularity": ranking_result({"ES": 0.02, "FR": 0.03, "IT": 0.01}),
    }
    for method, titles in predictions.items():
        frame = pl.DataFrame({"locale": split.sessions["locale"].cast(pl.String), "next_item_title": titles})
        io.write_parquet(frame, predictions_file(run, 3, method))
        metrics[f"task3/{method}"] = evaluate(3, frame, split.targets, split.sessions["locale"])
    io.write_json(metrics, run / "metrics.json")
    log = [{"step": s, "loss": 3.0 - 0.05 * s, "lr": 3e-4, "tokens_per_s": 200.0 + s} for s in range(1, 31)]
    for row in log[9::10]:
        row |= {"valid_loss": row["loss"] + 0.2, "valid_bleu": 0.01 * row["step"]}
    io.write_text("".join(json.dumps(row) + "\n" for row in log), run / "task3" / "train_log.jsonl")
    at_k = {
        "covisit": {"1": 0.1, "5": 0.25, "10": 0.3, "20": 0.38, "50": 0.45},
        "grounded": {"1": 0.02, "5": 0.06, "10": 0.09, "20": 0.12, "50": 0.2},
    }
    recall = {"covisit": 0.5, "grounded": 0.25, "all": 0.62, "all_but_grounded": 0.55, "sessions": 400, "at_k": at_k}
    io.write_json({"task": 1, "split": "valid", "candidate_recall": recall}, run / "task1" / "rerank-llm.report.json")
    return run


def images(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_has_every_section_with_valid_plots(run):
    path = write_report(run)
    html = path.read_text(encoding="utf-8")
    assert path == run / "report.html"
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "Left out" not in html
    saved = sorted(p.name for p in (run / "report").glob("*.png"))
    assert saved == [
        "task1-mrr100-per-locale.png",
        "task1-rerank-llm-recall.png",
        "task2-mrr100-per-locale.png",
        "task3-bleu-by-history.png",
        "task3-bleu-per-locale.png",
        "task3-training.png",
    ]
    embedded = images(html)
    assert sorted(embedded) == sorted((run / "report" / name).read_bytes() for name in saved)
    for png in embedded:
        assert png.startswith(PNG)
        with Image.open(BytesIO(png)) as image:
            image.verify()
            assert min(image.size) > 200
    assert "30 steps; last train loss 1.5000; 230 training tokens/s" in html
    assert "<td>all_but_grounded</td>" in html and "<td>0.5500</td>" in html


def test_bucket_bleu_equals_direct_corpus_bleu(run, split, predictions):
    lengths = split.sessions["prev_items"].list.len()
    table = bleu_by_history(lengths, split.targets, predictions)
    assert table["sessions"].sum() == split.sessions.height
    assert table["bucket"].to_list() == [
        b for b in ("2", "3", "4", "5-6", "7-10", "11+") if b in table["bucket"].to_list()
    ]
    in_bucket = (lengths >= 5) & (lengths <= 6)
    expected = corpus_bleu(predictions[LLM].filter(in_bucket).to_list(), split.targets.filter(in_bucket).to_list())
    plotted = table.filter(pl.col("bucket") == "5-6")[LLM].item()
    assert plotted == pytest.approx(expected) and 0 < expected < 1
    assert f"<td>{expected:.4f}</td>" in write_report(run).read_text(encoding="utf-8")


def test_missing_inputs_become_notes(run, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run / "metrics.json", partial / "metrics.json")
    html = write_report(partial).read_text(encoding="utf-8")
    assert len(images(html)) == 3  # the per-locale charts of tasks 1, 2 and 3
    for text in (
        "Left out: no data_stats.csv in the run folder.",
        "Left out: the run folder lacks config.yaml.",
        "Left out: no task3/train_log.jsonl in the run folder.",
        "Left out: no task1/ or task2/ rerank report",
    ):
        assert text in html

    empty = tmp_path / "empty"
    empty.mkdir()
    html = write_report(empty).read_text(encoding="utf-8")
    assert images(html) == [] and html.count('class="note"') == len(SECTIONS)

    with pytest.raises(ConfigError, match="run folder not found"):
        write_report(tmp_path / "nowhere")


def test_predictions_of_another_split_are_skipped_with_a_note(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "copy")
    short = pl.read_parquet(copy / "task3" / "LoRA-tiny-llm.parquet").head(10)
    io.write_parquet(short, copy / "task3" / "LoRA-tiny-llm.parquet")
    html = write_report(copy).read_text(encoding="utf-8")
    assert f"Not plotted: {LLM} (10 titles for " in html
    assert "<th>last-title</th>" in html
