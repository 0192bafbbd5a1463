"""Constrained decoding's search on a deterministic stand-in model: the title trie, bans, and a
beam search that is exact when its beams cover the catalogue and otherwise returns real,
distinct titles with their exact scores, calling the model only where a title branches."""

from __future__ import annotations

import math
import random

import pytest

from llmrec.generate.constrained import TitleTrie, constrained_beam_search

END = 99


def random_titles(seed: int, n: int = 40) -> list[list[int]]:
    """Token sequences with shared prefixes, a title that is a prefix of another, and a duplicate."""
    rng = random.Random(seed)
    titles = [[rng.choice([1, 2, 3]), *[rng.randrange(1, 12) for _ in range(rng.randrange(0, 5))]] for _ in range(n)]
    titles += [titles[0] + [7], list(titles[1])]
    return [t + [END] for t in titles]


def fake_step(seed: int):
    """A deterministic 'model': logits depend on the prompt and prefix; it returns every allowed
    token's log-probability renormalized over the allowed ones, as the backends do."""

    def step(indices, prefixes, allowed):
        out = []
        for i, prefix, tokens in zip(indices, prefixes, allowed):
            values = [random.Random(hash((seed, i, prefix, t))).gauss(0, 2) for t in tokens]
            norm = max(values) + math.log(sum(math.exp(v - max(values)) for v in values))
            out.append({t: v - norm for t, v in zip(tokens, values)})
        return out

    return step


def exact_scores(trie: TitleTrie, sequences, step, prompt: int, banned=None) -> dict[int, float]:
    """Every reachable title's log-probability under the catalogue-restricted distribution."""
    scores = {}
    for title in trie.title_at.values():
        total, node = 0.0, 0
        for k, token in enumerate(sequences[title]):
            allowed = trie.allowed(node, banned)
            if token not in allowed:
                break
            total += step([prompt], [tuple(sequences[title][:k])], [list(allowed)])[0][token] if len(allowed) > 1 else 0
            node = allowed[token]
        else:
            scores[title] = total
    return scores


def test_the_trie_spells_every_title_once_and_shares_prefixes():
    sequences = random_titles(0)
    trie = TitleTrie(sequences, END)
    assert len(trie) == len({tuple(s) for s in sequences})
    for sequence in sequences:
        node = trie.walk(sequence)
        assert sequences[trie.title_at[node]] == sequence and trie.children[node] == {}  # duplicates: the first
    assert set(trie.children[0]) == {s[0] for s in sequences}
    assert trie.walk([5] * 7) is None and trie.titles_below[0] == len(trie)
    with pytest.raises(ValueError, match="must end with the end token"):
        TitleTrie([[1, 2]], END)


def test_banned_titles_are_unreachable_and_the_others_stay():
    sequences = random_titles(1)
    trie = TitleTrie(sequences, END)
    banned = trie.banned({0, 3, 5})
    reachable = set()

    def explore(node):
        reachable.update([trie.title_at[node]] if node in trie.title_at else [])
        for child in trie.allowed(node, banned).values():
            explore(child)

    explore(0)
    assert reachable == set(trie.title_at.values()) - {trie.title_at[trie.walk(sequences[i])] for i in (0, 3, 5)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beams_covering_the_catalogue_are_exact(seed):
    sequences = random_titles(seed)
    trie, step = TitleTrie(sequences, END), fake_step(seed)
    (beams,) = constrained_beam_search(step, 1, trie, num_beams=len(trie))
    exact = exact_scores(trie, sequences, step, 0)
    assert sorted(t for t, _ in beams) == sorted(exact)
    assert all(s == pytest.approx(exact[t], abs=1e-9) for t, s in beams)
    assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)
    assert sum(math.exp(s) for _, s in beams) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [3, 4])
def test_narrow_beams_return_real_distinct_titles_best_first(seed):
    sequences = random_titles(seed)
    trie, step = TitleTrie(sequences, END), fake_step(seed)
    banned = [trie.banned([]), trie.banned([2, 4])]
    results = constrained_beam_search(step, 2, trie, num_beams=5, banned=banned)
    for prompt, beams in enumerate(results):
        exact = exact_scores(trie, sequences, step, prompt, banned[prompt])
        titles = [t for t, _ in beams]
        assert len(set(titles)) == 5 and all(t in exact for t in titles)
        assert all(s == pytest.approx(exact[t], abs=1e-9) for t, s in beams)
        assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)
    assert not {trie.title_at[trie.walk(sequences[i])] for i in (2, 4)} & {t for t, _ in results[1]}


def test_forced_tokens_cost_no_model_call_and_few_titles_end_early():
    trie = TitleTrie([[1, 2, 3, 4, END], [1, 2, 5, 6, END], [7, 8, 9, END]], END)
    calls = []

    def counting(indices, prefixes, allowed):
        calls.extend(prefixes)
        return fake_step(0)(indices, prefixes, allowed)

    (beams,) = constrained_beam_search(counting, 1, trie, num_beams=3)
    assert calls == [(), (1, 2)]  # only where a node branches
    (only,) = constrained_beam_search(counting, 1, trie, num_beams=5, banned=[trie.banned([0, 1])])
    assert only == [(2, 0.0)]  # one title left: certain, and fewer than num_beams
