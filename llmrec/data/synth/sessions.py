"""Shopping sessions drawn from latent intents over a synthetic catalog, vectorized per step.

What a shopper sees decides where they go next. A product page shows the family's other
variants and a carousel of related families, the same at every scale: its nearest neighbours on
its type's shelf (competitors: "customers also viewed") and the families at the same place on
its complement types' shelves ("frequently bought together"), ranked by appeal and clicked with
Zipf weights, so popular neighbours become habitual successors. Each session has an intent
(browse variants, compare brands, complete a purchase) that sets its moves: another variant, a
competitor or a complement (keeping a compatible size), the same from the page before (the back
button), an immediate or earlier repeat, or a search that lands anywhere in the long tail.
Because every family relates to a small fixed set of families, transitions do not spread out as
the catalog grows: how familiar a next step is depends on the sessions per product, not on the
catalog's size. The next item is one more step that never repeats a session item, as in the real
data. How often shoppers repeat, go back and follow the carousel's top depends on the locale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from llmrec.data.synth.catalog import Catalog

VARIANT, COMPARE, COMPLEMENT, REPEAT_LAST, REPEAT_EARLIER, SEARCH = range(6)
FRESH = [VARIANT, COMPARE, COMPLEMENT, SEARCH]  # the moves that open an item not just shown
# Rows: intents (browse variants, compare brands, complete the purchase); columns: moves above,
# the repeats left out: their rates depend on the locale (Habits).
INTENT_MOVES = np.array(
    [
        [0.79, 0.12, 0.06, 0.0, 0.0, 0.03],
        [0.30, 0.59, 0.08, 0.0, 0.0, 0.03],
        [0.30, 0.10, 0.57, 0.0, 0.0, 0.03],
    ]
)
INTENT_SHARES = np.array([0.38, 0.34, 0.28])


@dataclass(frozen=True)
class Habits:
    """How a locale's shoppers browse. ES/FR/IT shoppers go back and forth between a few
    products (more repeats in shorter sessions, sharper carousel clicks); UK/DE/JP shoppers
    wander more widely, as the real sessions of each task show."""

    repeat_last: float  # a step shows the current item again
    repeat_earlier: float  # a step goes back to an earlier item
    back: float  # a fresh move starts from the page before the current one (the back button)
    carousel_decay: float  # a click on carousel rank r weighs (r + 1) ** -carousel_decay


WIDE = Habits(repeat_last=0.066, repeat_earlier=0.0, back=0.5, carousel_decay=1.5)
NARROW = Habits(repeat_last=0.09, repeat_earlier=0.02, back=0.25, carousel_decay=3.0)
HABITS = {"UK": WIDE, "DE": WIDE, "JP": WIDE, "ES": NARROW, "FR": NARROW, "IT": NARROW}
CAROUSEL = 10  # related families a product page shows
SEARCH_POPULARITY = 0.5  # a search lands on a listing by popularity ** this: the long tail
SIZE_MATCH = 0.8  # a complement keeps the current size (a case and a protector for one phone) when it can
# Session length = 2 + X: P(X = 0..3) as measured on the real sessions, then a Lomax tail
# whose scale sets the locale's mean length.
HEAD = np.array([0.36, 0.21, 0.15, 0.09])
MAX_LENGTH = 500
STAY_RETRIES = 20  # redraws of a move that stayed on its page before a search replaces it
NEXT_ITEM_TRIES = 40  # fresh moves tried for a next item outside the session before searches


class GroupedSampler:
    """Draws an element of a group with probability proportional to its weight, for many
    groups at once, by inverse CDF over one cumulative array."""

    def __init__(self, group_of_element: np.ndarray, weights: np.ndarray, n_groups: int):
        order = np.lexsort((-weights, group_of_element))
        self.elements = order
        self.cumulative = np.cumsum(weights[order])
        counts = np.bincount(group_of_element, minlength=n_groups)
        ends = np.cumsum(counts)
        self.first = np.minimum(ends - counts, order.size - 1)  # the heaviest element of each group
        self.low = np.concatenate([[0.0], self.cumulative])[ends - counts]
        self.high = np.concatenate([[0.0], self.cumulative])[ends]
        self.empty = counts == 0

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One element per requested group; -1 for an empty group."""
        u = self.low[groups] + rng.random(groups.size) * (self.high[groups] - self.low[groups])
        position = np.minimum(np.searchsorted(self.cumulative, u, side="right"), self.cumulative.size - 1)
        return np.where(self.empty[groups], -1, self.elements[position])

    def heaviest(self, groups: np.ndarray) -> np.ndarray:
        """The heaviest element of each requested group (a family's featured variant); -1 if empty."""
        return np.where(self.empty[groups], -1, self.elements[self.first[groups]])


