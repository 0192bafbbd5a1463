"""Task 3, grounded: the next product's title chosen among real products' titles.

The LLM's free text has the right shape but often names a product that does not exist; the
titles of the products co-visitation ranks first are real but the ranking cannot tell which
variant comes next. Minimum Bayes risk joins the two: the evidence puts weight 1/(rank + 1)
on each of the top ranked products' titles and `llm_weight` on each generated title, and
the chosen title is the ranked one with the highest expected corpus BLEU under it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from llmrec.baselines import BaselineConfig, make_recommender, recommend
from llmrec.data.split import TaskSplit, titles_of
from llmrec.errors import ConfigError
from llmrec.generate.mbr import mbr_titles
from llmrec.rank.text import check_titles


@dataclass
class TitleChoiceConfig:
    ranker: str = (
        "covisit"  # the ranking baseline whose top products' titles are the choices: covisit, sknn, popularity
    )
    top: int = 10  # ranked products per session whose titles are candidates
    llm_weight: float = 3.0  # weight of a generated title; the top ranked product's is 1
    generated: int = 1  # generated titles per session used as evidence, best first
    tokenize: str = "13a"  # the sacrebleu tokenizer of the BLEU being maximized

    def __post_init__(self) -> None:
        if self.top < 1 or self.generated < 1:
            raise ConfigError("title_choice.top and title_choice.generated must be at least 1")
        if self.llm_weight < 0:
            raise ConfigError("title_choice.llm_weight must be at least 0")


def ranked_titles(split: TaskSplit, config: TitleChoiceConfig, baselines: BaselineConfig) -> list[list[str]]:
    """Per session (in order): titles of the `top` products the ranker puts first, best first
    (products without a title are skipped)."""
    lists = recommend(make_recommender(config.ranker, baselines), split, replace(baselines, k=config.top))
    ranked = (
        lists.with_row_index("row")
        .explode("next_item_prediction")
        .select(
            "row",
            pl.col("next_item_prediction").alias("next_item"),
            pl.col("locale").cast(split.catalog["locale"].dtype),
        )
    )
    per_row = (
        ranked.with_columns(titles_of(ranked, split.catalog).alias("title"))
        .group_by("row", maintain_order=True)
        .agg(pl.col("title").drop_nulls())
    )
    return per_row["title"].to_list()


def choose_titles(
    split: TaskSplit, choices: list[list[str]], generated: pl.DataFrame | None, config: TitleChoiceConfig
) -> pl.DataFrame:
    """The task 3 submission (`locale`, `next_item_title`) for the split's sessions, each title
    one of the session's `choices` (`ranked_titles`). Without generated titles the choice rests
    on the ranking alone; a session without choices gets its best generated title (or "")."""
    evidence = [[(title, 1.0 / (rank + 1)) for rank, title in enumerate(titles)] for titles in choices]
    titles = [""] * len(choices)
    if generated is not None:
        aligned = split.sessions.select(pl.col("session_id").cast(pl.Int64)).join(
            generated.select(pl.col("session_id").cast(pl.Int64), "candidates"),
            on="session_id",
            how="left",
            maintain_order="left",
        )
        for i, candidates in enumerate(aligned["candidates"].to_list()):
            texts = [c["title"] for c in (candidates or [])[: config.generated] if c["title"]]
            evidence[i] += [(text, config.llm_weight) for text in texts]
            titles[i] = texts[0] if texts else ""
    rows = [i for i, options in enumerate(choices) if options]
    picked = mbr_titles([choices[i] for i in rows], [evidence[i] for i in rows], config.tokenize) if rows else []
    for i, title in zip(rows, picked):
        titles[i] = title
    return pl.DataFrame({"locale": split.sessions["locale"].cast(pl.String), "next_item_title": titles})


def recommend_titles(
    split: TaskSplit, generated: pl.DataFrame | None, config: TitleChoiceConfig, baselines: BaselineConfig
) -> pl.DataFrame:
    """`llmrec recommend --task 3`: the task 3 submission of the split's sessions, each title
    one of the ranker's top products' titles, picked with the generated titles (if any) as
    evidence."""
    if generated is not None:
        check_titles(generated, split, "--titles")
    return choose_titles(split, ranked_titles(split, config, baselines), generated, config)
