"""Shopping sessions drawn from latent intents over a synthetic catalog, vectorized per step.

Each session has an intent (browse variants, compare brands, complete a purchase with
complements) that sets its transition probabilities: another variant of the same family,
another family of the same type, a family of a complement type (keeping a compatible size),
an immediate or earlier repeat, or a jump to a popular product. The next item is one more
step that never repeats a session item, as in the real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from llmrec.data.synth.catalog import Catalog

VARIANT, COMPARE, COMPLEMENT, REPEAT_LAST, REPEAT_EARLIER, JUMP = range(6)
# Rows: intents (browse variants, compare brands, complete the purchase); columns: moves above.
INTENT_MOVES = np.array(
    [
        [0.59, 0.13, 0.08, 0.045, 0.055, 0.10],
        [0.15, 0.56, 0.09, 0.045, 0.055, 0.10],
        [0.15, 0.13, 0.52, 0.045, 0.055, 0.10],
    ]
)
INTENT_SHARES = np.array([0.38, 0.34, 0.28])
# Session length = 2 + X: P(X = 0..3) as measured on the real sessions, then a Lomax tail
# whose scale sets the locale's mean length.
HEAD = np.array([0.36, 0.21, 0.15, 0.09])
MAX_LENGTH = 500


class GroupedSampler:
    """Draws an element of a group with probability proportional to its weight, for many
    groups at once, by inverse CDF over one cumulative array."""

    def __init__(self, group_of_element: np.ndarray, weights: np.ndarray, n_groups: int):
        order = np.lexsort((-weights, group_of_element))
        self.elements = order
        self.cumulative = np.cumsum(weights[order])
        counts = np.bincount(group_of_element, minlength=n_groups)
        ends = np.cumsum(counts)
        self.low = np.concatenate([[0.0], self.cumulative])[ends - counts]
        self.high = np.concatenate([[0.0], self.cumulative])[ends]
        self.empty = counts == 0

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One element per requested group; -1 for an empty group."""
        u = self.low[groups] + rng.random(groups.size) * (self.high[groups] - self.low[groups])
        position = np.minimum(np.searchsorted(self.cumulative, u, side="right"), self.cumulative.size - 1)
        return np.where(self.empty[groups], -1, self.elements[position])