@dataclass
class LocaleMarket:
    """One locale's listings as arrays the simulator indexes by listing number."""

    ids: np.ndarray  # listing -> product id string
    family: np.ndarray  # listing -> local family number
    size: np.ndarray  # listing -> size index or -1
    family_size: np.ndarray  # local family -> number of listed variants
    popular: GroupedSampler  # one group: all listings by popularity
    searched: GroupedSampler  # one group: all listings by popularity ** SEARCH_POPULARITY (flatter)
    variants: GroupedSampler  # group = local family
    competitors: np.ndarray  # [family, rank]: carousel of same-type families, best first
    complements: np.ndarray  # [family, rank]: carousel of complement-type families, best first
    size_stride: int
    size_key: np.ndarray  # sorted family * size_stride + size + 1 keys ...
    size_key_listing: np.ndarray  # ... and their listing

    @classmethod
    def build(cls, rng: np.random.Generator, catalog: Catalog, locale: str) -> LocaleMarket:
        listings = catalog.listings.filter(pl.col("locale") == locale).join(
            catalog.products.select("product", "type", "size_index", "variant_share"), on="product", how="left"
        )
        global_family = listings["family"].to_numpy()
        family_starts = np.flatnonzero(np.r_[True, global_family[1:] != global_family[:-1]])
        family = np.cumsum(np.r_[False, global_family[1:] != global_family[:-1]])
        n_families = family_starts.size
        family_type = listings["type"].to_numpy()[family_starts]
        # Local taste: imported families keep their appeal up to noise.
        family_weight = listings["appeal"].to_numpy()[family_starts] * rng.lognormal(0.0, 0.5, n_families)
        weight = family_weight[family] * listings["variant_share"].to_numpy()
        size = listings["size_index"].to_numpy()
        stride = int(size.max()) + 2
        key = family.astype(np.int64) * stride + size + 1
        order = np.argsort(key, kind="stable")
        competitors, complements = _carousels(rng, family_type, family_weight, catalog.vocab.complements)
        return cls(
            ids=listings["id"].to_numpy(),
            family=family,
            size=size,
            family_size=np.bincount(family, minlength=n_families),
            popular=GroupedSampler(np.zeros(weight.size, dtype=np.int64), weight, 1),
            searched=GroupedSampler(np.zeros(weight.size, dtype=np.int64), weight**SEARCH_POPULARITY, 1),
            variants=GroupedSampler(family, weight, n_families),
            competitors=competitors,
            complements=complements,
            size_stride=stride,
            size_key=key[order],
            size_key_listing=order,
        )

    def with_size(self, families: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """A listing of each family in the given size, -1 where the family has none."""
        wanted = families.astype(np.int64) * self.size_stride + sizes + 1
        position = np.minimum(np.searchsorted(self.size_key, wanted), self.size_key.size - 1)
        return np.where(self.size_key[position] == wanted, self.size_key_listing[position], -1)


def _carousels(
    rng: np.random.Generator, family_type: np.ndarray, appeal: np.ndarray, complement_types: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per family, CAROUSEL competitor and complement families ranked by appeal.

    Families stand on one circular shelf, sorted by type (types of a category are adjacent in
    the vocabulary) in random order within a type. Competitors are a family's nearest shelf
    neighbours; complements stand at the same relative place on each complement type's shelf.
    A small type's window spills into the neighbouring types (and an absent type's into the
    types around its place), so a carousel always holds CAROUSEL families and its reach never
    depends on the catalog's size."""
    n = family_type.size
    shelf = np.lexsort((rng.random(n), family_type))  # shelf place -> family
    place = np.empty(n, dtype=np.int64)
    place[shelf] = np.arange(n)
    half = np.arange(1, CAROUSEL // 2 + 1)
    offsets = np.r_[-half[::-1], half]  # -5..-1, 1..5: the neighbours, never the family itself
    competitors = shelf[(place[:, None] + offsets[None, :]) % n]

    n_types = len(complement_types)
    count = np.bincount(family_type, minlength=n_types)
    type_start = np.cumsum(count) - count
    relative = (place - type_start[family_type] + 0.5) / count[family_type]
    n_complements = np.array([max(c.size, 1) for c in complement_types])
    padded = np.array([np.resize(c if c.size else [t], n_complements.max()) for t, c in enumerate(complement_types)])
    slot = np.arange(CAROUSEL)[None, :]
    per_type = n_complements[family_type][:, None]
    target = padded[family_type[:, None], slot % per_type]
    step = slot // per_type  # 0, 1, 2, ... along the target shelf: offsets 0, +1, -1, +2, ...
    offset = (step + 1) // 2 * np.where(step % 2 == 1, 1, -1)
    at = type_start[target] + np.floor(relative[:, None] * count[target]).astype(np.int64) + offset
    complements = shelf[at % n]

    def by_appeal(carousel: np.ndarray) -> np.ndarray:
        return np.take_along_axis(carousel, np.argsort(-appeal[carousel], axis=1, kind="stable"), axis=1)

    return by_appeal(competitors), by_appeal(complements)


def session_lengths(rng: np.random.Generator, n: int, mean_length: float) -> np.ndarray:
    """Previous-item counts: the real head (36% length 2, 21% 3, ...) and a Lomax tail sized
    so that the mean matches the locale."""
    tail_share = 1.0 - HEAD.sum()
    head_mean = (HEAD * np.arange(4)).sum()
    tail_excess = max(0.05, (mean_length - 2 - head_mean) / tail_share - 4)
    shape = 2.5
    scale = (tail_excess + 0.5) * (shape - 1)  # + 0.5: the floor below takes half a step on average
    extra = np.searchsorted(np.cumsum(np.r_[HEAD, tail_share]), rng.random(n), side="right")
    tail = 4 + np.floor(scale * (rng.random(n) ** (-1 / shape) - 1)).astype(np.int64)
    lengths = 2 + np.where(extra >= 4, tail, extra)
    return np.minimum(lengths, MAX_LENGTH)


def simulate(
    rng: np.random.Generator, market: LocaleMarket, n_sessions: int, mean_length: float, habits: Habits
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (offsets, previous items as one flat listing array, next items): session i's
    previous items are items[offsets[i]:offsets[i + 1]]."""
    lengths = session_lengths(rng, n_sessions, mean_length)
    order = np.argsort(-lengths, kind="stable")  # active sessions form a prefix at every step
    lengths = lengths[order]
    steps = lengths + 1
    starts = np.r_[0, np.cumsum(steps)[:-1]]
    path = np.empty(steps.sum(), dtype=np.int64)
    intent = np.searchsorted(np.cumsum(INTENT_SHARES), rng.random(n_sessions), side="right")
    moves = INTENT_MOVES * (1 - habits.repeat_last - habits.repeat_earlier)
    moves[:, REPEAT_LAST], moves[:, REPEAT_EARLIER] = habits.repeat_last, habits.repeat_earlier
    move_cdf = np.cumsum(moves, axis=1)
    fresh_cdf = np.cumsum(INTENT_MOVES[:, FRESH], axis=1)
    path[starts] = market.popular.sample(rng, np.zeros(n_sessions, dtype=np.int64))
    active_count = np.searchsorted(-steps, -np.arange(steps.max() + 1), side="left")  # sessions with steps > t
    for t in range(1, int(steps.max())):
        n = active_count[t]
        move = _draw(rng, move_cdf[intent[:n]])
        # The next item is never a repeat, and the first step has no earlier item.
        again = ((lengths[:n] == t) & ((move == REPEAT_LAST) | (move == REPEAT_EARLIER))) | (
            (t == 1) & (move == REPEAT_EARLIER)
        )
        move[again] = _fresh(rng, fresh_cdf[intent[:n][again]])
        at = starts[:n] + t
        new = _step(rng, market, habits, move, path, starts[:n], at)
        path[at] = new
    _avoid_session_items(rng, market, habits, path, starts, lengths, fresh_cdf[intent])
    # Reassemble in the original (random) session order.
    inverse = np.argsort(order)
    prev_lengths = lengths[inverse]
    session_starts = starts[inverse]
    offsets = np.r_[0, np.cumsum(prev_lengths)]
    index = np.repeat(session_starts - offsets[:-1], prev_lengths) + np.arange(offsets[-1])
    return offsets, path[index], path[session_starts + prev_lengths]


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One column index per row of cumulative weights (the last column holds the total)."""
    return np.minimum((rng.random(cdf.shape[0])[:, None] * cdf[:, -1:] >= cdf).sum(axis=1), cdf.shape[1] - 1)


def _fresh(rng: np.random.Generator, fresh_cdf: np.ndarray) -> np.ndarray:
    """Moves drawn from each row's intent without its repeats."""
    return np.array(FRESH)[_draw(rng, fresh_cdf)]


def _carousel_click(rng: np.random.Generator, carousel: np.ndarray, decay: float) -> np.ndarray:
    """One family per carousel row, rank r clicked with weight (r + 1) ** -decay."""
    cdf = np.cumsum(np.arange(1, CAROUSEL + 1) ** -decay)
    rank = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(carousel.shape[0]), side="right"), CAROUSEL - 1)
    return carousel[np.arange(carousel.shape[0]), rank]


def _step(
    rng, market: LocaleMarket, habits: Habits, move: np.ndarray, path: np.ndarray, starts: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """The items at path positions `at` (one per session, after its `starts`) given the moves.
    Fresh moves start from the current page or, after the back button, from the one before,
    and never stay on either (redrawn, then a search)."""
    cur = path[at - 1]
    back = (rng.random(at.size) < habits.back) & (at - starts >= 2) & (move <= COMPLEMENT)
    origin = np.where(back, path[np.maximum(at - 2, starts)], cur)
    new = _open(rng, market, habits, move, origin)
    fresh = (move != REPEAT_LAST) & (move != REPEAT_EARLIER)
    for attempt in range(STAY_RETRIES + 1):
        stay = np.flatnonzero(fresh & ((new == cur) | (new == origin)))
        if stay.size == 0:
            break
        retry = move[stay] if attempt < STAY_RETRIES else np.full(stay.size, SEARCH)
        new[stay] = _open(rng, market, habits, retry, origin[stay])

    chosen = move == REPEAT_LAST
    new[chosen] = cur[chosen]
    chosen = move == REPEAT_EARLIER
    if chosen.any():
        span = at[chosen] - starts[chosen] - 1  # items before the current one
        new[chosen] = path[starts[chosen] + (rng.random(span.size) * span).astype(np.int64)]
    return new


def _open(rng, market: LocaleMarket, habits: Habits, move: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The item a fresh move opens from page `origin` (repeat moves are left as -1)."""
    new = np.full_like(origin, -1)
    family = market.family[origin]
    # A family with no other variant to browse: compare instead.
    move = np.where((move == VARIANT) & (market.family_size[family] < 2), COMPARE, move)

    chosen = move == VARIANT
    if chosen.any():
        pick = market.variants.sample(rng, family[chosen])
        # Another variant: step to the neighbour when the draw returned the origin.
        neighbour = np.minimum(origin[chosen] + 1, market.family.size - 1)
        neighbour = np.where(market.family[neighbour] == family[chosen], neighbour, np.maximum(origin[chosen] - 1, 0))
        new[chosen] = np.where(pick == origin[chosen], neighbour, pick)

    chosen = move == COMPARE
    if chosen.any():
        new[chosen] = market.variants.heaviest(
            _carousel_click(rng, market.competitors[family[chosen]], habits.carousel_decay)
        )

    chosen = move == COMPLEMENT
    if chosen.any():
        other = _carousel_click(rng, market.complements[family[chosen]], habits.carousel_decay)
        matched = market.with_size(other, market.size[origin[chosen]])
        featured = market.variants.heaviest(other)
        new[chosen] = np.where((matched >= 0) & (rng.random(other.size) < SIZE_MATCH), matched, featured)

    chosen = move == SEARCH
    if chosen.any():
        new[chosen] = market.searched.sample(rng, np.zeros(chosen.sum(), dtype=np.int64))
    return new


def _avoid_session_items(rng, market: LocaleMarket, habits: Habits, path, starts, lengths, fresh_cdf) -> None:
    """Redraw next items that repeat a session item: fresh moves first (the user goes on to
    something new), then searches, until none does."""
    n_listings = market.ids.size
    session_of_item = np.repeat(np.arange(lengths.size), lengths)
    item_index = np.repeat(starts, lengths) + (
        np.arange(lengths.sum()) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    )
    seen = np.unique(session_of_item * n_listings + path[item_index])
    final = starts + lengths
    todo = np.arange(lengths.size)
    for attempt in range(100):
        key = todo * n_listings + path[final[todo]]
        clash = seen[np.minimum(np.searchsorted(seen, key), seen.size - 1)] == key
        todo = todo[clash]
        if todo.size == 0:
            return
        move = _fresh(rng, fresh_cdf[todo]) if attempt < NEXT_ITEM_TRIES else np.full(todo.size, SEARCH)
        path[final[todo]] = _step(rng, market, habits, move, path, starts[todo], final[todo])
    raise RuntimeError("could not draw next items outside their sessions; is the catalog tiny?")
