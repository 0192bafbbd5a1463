"""The LLM as a scorer of given products: `generate.decoding=score` reads a ranked list per session
(`llmrec generate --lists`, a submission of `recommend` or a baseline) and writes the titles of
its top `num_candidates` products, each scored by its log-likelihood after the session's prompt,
best first. Grounded by `recommend --titles`, every such title is a catalogue title, so the
reranker gets how plausible the finetuned model finds each candidate product (`g_title_score`)
beside the ids' signals: the LLM reranks the first stage instead of writing a title from
nothing, which costs one prompt pass and K short title passes per session.

A title is scored as finetuning writes a completion and constrained decoding searches it:
" " + title, then EOS, each token under the model's full vocabulary. Products without a title
are skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.generate.base import Candidate


@dataclass(frozen=True)
class ListTitles:
    """Per session the titles of its list's top products, in list order."""

    titles: dict[int, list[str]]  # session_id -> titles
    digest: str  # of the titles: resumable outputs are keyed on it

    @classmethod
    def for_split(cls, lists: pl.DataFrame, sessions: pl.DataFrame, catalog: pl.DataFrame, top: int) -> ListTitles:
        """`lists`: a submission (locale, next_item_prediction) whose rows follow the split's
        sessions (a list of the whole split serves a `--limit`ed run: its first rows);
        `sessions`: session_id, locale; `catalog`: locale, id, title."""
        missing = [c for c in ("locale", "next_item_prediction") if c not in lists.columns]
        if missing:
            raise DataFormatError("--lists", f"no column '{missing[0]}' (expected locale, next_item_prediction)")
        if lists.height < sessions.height:
            raise DataFormatError(
                "--lists", f"{lists.height:,} lists for the split's {sessions.height:,} sessions (rows follow sessions)"
            )
        rows = sessions.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String)).with_columns(
            lists["locale"].head(sessions.height).cast(pl.String).alias("list_locale"),
            lists["next_item_prediction"].head(sessions.height).list.head(top).alias("id"),
        )
        wrong = rows.with_row_index("row").filter(pl.col("locale") != pl.col("list_locale"))
        if wrong.height:
            raise DataFormatError(
                "--lists",
                f"row {wrong['row'][0]}: locale {wrong['list_locale'][0]}, but the split's session "
                f"{wrong['session_id'][0]} is in {wrong['locale'][0]} (lists of another split?)",
            )
        titled = catalog.select(pl.col("locale").cast(pl.String), "id", pl.col("title").str.strip_chars())
        found = (
            rows.select("session_id", "locale", "id")
            .explode("id")
            .with_columns(pl.int_range(pl.len()).over("session_id").alias("position"))
            .join(titled, on=["locale", "id"], how="left")
            .filter(pl.col("title").str.len_chars() > 0)
            .sort("session_id", "position")
            .group_by("session_id", maintain_order=True)
            .agg("title")
        )
        titles = dict(zip(found["session_id"].to_list(), found["title"].to_list()))
        return cls(titles, hashlib.sha256(repr(sorted(titles.items())).encode()).hexdigest())

    def generate(self, generator, chunk: pl.DataFrame) -> list[list[Candidate]]:
        """The titles of each row (session_id, prompt) of `chunk` with their log-likelihoods, best
        first (a tie keeps list order)."""
        tokenizer = generator.tokenizer
        sessions = chunk["session_id"].to_list()
        prompt_ids = tokenizer(chunk["prompt"].to_list(), add_special_tokens=True)["input_ids"]
        titles = [self.titles.get(s, []) for s in sessions]
        flat = [" " + title for group in titles for title in group]
        encoded = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        title_ids, position = [], 0
        for group in titles:
            title_ids.append([ids + [tokenizer.eos_token_id] for ids in encoded[position : position + len(group)]])
            position += len(group)
        scores = generator.title_logprobs(prompt_ids, title_ids)
        generator.generated_tokens += sum(len(ids) for group in title_ids for ids in group)
        return [
            sorted(zip(group, (float(s) for s in found)), key=lambda c: -c[1]) for group, found in zip(titles, scores)
        ]
