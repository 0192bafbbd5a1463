"""`make demo`'s driver on the tiny data without the LLM: every baseline and the task 3 title
choice land in the results table, metrics.json and the run folder."""

from __future__ import annotations

import json

from rich.console import Console

from llmrec.config import load_config
from llmrec.demo import DemoConfig, run_demo
from llmrec.runs import predictions_file


def test_demo_without_llm_scores_every_method(tiny_data, tmp_path):
    config = load_config(
        DemoConfig,
        "demo",
        [
            f"data={tiny_data}",
            "scale=tiny",
            f"out={tmp_path / 'demo'}",
            "llm=false",
            "split.limit=0",
            "recommend.text.enabled=false",
            "recommend.reranker.num_trees=40",
            "recommend.reranker.threads=1",
            "recommend.chunk_size=150",
        ],
    )
    result = run_demo(config, Console(quiet=True))
    results = result.rows
    assert list(result.seconds) == [
        "data",
        "baselines",
        "catalog embeddings and index",
        "task 1: candidates, features, reranking",
        "task 2: candidates, features, reranking",
    ] and all(s > 0 for s in result.seconds.values())
    methods = {task: set(results.filter(results["task"] == task)["method"]) for task in (1, 2, 3)}
    assert methods[1] == methods[2] == {"popularity", "covisit", "sknn", "rerank"}
    assert methods[3] == {"last-title", "co-visitation titles"}
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    bleu = {m: metrics[f"task3/{m}"]["overall"]["bleu"] for m in methods[3]}
    assert bleu["co-visitation titles"] > bleu["last-title"] > 0
    assert (tmp_path / "demo" / "task3" / "co-visitation-titles.parquet").exists()
    assert predictions_file(tmp_path, 3, "LoRA + co-visitation titles").name == "LoRA-co-visitation-titles.parquet"
