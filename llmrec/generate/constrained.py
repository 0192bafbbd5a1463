"""Constrained decoding: beam search restricted to the catalogue's titles, so every candidate
is a real product's title (the decoding of BIGRec's and D3's LLM recommenders, without a
free-text grounding step). `generate.decoding=constrained`.

A prefix tree (trie) per locale holds the token ids of every distinct catalogue title, written
as the model learned to write it (" " + title, as finetuning's completions) and closed by EOS
(where a finetuned completion ends). At each step a beam may only continue with its node's
children, and the log-probabilities are renormalized over those children: a title's score is
its log-probability under the model's distribution restricted to the catalogue (all titles'
probabilities sum to one). A token that is the only continuation of its node scores exactly 0
and costs no forward pass.

Length normalization: D3 (Bao et al. 2024, "Decoding Matters") shows that dividing by length
inflates titles with many "ghost tokens" (near-certain once the item is determined). Here
forced tokens score exactly 0, so beams rank by the plain sum of log-probabilities (transformers'
`length_penalty=0`), which is D3's fix.

The search is token-synchronous, as transformers runs beam search: each step extends every live
beam by one allowed token, keeps the top 2 x beams continuations, moves those that end a title
(and rank in the top `num_beams`) to the finished list and continues with the best others.
Backends only answer one question, the renormalized log-probabilities of a beam's allowed next
tokens (a `StepFn`), so HF (a trie-shaped key/value cache, `hf_tree`) and vLLM (its prefix
cache) run the same search. Titles of the session's own products
can be banned (`exclude_history`): M2 never scores them, and a beam spent on one is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from llmrec.generate.base import Candidate, prune_beams

Beam = tuple[int, float]  # (title index, log-probability under the catalogue-restricted distribution)
# step(prompt indices, token prefixes of the asked beams, their allowed tokens) -> per beam {token: log-probability
# renormalized over the allowed tokens}, holding at least the 2 x beams best ones
StepFn = Callable[[list[int], list[tuple[int, ...]], list[list[int]]], list[dict[int, float]]]


class TitleTrie:
    """Token-id prefix tree over titles. Node 0 is the root; every path from the root to a node
    after the end token spells one distinct title."""

    def __init__(self, sequences: Sequence[Sequence[int]], end_id: int):
        self.end_id = end_id
        self.children: list[dict[int, int]] = [{}]
        self.title_at: dict[int, int] = {}  # final node -> title index (duplicates: the first)
        self.path_of_title: list[list[int]] = []  # the nodes a title passes, root excluded
        for index, sequence in enumerate(sequences):
            if not sequence or sequence[-1] != end_id or end_id in sequence[:-1]:
                raise ValueError(f"title {index}: its tokens must end with the end token {end_id}, and hold it once")
            node, path = 0, []
            for token in sequence:
                child = self.children[node].get(token)
                if child is None:
                    child = len(self.children)
                    self.children[node][token] = child
                    self.children.append({})
                node = child
                path.append(node)
            self.title_at.setdefault(node, index)
            self.path_of_title.append(path)
        size = len(self.children)
        self.parent, self.token, self.depth = [0] * size, [-1] * size, [0] * size  # root: no token, depth 0
        for node, children in enumerate(self.children):  # children are numbered after their parents
            for token, child in children.items():
                self.parent[child], self.token[child], self.depth[child] = node, token, self.depth[node] + 1
        self.titles_below = [0] * size  # distinct titles in each node's subtree
        for title in self.title_at.values():
            for node in [0, *self.path_of_title[title]]:
                self.titles_below[node] += 1
        self.max_depth = max(map(len, self.path_of_title), default=0)

    def __len__(self) -> int:
        return len(self.title_at)

    def walk(self, tokens: Iterable[int]) -> int | None:
        """The node `tokens` lead to from the root, None when they leave the trie."""
        node = 0
        for token in tokens:
            node = self.children[node].get(token)
            if node is None:
                return None
        return node

    def banned(self, titles: Iterable[int]) -> dict[int, int]:
        """node -> how many distinct banned titles lie below it (for `allowed`)."""
        counts: dict[int, int] = {}
        for final in {self.path_of_title[title][-1] for title in titles}:
            for node in [0, *self.path_of_title[self.title_at[final]]]:
                counts[node] = counts.get(node, 0) + 1
        return counts

    def allowed(self, node: int, banned: dict[int, int] | None = None) -> dict[int, int]:
        """token -> child of `node` below which some title is not banned."""
        if not banned:
            return self.children[node]
        return {t: c for t, c in self.children[node].items() if self.titles_below[c] > banned.get(c, 0)}


def constrained_beam_search(
    step: StepFn, prompts: int, trie: TitleTrie, num_beams: int, banned: Sequence[dict[int, int]] | None = None
) -> list[list[Beam]]:
    """The `num_beams` best titles per prompt, best first, as (title index, score); fewer when
    fewer titles are allowed. A prompt stops once its finished list is full and no live beam
    can beat its worst entry (scores only fall)."""
    live: list[list[tuple[tuple[int, ...], int, float]]] = [[((), 0, 0.0)] for _ in range(prompts)]
    done: list[list[tuple[tuple[int, ...], int, float]]] = [[] for _ in range(prompts)]
    for _ in range(trie.max_depth):
        active = [(i, beam) for i in range(prompts) for beam in live[i]]
        if not active:
            break
        options = [trie.allowed(node, banned[i] if banned else None) for i, (_, node, _) in active]
        asked = [k for k, allowed in enumerate(options) if len(allowed) > 1]
        prefixes = [active[k][1][0] for k in asked]
        scored = step([active[k][0] for k in asked], prefixes, [list(options[k]) for k in asked]) if asked else []
        logprobs: list[dict[int, float]] = [dict.fromkeys(allowed, 0.0) for allowed in options]
        for k, found in zip(asked, scored):
            logprobs[k] = found
        candidates: list[list[tuple[tuple[int, ...], int, float]]] = [[] for _ in range(prompts)]
        for (i, (tokens, _, score)), allowed, found in zip(active, options, logprobs):
            candidates[i] += [(tokens + (t,), allowed[t], score + lp) for t, lp in found.items() if t in allowed]
        for i, found in enumerate(candidates):
            if live[i]:
                live[i], done[i] = prune_beams(found, done[i], num_beams, lambda token: token == trie.end_id)
    return [[(trie.title_at[node], score) for _, node, score in finished] for finished in done]


@dataclass(frozen=True)
class CatalogTitles:
    """Per locale the trie of its catalogue's distinct titles under one tokenizer: built once per
    catalogue, shared by every split or request that decodes over it."""

    titled: pl.DataFrame  # locale, id, title: the products with a non-empty title
    tries: dict[str, TitleTrie]
    titles: dict[str, list[str]]  # locale -> its distinct titles, sorted: a trie's title indices
    eos_token_id: int

    @classmethod
    def build(cls, catalog: pl.DataFrame, tokenizer) -> CatalogTitles:
        """`catalog`: id, locale, title."""
        titled = catalog.select(pl.col("locale").cast(pl.String), "id", pl.col("title").str.strip_chars())
        titled = titled.filter(pl.col("title").str.len_chars() > 0)
        tries, titles = {}, {}
        for (locale,), rows in titled.group_by("locale"):
            distinct = rows["title"].unique().sort().to_list()
            ids = tokenizer([" " + t for t in distinct], add_special_tokens=False)["input_ids"]
            tries[locale] = TitleTrie([s + [tokenizer.eos_token_id] for s in ids], tokenizer.eos_token_id)
            titles[locale] = distinct
        return cls(titled, tries, titles, tokenizer.eos_token_id)


@dataclass
class CatalogConstraint:
    """Per locale the trie of its catalogue's distinct titles; per session the titles of its own
    products, banned when `exclude_history`. Built once per split (`for_split`)."""

    tries: dict[str, TitleTrie]
    titles: dict[str, list[str]]
    banned_titles: dict[int, list[int]]  # session_id -> title indices in its locale's list
    digest: str  # of the titles and bans: resumable outputs are keyed on it

    @classmethod
    def for_split(cls, sessions: pl.DataFrame, catalog: pl.DataFrame, tokenizer, exclude_history: bool):
        """`sessions`: session_id, locale, prev_items; `catalog`: id, locale, title."""
        return cls.for_sessions(sessions, CatalogTitles.build(catalog, tokenizer), exclude_history)

    @classmethod
    def for_sessions(cls, sessions: pl.DataFrame, catalogue: CatalogTitles, exclude_history: bool):
        """The constraint for `sessions` over an already built catalogue."""
        titles = catalogue.titles
        banned: dict[int, list[int]] = {}
        if exclude_history:
            index = pl.DataFrame(
                [(locale, t, i) for locale, found in titles.items() for i, t in enumerate(found)],
                schema={"locale": pl.String, "title": pl.String, "title_index": pl.Int64},
                orient="row",
            )
            own = (
                sessions.select(pl.col("session_id").cast(pl.Int64), pl.col("locale").cast(pl.String), "prev_items")
                .explode("prev_items")
                .join(catalogue.titled, left_on=["prev_items", "locale"], right_on=["id", "locale"])
                .join(index, on=["locale", "title"])
                .group_by("session_id")
                .agg(pl.col("title_index").unique().sort())
            )
            banned = dict(zip(own["session_id"].to_list(), own["title_index"].to_list()))
        content = repr((sorted(titles.items()), sorted(banned.items()), catalogue.eos_token_id)).encode()
        return cls(catalogue.tries, titles, banned, hashlib.sha256(content).hexdigest())

    def generate(self, generator, chunk: pl.DataFrame, num_beams: int, num_candidates: int) -> list[list[Candidate]]:
        """The `num_candidates` best catalogue titles of each row (session_id, locale, prompt) of
        `chunk` with their scores, best first, searched with `num_beams` beams."""
        results: list[list[Candidate]] = [[] for _ in range(chunk.height)]
        rows = chunk.with_row_index("row").with_columns(pl.col("locale").cast(pl.String))
        for (locale,), part in rows.group_by("locale", maintain_order=True):
            trie = self.tries.get(locale)
            if trie is None:
                continue  # no titled product in this locale: no candidates
            ids = generator.tokenizer(part["prompt"].to_list(), add_special_tokens=True)["input_ids"]
            bans = [trie.banned(self.banned_titles.get(s, [])) for s in part["session_id"].to_list()]
            beams = generator.constrained_beams(ids, trie, num_beams, bans)
            for row, found in zip(part["row"].to_list(), beams):
                results[row] = [(self.titles[locale][title], score) for title, score in found[:num_candidates]]
                generator.generated_tokens += sum(len(trie.path_of_title[title]) for title, _ in found[:num_candidates])
        return results
