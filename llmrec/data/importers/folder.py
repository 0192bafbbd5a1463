"""What every importer shares: the leave-one-out protocol, product ids, text cleaning and the
folder it writes (the Amazon-M2 layout, readable unchanged by `llmrec.data.dataset.AmazonM2`).

Per user (items oldest first, n of them): the last item is the test target, the second-last the
validation target, the rest the training part. Every session shows at most `window` items, the
latest before its target, and at least 2 (M2's minimum), so a user needs at least 4 items.

Folder written into `out`:
- `products_train.csv`: the M2 columns plus `categories`, locale `UK`, ids of 10 characters;
- `sessions_train.csv`: one session per target of the training parts (those with >= 2 items
  before them; with `prefixes` = k only the last k per user);
- `sessions_valid.csv`: one validation session per user; it is the folder's `valid` split;
- `task1/sessions_test_task1_phase1.csv` + `gt_task1_phase1.csv` (next_item, locale) and
  `task3/...` + `gt_task3_phase1.csv` (next_item_title, locale): the same test sessions, one per user;
- `users.csv`: the user of each validation and test row, in their order;
- `item_ids.csv`: each product id beside the item it was made from;
- `dataset.yaml`: source files (sha256), protocol and counts; written last, so a folder
  without it is unfinished.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from llmrec import io
from llmrec.data.errors import DataFormatError
from llmrec.data.schema import (
    ID_LENGTH,
    MIN_SESSION_LENGTH,
    PRODUCTS_FILE,
    TRAIN_FILE,
    VALID_FILE,
    ground_truth_file,
    test_file,
)
from llmrec.data.write import write_sessions

MANIFEST = "dataset.yaml"
PROMPT_TEMPLATE = "purchases"  # what `prompt.template: auto` renders: a user's history over time, not a session
LOCALE = "UK"  # one English locale: the prompts speak English, the catalogue is one market
MIN_USER_ITEMS = MIN_SESSION_LENGTH + 2  # inputs of the validation session, its target, the test target
TEST_TASKS = (1, 3)  # task 1 scores ranked items, task 3 the next title; same sessions
_NUMBER = r"^(0|[1-9][0-9]{0,8})$"  # item numbers up to 10^9 - 1 become I + 9 digits
_KEEP = rf"^[A-Za-z0-9]{{{ID_LENGTH}}}$"  # ASINs and ISBN-10s stay as they are
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class ImportConfig:
    window: int = 20  # items a session shows at most: the latest before its target
    prefixes: int = 0  # training targets per user, counted back from the end of the training part; 0: all
    skip_short_users: bool = False  # users with fewer than 4 items: an error, or left out and counted

    def __post_init__(self) -> None:
        if self.window < MIN_SESSION_LENGTH:
            raise ValueError(f"window must be at least {MIN_SESSION_LENGTH} (M2's shortest session), got {self.window}")
        if self.prefixes < 0:
            raise ValueError(f"prefixes must be >= 0 (0: all), got {self.prefixes}")


@dataclass(frozen=True)
class Source:
    """Where the input came from, for error messages: sequences name a user's `row` (its
    record) and the fields that hold users and items."""

    sequences: Path
    items: Path
    user_field: str
    item_field: str


def product_ids(items: pl.Series) -> pl.Series:
    """A stable 10-character id per item key: `I` + 9 digits for item numbers (`4343` ->
    `I000004343`), 10-character alphanumeric keys (ASINs, ISBN-10s) unchanged, any other key
    `H` + 9 base-62 characters of its BLAKE2b hash. Ids depend on the key alone."""
    keys = items.cast(pl.String)
    hashed = {
        key: "H" + _base62(hashlib.blake2b(key.encode(), digest_size=8).digest(), ID_LENGTH - 1)
        for key in keys.filter(~keys.str.contains(_NUMBER) & ~keys.str.contains(_KEEP)).to_list()
    }
    return (
        pl.select(
            pl.when(keys.str.contains(_NUMBER))
            .then(pl.lit("I") + keys.str.zfill(ID_LENGTH - 1))
            .when(keys.str.contains(_KEEP))
            .then(keys)
            .otherwise(keys.replace_strict(hashed, default=None, return_dtype=pl.String))
        )
        .to_series()
        .alias("id")
    )


def _base62(digest: bytes, length: int) -> str:
    number, characters = int.from_bytes(digest), []
    for _ in range(length):
        number, digit = divmod(number, len(_BASE62))
        characters.append(_BASE62[digit])
    return "".join(characters)


def clean_text(values: pl.Series, appended_period: bool = False) -> pl.Series:
    """HTML entities decoded (`&amp;` -> `&`), whitespace runs made one space, ends trimmed,
    with `appended_period` one trailing "." removed (LC-Rec appends one to every title);
    empty results become null."""
    text = values.cast(pl.String)
    escaped = text.str.contains("&", literal=True).fill_null(False)
    if escaped.any():
        text = pl.select(
            pl.when(escaped).then(text.map_elements(html.unescape, return_dtype=pl.String)).otherwise(text)
        ).to_series()
    text = text.str.replace_all(r"\s+", " ").str.strip_chars()
    if appended_period:
        text = text.str.strip_suffix(".").str.strip_chars()
    return pl.select(pl.when(text.str.len_chars() > 0).then(text)).to_series().alias(values.name)


def write_folder(
    sequences: pl.DataFrame, items: pl.DataFrame, out: Path, config: ImportConfig, source: Source, origin: str
) -> Path:
    """Write the leave-one-out folder. `sequences`: one row per user in output order, `user`,
    `row` (its record in the source, for errors), `items` (list of item keys, oldest first) and
    optionally `rows` (each interaction's record); `items`: the catalogue (`item`, `row`,
    `title`, `desc`, `brand`, `categories`), titles already cleaned and checked."""
    ids = _assign_ids(items, source)
    interactions = _known_items(sequences, ids, source)
    kept, skipped = _long_enough(sequences, config, source)
    sessions = _sessions(interactions.join(kept, on="user", how="semi", maintain_order="left"), config)
    out = Path(out)
    _claim(out)  # only now: a refused input leaves an earlier import as it was
    titles = ids.select(pl.col("id").alias("next_item"), pl.col("title").alias("next_item_title"))
    absent = [pl.lit(None, pl.String).alias(c) for c in ("color", "size", "model", "material", "author")]
    products = ids.select(
        "id",
        pl.lit(LOCALE).alias("locale"),
        "title",
        pl.lit(None, pl.Float64).alias("price"),
        "brand",
        *absent,
        "desc",
        "categories",
    )
    io.write_csv(products, out / f"{PRODUCTS_FILE}.csv")
    write_sessions(sessions["train"], out / f"{TRAIN_FILE}.csv")
    write_sessions(sessions["valid"], out / f"{VALID_FILE}.csv")
    test = sessions["test"]
    for task in TEST_TASKS:
        write_sessions(test.drop("next_item"), out / f"{test_file(task, 1)}.csv")
        truth = test.select("next_item", "locale")
        if task == 3:
            truth = truth.join(titles, on="next_item", how="left", maintain_order="left").select(
                "next_item_title", "locale"
            )
        io.write_csv(truth, out / f"{ground_truth_file(task, 1)}.csv")
    io.write_csv(test.select("user"), out / "users.csv")
    io.write_csv(ids.select("id", "item"), out / "item_ids.csv")
    manifest = {
        "source": {"format": origin, "files": {p.name: _sha256(p) for p in (source.sequences, source.items)}},
        "protocol": "leave-one-out",
        "config": asdict(config),
        "locale": LOCALE,
        "prompt_template": PROMPT_TEMPLATE,
        "counts": {
            "users": test.height,
            "users_skipped": skipped,
            "products": products.height,
            "interactions": int(kept["items"].list.len().sum()),
            "sessions_train": sessions["train"].height,
            "sessions_valid": sessions["valid"].height,
            "sessions_test": test.height,
        },
    }
    io.write_yaml(manifest, out / MANIFEST)
    return out


def _claim(out: Path) -> None:
    """An import writes into an empty folder or over an earlier import, whose manifest goes
    first so that an interrupted rewrite is visibly unfinished."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file: choose a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).exists():
            raise FileExistsError(
                f"{out} is not empty and holds no {MANIFEST} of an earlier import: choose a new folder"
            )
        (out / MANIFEST).unlink()


