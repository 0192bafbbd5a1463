"""A synthetic multilingual product catalog with the shape of the Amazon-M2 one.

Products come in families (one brand, type, model and material) whose variants differ in
color, size and pack size; types have directed complements (phone case -> screen protector).
Each family has a home locale; some are also listed elsewhere (ES/FR/IT share more with each
other than UK/DE do, JP shares nothing). Family appeal (popularity) is lognormal with its top
cut, so no product dominates a locale; a small catalog lists fewer product types, so each type
still has families to compare, as in a large one. Titles are composed per locale language from the
vocabulary in `llmrec/data/vocab/catalog.json`, all columnar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from llmrec.data.schema import LANGUAGE, LOCALES, PRICE_PLACEHOLDER

LANGS = ("en", "de", "ja", "es", "fr", "it")
TITLE_FIELDS = ("brand", "adjective", "type", "model", "material", "color", "size", "pack")

# Locale currency factor on EUR prices and share of products listed in other locales:
# IMPORTS[L] = {source locale: fraction of L's listings that are families imported from it}.
CURRENCY = {"UK": 0.87, "DE": 1.0, "JP": 160.0, "ES": 1.0, "FR": 1.0, "IT": 1.0}
IMPORTS = {
    "UK": {"DE": 0.02},
    "DE": {"UK": 0.02},
    "JP": {},
    "ES": {"FR": 0.035, "IT": 0.035, "DE": 0.02, "UK": 0.01},
    "FR": {"ES": 0.035, "IT": 0.035, "DE": 0.02, "UK": 0.01},
    "IT": {"ES": 0.035, "FR": 0.035, "DE": 0.02, "UK": 0.01},
}
BOOK_SHARE = 0.024  # ISBN-10 ids among all ids
# Probability that an attribute column is left empty although the title mentions the value.
EMPTY_FIELD = {"brand": 0.04, "color": 0.25, "size": 0.4, "model": 0.45, "material": 0.6, "desc": 0.15}
PRICE_MISSING = 0.03
APPEAL_CAP = 3.0  # family appeal is cut at this many standard deviations above its median
FAMILIES_PER_TYPE = 12  # a catalog lists at most one product type per this many families


@cache
def vocabulary() -> dict:
    text = resources.files("llmrec.data").joinpath("vocab/catalog.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Vocab:
    """The JSON vocabulary flattened into integer-indexed arrays."""

    type_keys: list[str]
    type_names: dict[str, np.ndarray]  # lang -> [n_types] names
    type_scheme: np.ndarray  # [n_types] size-scheme index
    type_has_colors: np.ndarray  # [n_types] bool
    type_packs: list[np.ndarray]  # per type: allowed pack counts
    type_price: np.ndarray  # [n_types, 2] EUR range
    type_category: np.ndarray  # [n_types]
    type_adjectives: list[np.ndarray]  # per type: indices into adjectives
    type_materials: list[np.ndarray]  # per type: indices into materials that make sense for it
    adjectives: dict[str, np.ndarray]  # lang -> names
    complements: list[np.ndarray]  # per type: complement type indices
    schemes: list[np.ndarray]  # per scheme: size strings
    colors: dict[str, np.ndarray]
    materials: dict[str, np.ndarray]

    @classmethod
    def load(cls) -> Vocab:
        raw = vocabulary()
        scheme_keys = list(raw["size_schemes"])
        types = [(c, t) for c, category in enumerate(raw["categories"]) for t in category["types"]]
        keys = [t["key"] for _, t in types]
        material_names = [m["en"] for m in raw["materials"]]
        adjectives, type_adjectives = [], []
        for _, t in types:
            type_adjectives.append(np.arange(len(adjectives), len(adjectives) + len(t["adjectives"])))
            adjectives.extend(t["adjectives"])
        return cls(
            type_keys=keys,
            type_names={lang: np.array([t["names"][lang] for _, t in types], dtype=object) for lang in LANGS},
            type_scheme=np.array([scheme_keys.index(t["size_scheme"]) for _, t in types]),
            type_has_colors=np.array([bool(t["colors"]) for _, t in types]),
            type_packs=[np.array(t["pack_sizes"]) for _, t in types],
            type_price=np.array([t["price"] for _, t in types], dtype=float),
            type_category=np.array([c for c, _ in types]),
            type_adjectives=type_adjectives,
            type_materials=[
                np.array([material_names.index(m) for m in t.get("materials", material_names)], dtype=np.int64)
                for _, t in types
            ],
            adjectives={lang: np.array([a[lang] for a in adjectives], dtype=object) for lang in LANGS},
            complements=[np.array([keys.index(k) for k in t["complements"]]) for _, t in types],
            schemes=[np.array(raw["size_schemes"][k], dtype=object) for k in scheme_keys],
            colors={lang: np.array([c[lang] for c in raw["colors"]], dtype=object) for lang in LANGS},
            materials={lang: np.array([m[lang] for m in raw["materials"]], dtype=object) for lang in LANGS},
        )


@dataclass(frozen=True)
class Catalog:
    """Products (one row per id) and listings (one row per id and locale).

    `products`: product, family, type, color, size_index, pack, book, price_eur, id.
    `families`: family, type, brand, model, material, adjective, home, appeal, book fields.
    `listings`: product, locale, title, price, brand, color, size, model, material, author, desc,
    ordered by locale then family so that a family's variants are contiguous.
    """

    vocab: Vocab
    families: pl.DataFrame
    products: pl.DataFrame
    listings: pl.DataFrame


def _ids(rng: np.random.Generator, n: int, book: np.ndarray) -> np.ndarray:
    """Unique 10-character ids: ASIN-like 'B0' + 8 base-36 characters, ISBN-10 for books."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    ids = np.empty((n, 10), dtype=np.uint8)
    while True:
        ids[:, 0], ids[:, 1] = ord("B"), ord("0")
        ids[:, 2:] = alphabet[rng.integers(0, 36, size=(n, 8))]
        digits = rng.integers(0, 10, size=(n, 9))
        check = (11 - (digits * np.arange(10, 1, -1)).sum(axis=1) % 11) % 11
        isbn = np.concatenate([digits + ord("0"), np.where(check == 10, ord("X"), check + ord("0"))[:, None]], axis=1)
        ids[book] = isbn[book]
        strings = ids.view("S10").ravel()
        if np.unique(strings).size == n:
            return strings.astype(str)


