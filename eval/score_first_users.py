"""Scores task 1 ranked lists on the first N sessions of a split: lists written for the whole
split are cut to their first N rows, so a method run on a sample (e.g. `generate --limit N`)
can be set beside the others on the same sessions.

    python eval/score_first_users.py --data runs/real-lcrec/data --split test --first 500 \\
        runs/real-lcrec/covisit.parquet runs/real-lcrec/sample/constrained-grounded.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    import polars as pl

    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lists", type=Path, nargs="+", help="submission parquet files (locale, next_item_prediction)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--first", type=int, required=True)
    args = parser.parse_args()
    split = load_task_split(AmazonM2(args.data), 1, SplitConfig(name=args.split, limit=args.first))
    rows = []
    for path in args.lists:
        lists = pl.read_parquet(path)
        if lists.height < args.first:
            raise SystemExit(f"{path}: {lists.height} lists, fewer than --first {args.first}")
        result = evaluate(1, lists.head(args.first), split.targets, split.sessions["locale"])["overall"]
        rows.append({"lists": path.stem, **{k: result[k] for k in ("hr@10", "ndcg@10", "recall@100")}})
    with pl.Config(tbl_rows=50, tbl_width_chars=200, float_precision=4, fmt_str_lengths=60):
        print(f"first {args.first} sessions of the {args.split} split of {args.data}")
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
