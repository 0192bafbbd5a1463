"""Tasks 1 and 2 on a synthetic set, shaped like the paper's Tables 3 and 4: popularity,
co-visitation and session-KNN beside the reranked pipeline without and with grounded LLM
titles, and for task 2 the reranker trained on ES/FR/IT alone against one that also learns
from UK/DE/JP (the default). Every row is scored on the same validation sessions.

Writes every submission, report and the generated titles under --out (generation resumes
from its shards), then prints the tables and the recall@100 the grounded titles add.

    python eval/tables_tasks12.py --data data/synth-medium --adapter runs/task3-small-v2/adapter --limit 3000
    python eval/tables_tasks12.py --data data/synth-medium --limit 1000 --sasrec-minutes 15  # no LLM rows
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import polars as pl


def main() -> None:
    from llmrec import io
    from llmrec.baselines import RANKING_BASELINES, BaselineConfig, run_baseline
    from llmrec.baselines.sasrec_config import SasrecConfig
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.rank import RecommendConfig, TextSignals, ranking_data, recommend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-medium"))
    parser.add_argument(
        "--adapter", default=None, help="LoRA adapter for the titles (none: the rows without LLM titles only)."
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument(
        "--limit",
        type=int,
        default=3000,
        help="First N validation sessions of each task (LLM generation is the slow part).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/tables-tasks12"))
    parser.add_argument(
        "--sasrec-minutes",
        type=float,
        default=SasrecConfig.max_minutes,
        help="Training budget of the SASRec baseline per task, in minutes (training stops there).",
    )
    args = parser.parse_args()
    baseline_config = BaselineConfig(sasrec=SasrecConfig(max_minutes=args.sasrec_minutes))
    split = SplitConfig(limit=args.limit)
    dataset = AmazonM2(args.data)
    config = load_config(RecommendConfig, None, [f"data={args.data}"])
    text = TextSignals.for_catalog(dataset.products(), config.text)
    titles = generate_titles(args, dataset, split) if args.adapter else {}
    rows, recall = [], {}
    for task in (1, 2):
        task_split = load_task_split(dataset, task, split)
        for name in RANKING_BASELINES:
            rows.append(score(task_split, name, run_baseline(name, task_split, baseline_config)))
        variants = [("rerank (ids, session signals, text)", None, None, "rerank")]
        if task in titles:
            variants.append(("rerank + grounded LLM titles", None, titles[task], "rerank-llm"))
        if task == 2:  # the paper's Table 4: ES/FR/IT alone against pretraining on UK/DE/JP too (the default)
            variants = [
                (f"{name}, {label}", transfer, generated, stem + suffix)
                for name, _, generated, stem in variants
                for label, transfer, suffix in (("ES/FR/IT only", [], ""), ("transfer from UK/DE/JP", [1], "-transfer"))
            ]
        for method, transfer, generated, stem in variants:
            settings = dataclasses.replace(config, task=task, split=split)
            if transfer is not None:
                settings = dataclasses.replace(
                    settings, reranker=dataclasses.replace(settings.reranker, transfer_from=transfer)
                )
            path = args.out / f"task{task}" / f"{stem}.parquet"
            lists, report = recommend(settings, ranking_data(dataset, settings), path, generated, None, text)
            io.write_json(report.to_dict(), path.with_suffix(".report.json"))
            rows.append(score(task_split, method, lists))
            recall[f"task{task}/{method}"] = report.candidate_recall
    table = pl.DataFrame(rows)
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=250, float_precision=4):
        for task in (1, 2):
            print(
                f"\ntask {task} (validation, first {args.limit} sessions of {args.data}): MRR@100, "
                "Recall@100, NDCG@100, MRR@100 per locale"
            )
            print(
                table.filter(pl.col("task") == task)
                .drop("task", "sessions")
                .drop([c for c in table.columns if table[c].null_count() == table.height])
            )
    for key, values in recall.items():
        if "grounded" in values:
            print(
                f"{key}: candidate recall with every source {values['all']:.4f}, without the grounded "
                f"titles {values['all_but_grounded']:.4f} "
                f"(+{values['all'] - values['all_but_grounded']:.4f}); grounded alone {values['grounded']:.4f}"
            )
    io.write_csv(table, args.out / "tables.csv")
    io.write_json(recall, args.out / "candidate_recall.json")


def score(task_split, method: str, lists: pl.DataFrame) -> dict:
    """One table row: the method's metrics overall and MRR@100 per locale."""
    from llmrec.evaluate import evaluate

    result = evaluate(task_split.task, lists, task_split.targets, task_split.sessions["locale"])
    print(f"task {task_split.task} {method}: {json.dumps(result['overall'])}", flush=True)
    return {
        "task": task_split.task,
        "method": method,
        **result["overall"],
        **{k: v["mrr@100"] for k, v in result["per_locale"].items()},
    }


def generate_titles(args, dataset, split) -> dict[int, pl.DataFrame]:
    """Greedy titles of the adapter for the validation sessions of tasks 1 and 2 (resumable)."""
    from llmrec.config import load_config
    from llmrec.generate import titles_for_tasks
    from llmrec.train.config import Task3Config

    task3 = load_config(Task3Config, Path(args.adapter).parent / "config.yaml", [f"model={args.model}"])
    outputs = {task: args.out / "titles" / f"task{task}.parquet" for task in (1, 2)}
    generated = titles_for_tasks(dataset, outputs, split, task3.prompt, task3.model, args.adapter, task3.generate)
    return {task: titles for task, (titles, _) in generated.items()}


if __name__ == "__main__":
    main()
