"""Task 3 on a synthetic set: the untuned model, the LoRA adapter, the last title, co-visitation
titles and the LLM titles grounded in co-visitation titles, on two windows of validation
sessions: the first (where the title choice's settings were picked) and the next (held out).

Generates (resumably) the untuned and the LoRA titles of both windows with one engine per
model, then scores every row overall and per locale and prints two tables.

    python eval/tables_task3.py --data data/synth-small --adapter runs/task3/adapter --sessions 1000
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import polars as pl


def main() -> None:
    from llmrec.baselines import BaselineConfig, run_baseline
    from llmrec.config import load_config
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import load_task_split
    from llmrec.evaluate import evaluate
    from llmrec.generate import titles_for_tasks
    from llmrec.rank import RecommendConfig, choose_titles, ranked_titles
    from llmrec.runs import overrides_of, trained_settings
    from llmrec.train.config import Task3Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-small"))
    parser.add_argument("--adapter", required=True, help="a LoRA adapter from `llmrec finetune --task 3`")
    parser.add_argument("--sessions", type=int, default=1000, help="validation sessions per window")
    parser.add_argument("--out", type=Path, default=Path("runs/tables-task3"))
    args = parser.parse_args()
    task3 = load_config(Task3Config, "task3", overrides_of(trained_settings(args.adapter)))
    dataset = AmazonM2(args.data)
    choice = RecommendConfig().title_choice
    tables = {}
    for window, offset in (("first", 0), ("held out", args.sessions)):
        split_config = dataclasses.replace(task3.split, limit=args.sessions, offset=offset)
        split = load_task_split(dataset, 3, split_config)
        generated = {}
        for label, adapter in (("untuned", None), ("LoRA", args.adapter)):
            out = args.out / f"{label}-{offset}.parquet"
            frame, _ = titles_for_tasks(
                dataset, {3: out}, split_config, task3.prompt, task3.model, adapter, task3.generate
            )[3]
            generated[label] = frame
        choices = ranked_titles(split, choice, BaselineConfig())
        rows = {
            f"{task3.model}, untuned": generated["untuned"].select("locale", "next_item_title"),
            f"{task3.model} + LoRA": generated["LoRA"].select("locale", "next_item_title"),
            "last product's title": run_baseline("last-title", split, BaselineConfig()),
            "co-visitation titles (no LLM)": choose_titles(split, choices, None, choice),
            "untuned + co-visitation titles": choose_titles(split, choices, generated["untuned"], choice),
            "LoRA + co-visitation titles": choose_titles(split, choices, generated["LoRA"], choice),
        }
        table = []
        for method, predictions in rows.items():
            result = evaluate(3, predictions, split.targets, split.sessions["locale"])
            table.append(
                {
                    "method": method,
                    "BLEU-4": result["overall"]["bleu"],
                    **{k: v["bleu"] for k, v in result["per_locale"].items()},
                }
            )
        tables[window] = pl.DataFrame(table)
    with pl.Config(tbl_rows=20, tbl_cols=12, tbl_width_chars=200, float_precision=4):
        for window, table in tables.items():
            print(
                f"\ntask 3, {window} {args.sessions:,} validation sessions of {args.data}: corpus "
                "BLEU-4 (13a), per locale"
            )
            print(table)


if __name__ == "__main__":
    main()