@dataclass
class LocaleMarket:
    """One locale's listings as arrays the simulator indexes by listing number."""

    ids: np.ndarray  # listing -> product id string
    family: np.ndarray  # listing -> local family number
    size: np.ndarray  # listing -> size index or -1
    family_type: np.ndarray  # local family -> type
    popular: GroupedSampler  # one group: all listings by popularity
    variants: GroupedSampler  # group = local family
    families_of_type: GroupedSampler  # group = type, elements = local families
    complement_types: np.ndarray  # [type, j]: j-th complement type (padded)
    complement_count: np.ndarray  # [type]: how many complements it has
    size_stride: int
    size_key: np.ndarray  # sorted family * size_stride + size + 1 keys ...
    size_key_listing: np.ndarray  # ... and their listing

    @classmethod
    def build(cls, rng: np.random.Generator, catalog: Catalog, locale: str) -> "LocaleMarket":
        listings = catalog.listings.filter(pl.col("locale") == locale).join(
            catalog.products.select("product", "type", "size_index", "variant_share"), on="product", how="left"
        )
        global_family = listings["family"].to_numpy()
        family_starts = np.flatnonzero(np.r_[True, global_family[1:] != global_family[:-1]])
        family = np.cumsum(np.r_[False, global_family[1:] != global_family[:-1]])
        n_families = family_starts.size
        types = listings["type"].to_numpy()
        n_types = len(catalog.vocab.type_keys)
        # Local taste: imported families keep their appeal up to noise.
        family_weight = listings["appeal"].to_numpy()[family_starts] * rng.lognormal(0.0, 0.5, n_families)
        weight = family_weight[family] * listings["variant_share"].to_numpy()
        size = listings["size_index"].to_numpy()
        stride = int(size.max()) + 2
        key = family.astype(np.int64) * stride + size + 1
        order = np.argsort(key, kind="stable")
        complements = catalog.vocab.complements
        complement_count = np.array([c.size for c in complements])
        complement_types = np.zeros((len(complements), max(1, complement_count.max())), dtype=np.int64)
        for t, c in enumerate(complements):
            complement_types[t, : c.size] = c
        return cls(
            ids=listings["id"].to_numpy(),
            family=family,
            size=size,
            family_type=types[family_starts],
            popular=GroupedSampler(np.zeros(weight.size, dtype=np.int64), weight, 1),
            variants=GroupedSampler(family, weight, n_families),
            families_of_type=GroupedSampler(types[family_starts], family_weight, n_types),
            complement_types=complement_types,
            complement_count=complement_count,
            size_stride=stride,
            size_key=key[order],
            size_key_listing=order,
        )

    def with_size(self, families: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """A listing of each family in the given size, -1 where the family has none."""
        wanted = families.astype(np.int64) * self.size_stride + sizes + 1
        position = np.minimum(np.searchsorted(self.size_key, wanted), self.size_key.size - 1)
        return np.where(self.size_key[position] == wanted, self.size_key_listing[position], -1)


def session_lengths(rng: np.random.Generator, n: int, mean_length: float) -> np.ndarray:
    """Previous-item counts: the real head (36% length 2, 21% 3, ...) and a Lomax tail sized
    so that the mean matches the locale."""
    tail_share = 1.0 - HEAD.sum()
    head_mean = (HEAD * np.arange(4)).sum()
    tail_excess = max(0.05, (mean_length - 2 - head_mean) / tail_share - 4)
    shape = 2.5
    scale = tail_excess * (shape - 1)
    extra = np.searchsorted(np.cumsum(np.r_[HEAD, tail_share]), rng.random(n), side="right")
    tail = 4 + np.floor(scale * (rng.random(n) ** (-1 / shape) - 1)).astype(np.int64)
    lengths = 2 + np.where(extra >= 4, tail, extra)
    return np.minimum(lengths, MAX_LENGTH)


def simulate(rng: np.random.Generator, market: LocaleMarket, n_sessions: int, mean_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (offsets, previous items as one flat listing array, next items): session i's
    previous items are items[offsets[i]:offsets[i + 1]]."""
    lengths = session_lengths(rng, n_sessions, mean_length)
    order = np.argsort(-lengths, kind="stable")  # active sessions form a prefix at every step
    lengths = lengths[order]
    steps = lengths + 1
    starts = np.r_[0, np.cumsum(steps)[:-1]]
    path = np.empty(steps.sum(), dtype=np.int64)
    intent = np.searchsorted(np.cumsum(INTENT_SHARES), rng.random(n_sessions), side="right")
    move_cdf = np.cumsum(INTENT_MOVES, axis=1)
    current = market.popular.sample(rng, np.zeros(n_sessions, dtype=np.int64))
    path[starts] = current
    active_count = np.searchsorted(-steps, -np.arange(steps.max() + 1), side="left")  # sessions with steps > t
    for t in range(1, int(steps.max())):
        n = active_count[t]
        cur = current[:n]
        is_next = lengths[:n] == t
        cdf = move_cdf[intent[:n]]
        move = (rng.random(n)[:, None] >= cdf).sum(axis=1)
        # The next item is never a repeat: such draws become variant/compare/complement moves.
        redraw = is_next & ((move == REPEAT_LAST) | (move == REPEAT_EARLIER))
        u = rng.random(n) * cdf[:, COMPLEMENT]
        move = np.where(redraw, (u[:, None] >= cdf[:, :COMPLEMENT + 1]).sum(axis=1), move)
        new = _step(rng, market, move, cur, path, starts[:n], t)
        # Moves other than repeats must leave the current item: redraw accidental stays.
        for _ in range(2):
            stay = np.flatnonzero((new == cur) & (move != REPEAT_LAST) & (move != REPEAT_EARLIER))
            if stay.size == 0:
                break
            new[stay] = _step(rng, market, move[stay], cur[stay], path, starts[:n][stay], t)
        current[:n] = new
        path[starts[:n] + t] = new
    _avoid_session_items(rng, market, path, starts, lengths)
    # Reassemble in the original (random) session order.
    inverse = np.argsort(order)
    prev_lengths = lengths[inverse]
    session_starts = starts[inverse]
    offsets = np.r_[0, np.cumsum(prev_lengths)]
    index = np.repeat(session_starts - offsets[:-1], prev_lengths) + np.arange(offsets[-1])
    return offsets, path[index], path[session_starts + prev_lengths]


def _step(rng, market: LocaleMarket, move: np.ndarray, cur: np.ndarray, path: np.ndarray, starts: np.ndarray, t: int) -> np.ndarray:
    new = np.empty_like(cur)
    family = market.family[cur]
    ftype = market.family_type[family]

    chosen = move == VARIANT
    if chosen.any():
        pick = market.variants.sample(rng, family[chosen])
        same = pick == cur[chosen]
        # Another variant: step to the neighbour when the draw returned the current one.
        neighbour = np.minimum(cur[chosen] + 1, market.family.size - 1)
        neighbour = np.where(market.family[neighbour] == family[chosen], neighbour, np.maximum(cur[chosen] - 1, 0))
        neighbour = np.where(market.family[neighbour] == family[chosen], neighbour, -1)
        new[chosen] = np.where(same, neighbour, pick)

    chosen = move == COMPARE
    if chosen.any():
        other = market.families_of_type.sample(rng, ftype[chosen])
        new[chosen] = market.variants.sample(rng, other)

    chosen = move == COMPLEMENT
    if chosen.any():
        types = ftype[chosen]
        counts = market.complement_count[types]
        which = (rng.random(types.size) * counts).astype(np.int64)
        target_type = np.where(counts > 0, market.complement_types[types, np.minimum(which, market.complement_types.shape[1] - 1)], types)
        # A complement keeps the compatible size (a case and a screen protector for one phone) 80% of the time.
        other = market.families_of_type.sample(rng, target_type)
        found = other >= 0
        matched = np.where(found, market.with_size(np.maximum(other, 0), market.size[cur[chosen]]), -1)
        pick = np.where(found, market.variants.sample(rng, np.maximum(other, 0)), -1)
        new[chosen] = np.where((matched >= 0) & (rng.random(types.size) < 0.8), matched, pick)

    chosen = move == REPEAT_LAST
    new[chosen] = cur[chosen]

    chosen = move == REPEAT_EARLIER
    if chosen.any():
        earlier = (rng.random(chosen.sum()) * t).astype(np.int64)
        new[chosen] = path[starts[chosen] + earlier]

    chosen = (move == JUMP) | (new < 0)
    if chosen.any():
        new[chosen] = market.popular.sample(rng, np.zeros(chosen.sum(), dtype=np.int64))
    return new


def _avoid_session_items(rng, market: LocaleMarket, path: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Redraw next items that repeat a session item (popular jumps) until none does."""
    n_listings = market.ids.size
    session_of_item = np.repeat(np.arange(lengths.size), lengths)
    item_index = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths))
    seen = np.unique(session_of_item * n_listings + path[item_index])
    final = starts + lengths
    todo = np.arange(lengths.size)
    for _ in range(100):
        clash = np.isin(todo * n_listings + path[final[todo]], seen)
        todo = todo[clash]
        if todo.size == 0:
            return
        path[final[todo]] = market.popular.sample(rng, np.zeros(todo.size, dtype=np.int64))
    raise RuntimeError("could not draw next items outside their sessions; is the catalog tiny?")