def build_catalog(rng: np.random.Generator, products_per_locale: dict[str, int], appeal_sigma: float = 1.6) -> Catalog:
    vocab = Vocab.load()
    raw = vocabulary()
    n_types = len(vocab.type_keys)

    # Home families per locale, sized so that home + imported listings meet the target.
    mean_variants = 2.6
    home_products = {loc: max(8, int(n * (1 - sum(IMPORTS[loc].values())))) for loc, n in products_per_locale.items()}
    n_families_home = {loc: max(4, round(n / mean_variants)) for loc, n in home_products.items()}
    home = np.concatenate([np.full(n, LOCALES.index(loc)) for loc, n in n_families_home.items()])
    n_fam = home.size

    book = rng.random(n_fam) < BOOK_SHARE
    # Variants per family: many singletons, some large families (geometric, capped).
    n_variants = np.where(book, rng.integers(1, 3, n_fam), np.minimum(rng.geometric(1 / mean_variants, n_fam), 16))
    # A small catalog lists fewer product types, whole categories first (a type's complements are
    # mostly in its category), each with enough families to compare and complement: its sessions
    # then have the structure of a large catalog's.
    category_rank = rng.permutation(vocab.type_category.max() + 1)
    type_order = np.lexsort((np.arange(n_types), category_rank[vocab.type_category]))
    listed_types = np.concatenate(
        [np.full(n, min(n_types, max(1, n // FAMILIES_PER_TYPE))) for n in n_families_home.values()]
    )
    ftype = type_order[(rng.random(n_fam) * listed_types).astype(np.int64)]
    n_brands = max(20, n_fam // 12)
    brand_category = rng.integers(0, vocab.type_category.max() + 1, n_brands)
    # A family's brand comes from brands of its category, skewed towards big brands.
    brands_by_category = [np.flatnonzero(brand_category == c) for c in range(vocab.type_category.max() + 1)]
    brand = np.empty(n_fam, dtype=np.int64)
    for c, pool in enumerate(brands_by_category):
        members = np.flatnonzero(vocab.type_category[ftype] == c)
        if pool.size == 0:
            pool = np.arange(n_brands)
        brand[members] = pool[np.minimum((pool.size * rng.random(members.size) ** 2.0).astype(int), pool.size - 1)]
    # Lognormal appeal, its top cut at APPEAL_CAP standard deviations: no product dominates a locale.
    appeal = np.exp(appeal_sigma * np.minimum(rng.standard_normal(n_fam), APPEAL_CAP))
    families = pl.DataFrame(
        {
            "family": np.arange(n_fam),
            "type": ftype,
            "brand": brand,
            "model": _strings(_model_codes(rng, n_fam, raw["model_prefixes"])),
            "material": _pick(rng, vocab.type_materials, ftype, share=0.7),
            "adjective": _pick(rng, vocab.type_adjectives, ftype, share=0.8),
            "home": home,
            "appeal": appeal,
            "book": book,
            "n_variants": n_variants,
            "template": rng.integers(0, 12, n_fam),
        }
    )

    # Variants differ in color and size where the type has them; shares favour the first variant.
    product_family = np.repeat(np.arange(n_fam), n_variants)
    n_products = product_family.size
    rank_in_family = np.arange(n_products) - np.repeat(np.cumsum(n_variants) - n_variants, n_variants)
    ptype = ftype[product_family]
    scheme_sizes = np.array([len(s) for s in vocab.schemes])
    n_sizes = scheme_sizes[vocab.type_scheme[ptype]]
    base_size = rng.integers(0, np.maximum(n_sizes, 1))
    size_index = np.where(
        n_sizes > 0, (base_size + rank_in_family // 2 * (rng.random(n_products) < 0.6)) % np.maximum(n_sizes, 1), -1
    )
    has_colors = vocab.type_has_colors[ptype]
    # Later variants step through the colors from the first variant's (and every other one,
    # often through the sizes too), so a family's variants are distinct.
    first_variant = np.repeat(np.cumsum(n_variants) - n_variants, n_variants)
    color = rng.integers(0, len(raw["colors"]), n_products)
    color = np.where(has_colors, (color[first_variant] + rank_in_family) % len(raw["colors"]), -1)
    pack = np.ones(n_products, dtype=np.int64)
    for t, choices in enumerate(vocab.type_packs):
        members = np.flatnonzero(ptype == t)
        if members.size and choices.size > 1:
            pack[members] = choices[rng.integers(0, choices.size, members.size)]
    pbook = book[product_family]
    book_low, book_high = raw["books"]["price"]
    low = np.where(pbook, book_low, vocab.type_price[ptype, 0])
    high = np.where(pbook, book_high, vocab.type_price[ptype, 1])
    family_level = np.exp(rng.uniform(0, 1, n_fam))[product_family]
    price_eur = (low + (high - low) * (family_level - 1) / (np.e - 1)) * np.where(
        pbook, 1.0, (1 + 0.12 * np.maximum(size_index, 0)) * pack**0.8
    )
    products = pl.DataFrame(
        {
            "product": np.arange(n_products),
            "family": product_family,
            "type": ptype,
            "color": color,
            "size_index": size_index,
            "pack": pack,
            "book": pbook,
            "variant_share": rng.lognormal(0.0, 0.5, n_products) / (1 + rank_in_family) ** 0.8,
            "price_eur": price_eur,
            "id": _ids(rng, n_products, pbook),
        }
    )
    listings = _listings(rng, families, products, products_per_locale)
    listings = _with_text(rng, vocab, raw, families, products, listings)
    return Catalog(vocab=vocab, families=families, products=products, listings=listings)


def _model_codes(rng: np.random.Generator, n: int, prefixes: list[str]) -> np.ndarray:
    prefix = np.array(prefixes, dtype=object)[rng.integers(0, len(prefixes), n)]
    number = rng.integers(1, 1000, n).astype(str).astype(object)
    dash = np.where(rng.random(n) < 0.3, "-", np.where(rng.random(n) < 0.5, " ", "")).astype(object)
    codes = prefix + dash + number
    return np.where(rng.random(n) < 0.75, codes, None)


def _pick(rng: np.random.Generator, options: list[np.ndarray], ftype: np.ndarray, share: float) -> np.ndarray:
    """Per family, one of its type's options (adjectives, materials) with probability `share`, else -1."""
    counts = np.array([o.size for o in options])
    flat = np.concatenate(options + [np.array([-1])])
    first = np.r_[0, np.cumsum(counts)[:-1]]
    offset = (rng.random(ftype.size) * counts[ftype]).astype(int)
    chosen = np.where(counts[ftype] > 0, flat[first[ftype] + offset], -1)
    return np.where(rng.random(ftype.size) < share, chosen, -1)


def _listings(
    rng: np.random.Generator, families: pl.DataFrame, products: pl.DataFrame, targets: dict[str, int]
) -> pl.DataFrame:
    """Each family is listed in its home locale; whole families are imported into other locales."""
    home = families["home"].to_numpy()
    sizes = families["n_variants"].to_numpy()
    rows = [families.select("family", pl.col("home").alias("locale_index"))]
    for loc, sources in IMPORTS.items():
        for source, share in sources.items():
            pool = np.flatnonzero(home == LOCALES.index(source))
            wanted = int(targets[loc] * share)
            if wanted == 0 or pool.size == 0:
                continue
            order = rng.permutation(pool)
            take = order[: max(1, int(np.searchsorted(np.cumsum(sizes[order]), wanted)))]
            rows.append(pl.DataFrame({"family": take, "locale_index": np.full(take.size, LOCALES.index(loc))}))
    listed = pl.concat(rows).unique(maintain_order=True)
    return (
        listed.join(products.select("product", "family"), on="family")
        .with_columns(pl.col("locale_index").cast(pl.Int64))
        .sort("locale_index", "family", "product")
    )


def _strings(values: np.ndarray) -> pl.Series:
    """A string column from an object array that may hold None."""
    return pl.Series(values.tolist(), dtype=pl.String)


def _lookup(values: np.ndarray, index: np.ndarray) -> pl.Series:
    """values[index] with index -1 as null."""
    out = np.where(index >= 0, values[np.maximum(index, 0)], None) if values.size else np.full(index.size, None)
    return _strings(out)


def _with_text(
    rng, vocab: Vocab, raw: dict, families: pl.DataFrame, products: pl.DataFrame, listings: pl.DataFrame
) -> pl.DataFrame:
    """Localized titles, attribute columns, descriptions and prices for every listing."""
    frame = listings.join(products, on=["product", "family"], how="left").join(
        families.select("family", "brand", "model", "material", "adjective", "template", "appeal"),
        on="family",
        how="left",
    )
    brands = _brand_names(rng, raw["brand_parts"], int(families["brand"].max()) + 1)
    parts = []
    for li, loc in enumerate(LOCALES):
        lang = LANGUAGE[loc]
        part = frame.filter(pl.col("locale_index") == li)
        if part.height == 0:
            continue
        t = part["type"].to_numpy()
        scheme = vocab.type_scheme[t]
        size_idx = part["size_index"].to_numpy()
        sizes = _sizes(vocab, scheme, size_idx)
        pack = part["pack"].to_numpy()
        pack_text = np.where(
            pack > 1, np.char.replace(np.full(pack.size, raw["pack"][lang]), "{n}", pack.astype(str)), None
        )
        fields = pl.DataFrame(
            {
                "brand": _strings(brands[part["brand"].to_numpy()]),
                "adjective": _lookup(vocab.adjectives[lang], part["adjective"].to_numpy()),
                "type": _strings(vocab.type_names[lang][t]),
                "model": part["model"],
                "material": _lookup(vocab.materials[lang], part["material"].to_numpy()),
                "color": _lookup(vocab.colors[lang], part["color"].to_numpy()),
                "size": _strings(sizes),
                "pack": _strings(pack_text),
                "template": part["template"],
            }
        )
        title = _render(raw["title_templates"][lang], fields)
        desc = _render(raw["desc_templates"][lang], fields)
        books = _book_text(rng, raw["books"], lang, part.height)
        currency = CURRENCY[loc]
        price = part["price_eur"].to_numpy() * currency * rng.uniform(0.9, 1.1, part.height)
        price = (
            np.round(price)
            if currency > 100
            else np.where(rng.random(part.height) < 0.6, np.ceil(price) - 0.01, np.round(price, 2))
        )
        price = np.where(
            rng.random(part.height) < PRICE_MISSING, PRICE_PLACEHOLDER, np.maximum(price, 1 if currency > 100 else 0.5)
        )
        # Attribute columns are often empty even when the title names the value.
        keep = pl.DataFrame({f"keep_{k}": rng.random(part.height) >= p for k, p in EMPTY_FIELD.items()})
        columns = pl.concat(
            [
                fields,
                keep,
                pl.DataFrame(
                    {
                        "is_book": part["book"],
                        "title": title,
                        "desc": desc,
                        "book_title": books["title"],
                        "author": books["author"],
                        "genre": books["genre"],
                        "price": price,
                    }
                ),
            ],
            how="horizontal",
        )
        book, product = pl.col("is_book"), ~pl.col("is_book")
        text = columns.select(
            pl.when(book).then("book_title").otherwise("title").alias("title"),
            "price",
            pl.when(product & pl.col("keep_brand")).then("brand").alias("brand"),
            pl.when(product & pl.col("keep_color")).then("color").alias("color"),
            pl.when(product & pl.col("keep_size")).then("size").alias("size"),
            pl.when(product & pl.col("keep_model")).then("model").alias("model"),
            pl.when(product & pl.col("keep_material")).then("material").alias("material"),
            pl.when(book).then("author").alias("author"),
            pl.when(pl.col("keep_desc")).then(pl.when(book).then("genre").otherwise("desc")).alias("desc"),
        )
        parts.append(
            pl.concat([part.select("product", "family", "locale_index", "id", "appeal"), text], how="horizontal")
        )
    return pl.concat(parts).with_columns(
        pl.col("locale_index").replace_strict(list(range(6)), list(LOCALES)).alias("locale")
    )


def _sizes(vocab: Vocab, scheme: np.ndarray, size_idx: np.ndarray) -> np.ndarray:
    flat = np.concatenate([s for s in vocab.schemes] + [np.array([None], dtype=object)])
    starts = np.concatenate([[0], np.cumsum([len(s) for s in vocab.schemes])])[:-1]
    return np.where(size_idx >= 0, flat[np.where(size_idx >= 0, starts[scheme] + size_idx, -1)], None)


def _render(templates: list[str], fields: pl.DataFrame) -> pl.Series:
    """Fill '|'-separated segment templates; a segment whose field is null disappears."""
    choice = pl.col("template") % len(templates)
    expression = None
    for i, template in enumerate(templates):
        rendered = pl.concat_str([_segment(segment) for segment in template.split("|")], ignore_nulls=True)
        expression = (
            pl.when(choice == i).then(rendered) if expression is None else expression.when(choice == i).then(rendered)
        )
    return fields.select(expression.otherwise(None).str.strip_chars(" ,").alias("text")).to_series()


def _segment(segment: str) -> pl.Expr:
    start, end = segment.index("{"), segment.index("}")
    column = pl.col(segment[start + 1 : end])
    return pl.concat_str([pl.lit(segment[:start]), column, pl.lit(segment[end + 1 :])])


def _brand_names(rng: np.random.Generator, parts: dict, n: int) -> np.ndarray:
    start = np.array(parts["start"], dtype=object)
    end = np.array(parts["end"], dtype=object)
    middle = np.array([s.lower() for s in parts["start"]], dtype=object)
    names = (
        start[rng.integers(0, start.size, n)]
        + np.where(rng.random(n) < 0.35, middle[rng.integers(0, middle.size, n)], "")
        + end[rng.integers(0, end.size, n)]
    )
    upper = rng.random(n) < 0.25
    names[upper] = np.char.upper(names[upper].astype(str)).astype(object)
    return names


def _book_text(rng: np.random.Generator, books: dict, lang: str, n: int) -> dict[str, pl.Series]:
    words = np.array(books["title_words"][lang], dtype=object)
    patterns = pl.Series(
        np.array(books["title_patterns"][lang], dtype=object)[rng.integers(0, len(books["title_patterns"][lang]), n)],
        dtype=pl.String,
    )
    a, b, c = (pl.Series(words[rng.integers(0, words.size, n)], dtype=pl.String) for _ in range(3))
    title = (
        pl.DataFrame({"p": patterns, "a": a, "b": b, "c": c})
        .select(
            pl.col("p")
            .str.replace("{a}", pl.col("a"), literal=True)
            .str.replace("{b}", pl.col("b"), literal=True)
            .str.replace("{c}", pl.col("c"), literal=True)
        )
        .to_series()
    )
    fmt = np.array(books["formats"][lang], dtype=object)[rng.integers(0, len(books["formats"][lang]), n)]
    first = np.array(books["first_names"][lang], dtype=object)[rng.integers(0, len(books["first_names"][lang]), n)]
    last = np.array(books["last_names"][lang], dtype=object)[rng.integers(0, len(books["last_names"][lang]), n)]
    author = first + " " + last if lang != "ja" else last + " " + first
    genre = np.array([g[lang] for g in books["genres"]], dtype=object)[rng.integers(0, len(books["genres"]), n)]
    fields = pl.DataFrame(
        {
            "title": title,
            "format": pl.Series(fmt, dtype=pl.String),
            "author": pl.Series(author, dtype=pl.String),
            "genre": pl.Series(genre, dtype=pl.String),
            "template": rng.integers(0, 2, n),
        }
    )
    return {"title": _render(books_templates(lang), fields), "author": fields["author"], "genre": fields["genre"]}


def books_templates(lang: str) -> list[str]:
    return vocabulary()["book_templates"][lang]
