"""BLEU-4 of titles generated for task 2's validation sessions (ES/FR/IT) against the title of
each session's true next item, beside the last-title baseline: how well an LLM adapter trained
on ES/FR/IT alone, or pretrained on UK/DE/JP first, writes titles in the small locales.

    python eval/bleu_task2_titles.py --data data/synth-small runs/transfer/titles-*.parquet
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import polars as pl


def main() -> None:
    from llmrec.baselines import BaselineConfig, run_baseline
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split, titles_of
    from llmrec.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-small"))
    parser.add_argument("titles", nargs="+", type=Path, help="`llmrec generate --task 2 --split valid` outputs")
    args = parser.parse_args()
    data = AmazonM2(args.data)
    split = load_task_split(data, 2, SplitConfig())
    truth = titles_of(split.sessions.with_columns(split.targets.alias("next_item")), data.products())
    titled = truth.is_not_null()

    def score(name: str, titles: pl.DataFrame) -> None:
        result = evaluate(3, titles.filter(titled), truth.filter(titled), split.sessions["locale"].filter(titled))
        per_locale = " | ".join(f"{result['per_locale'][locale]['bleu']:.4f}" for locale in ("ES", "FR", "IT"))
        print(f"| {name} | {result['overall']['bleu']:.4f} | {per_locale} | {result['overall']['sessions']} |")

    print("| titles | BLEU-4 | ES | FR | IT | sessions |\n|---|---|---|---|---|---|")
    score("last title", run_baseline("last-title", dataclasses.replace(split, task=3, targets=truth), BaselineConfig()))
    for path in args.titles:
        score(str(path), pl.read_parquet(path).select("locale", "next_item_title"))


if __name__ == "__main__":
    main()