def _assign_ids(items: pl.DataFrame, source: Source) -> pl.DataFrame:
    ids = items.with_columns(product_ids(items["item"]))
    clash = ids.filter(pl.col("id").is_duplicated() & ~pl.col("id").is_first_distinct()).head(1)
    if clash.height:
        first = ids.filter(pl.col("id") == clash["id"][0])["item"][0]
        raise DataFormatError(
            source.items,
            f"items {first!r} and {clash['item'][0]!r} both become id {clash['id'][0]}",
            row=clash["row"][0],
            field="item",
        )
    return ids


def _known_items(sequences: pl.DataFrame, ids: pl.DataFrame, source: Source) -> pl.DataFrame:
    """One row per interaction (`user`, `id`), users in order; an item missing from the
    catalogue is an error naming its record (or its user's) and position."""
    rows = "rows" if "rows" in sequences.columns else None
    interactions = (
        sequences.filter(pl.col("items").list.len() > 0)
        .select(
            "user",
            "row",
            "items",
            *([rows] if rows else []),
            pl.int_ranges(pl.col("items").list.len()).alias("position"),
        )
        .explode("items", *([rows] if rows else []), "position")
    )
    joined = interactions.join(
        ids.select(pl.col("item").alias("items"), "id"), on="items", how="left", maintain_order="left"
    )
    unknown = joined.filter(pl.col("id").is_null()).head(1)
    if unknown.height:
        found = unknown.row(0, named=True)
        raise DataFormatError(
            source.sequences,
            f"user {found['user']!r}, item {found['position'] + 1}: {found['items']!r} is not in {source.items.name}",
            row=found[rows] if rows else found["row"],
            field=source.item_field,
        )
    return joined.select("user", "id")


def _long_enough(sequences: pl.DataFrame, config: ImportConfig, source: Source) -> tuple[pl.DataFrame, int]:
    """Users with fewer than MIN_USER_ITEMS items: an error naming the first, or (with
    `skip_short_users`) left out; returns the users kept and how many were left out."""
    short = sequences.filter(pl.col("items").list.len() < MIN_USER_ITEMS)
    if short.height and not config.skip_short_users:
        user, row, n = short["user"][0], short["row"][0], short["items"][0].len()
        raise DataFormatError(
            source.sequences,
            f"user {user!r} has {n} item(s); leave-one-out needs at least {MIN_USER_ITEMS} "
            f"({MIN_SESSION_LENGTH} inputs, a validation and a test target): leave such users out "
            "with skip_short_users",
            row=row,
            field=source.user_field,
        )
    return sequences.filter(pl.col("items").list.len() >= MIN_USER_ITEMS), short.height


def _sessions(sequences: pl.DataFrame, config: ImportConfig) -> dict[str, pl.DataFrame]:
    """Every interaction at position >= 2 becomes a (prev_items, next_item) pair whose inputs
    are the `window` items before it; the last two per user are the test and validation pairs.
    `sequences` has one row per interaction, each user's together and oldest first."""
    long = sequences.select("user", "id").with_columns(
        pl.col("user").is_first_distinct().cum_sum().alias("order"),
        pl.int_range(pl.len()).over("user").alias("pos"),
        pl.len().over("user").alias("n"),
    )
    windows = long.rolling(index_column="pos", period=f"{config.window}i", closed="left", group_by="order").agg(
        pl.col("id").alias("prev_items")
    )
    pairs = (
        long.join(windows, on=["order", "pos"])
        .sort("order", "pos")
        .select("user", "pos", "n", "prev_items", pl.col("id").alias("next_item"), pl.lit(LOCALE).alias("locale"))
    )
    train_end = pl.col("n") - 2
    first_target = (
        pl.max_horizontal(pl.lit(MIN_SESSION_LENGTH), train_end - config.prefixes)
        if config.prefixes
        else pl.lit(MIN_SESSION_LENGTH)
    )
    return {
        "train": pairs.filter((pl.col("pos") >= first_target) & (pl.col("pos") < train_end)),
        "valid": pairs.filter(pl.col("pos") == train_end),
        "test": pairs.filter(pl.col("pos") == pl.col("n") - 1),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
