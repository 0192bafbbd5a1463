"""The LC-Rec / TIGER / LETTER JSON format: `{"<user>": [item, ...]}` (oldest first) and
`{"<item>": {"title", "description", "brand", "categories"}}`, as in the preprocessed Amazon
2018 categories of that line of work."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from llmrec.data.errors import DataFormatError
from llmrec.data.importers.folder import ImportConfig, Source, clean_text, write_folder

# The item file's fields and how list values (some preprocessings keep lists) are joined.
TEXT_FIELDS = {"description": " ", "brand": None, "categories": ","}


def import_lcrec(inter: Path, items: Path, out: Path, config: ImportConfig | None = None) -> Path:
    """Convert `*.inter.json` + `*.item.json` into a leave-one-out llmrec data folder (see
    `llmrec.data.importers.folder`); malformed input is a one-line `DataFormatError` naming
    the file, the record (`row`: the user's or item's position in its file) and the field."""
    inter, items = Path(inter), Path(items)
    source = Source(sequences=inter, items=items, user_field="items", item_field="items")
    catalogue = read_items(items)
    return write_folder(read_sequences(inter), catalogue, out, config or ImportConfig(), source, origin="lcrec")


def read_sequences(path: Path) -> pl.DataFrame:
    """One row per user in file order: `user`, `row` (its 1-based position), `items` (keys as text)."""
    users = _load_object(path, "users to lists of items")
    for row, (user, value) in enumerate(users.items(), 1):
        _encodable(user, path, row, "user")
        if not isinstance(value, list):
            raise DataFormatError(
                path, f"user {user!r}: expected a list of items, got {_json_type(value)}", row=row, field="items"
            )
        wrong = next(
            (i for i, item in enumerate(value) if isinstance(item, bool) or not isinstance(item, int | str)), None
        )
        if wrong is not None:
            raise DataFormatError(
                path,
                f"user {user!r}, item {wrong + 1}: expected a number or a string, got {_json_type(value[wrong])}",
                row=row,
                field="items",
            )
        for item in value:
            if isinstance(item, str):
                _encodable(item, path, row, "items")
    return pl.DataFrame(
        {
            "user": list(users),
            "row": range(1, len(users) + 1),
            "items": [[str(item) for item in value] for value in users.values()],
        },
        schema={"user": pl.String, "row": pl.Int64, "items": pl.List(pl.String)},
    )


def read_items(path: Path) -> pl.DataFrame:
    """The catalogue: `item`, `row`, cleaned `title` (required), `desc`, `brand`, `categories`."""
    entries = _load_object(path, "items to their attributes")
    fields: dict[str, list] = {"title": [], **{name: [] for name in TEXT_FIELDS}}
    for row, (item, entry) in enumerate(entries.items(), 1):
        if not isinstance(entry, dict):
            raise DataFormatError(
                path,
                f"item {item!r}: expected an object of attributes, got {_json_type(entry)}",
                row=row,
                field="title",
            )
        title = entry.get("title")
        if not isinstance(title, str):
            shown = "no title" if title is None else f"a title of type {_json_type(title)}"
            raise DataFormatError(path, f"item {item!r} has {shown}", row=row, field="title")
        _encodable(item, path, row, "item")
        fields["title"].append(_encodable(title, path, row, "title"))
        for name, joiner in TEXT_FIELDS.items():
            fields[name].append(_text(entry.get(name), joiner, path, row, item, name))
    frame = pl.DataFrame(
        {
            "item": pl.Series(list(entries), dtype=pl.String),
            "row": pl.int_range(1, len(entries) + 1, dtype=pl.Int64, eager=True),
            "title": clean_text(pl.Series(fields["title"], dtype=pl.String), appended_period=True),
            "desc": clean_text(pl.Series(fields["description"], dtype=pl.String)),
            "brand": clean_text(pl.Series(fields["brand"], dtype=pl.String)),
            "categories": clean_text(pl.Series(fields["categories"], dtype=pl.String)),
        }
    )
    empty = frame.filter(pl.col("title").is_null()).head(1)
    if empty.height:
        raise DataFormatError(path, f"item {empty['item'][0]!r} has an empty title", row=empty["row"][0], field="title")
    return frame


def _text(value, joiner: str | None, path: Path, row: int, item: str, field: str) -> str | None:
    """A text attribute: a string, null, or (where `joiner` is given) a list of strings joined."""
    if value is None:
        return value
    if isinstance(value, str):
        return _encodable(value, path, row, field)
    if joiner is not None and isinstance(value, list) and all(isinstance(part, str) for part in value):
        return _encodable(joiner.join(value), path, row, field)
    expected = "a string or a list of strings" if joiner else "a string"
    raise DataFormatError(path, f"item {item!r}: expected {expected}, got {_json_type(value)}", row=row, field=field)


def _encodable(text: str, path: Path, row: int, field: str) -> str:
    """JSON can escape half a surrogate pair (\\ud800), which no UTF-8 file or column can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataFormatError(path, f"{text[:30]!r} holds an unpaired surrogate escape", row=row, field=field) from None
    return text


def _load_object(path: Path, meaning: str) -> dict:
    """A JSON object with unique keys (Python's json would silently keep the last of two)."""
    if not path.exists():
        raise DataFormatError(path, "file not found")

    def unique_keys(pairs: list[tuple[str, object]]) -> dict:
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(path.read_bytes(), object_pairs_hook=unique_keys)
    except _DuplicateKey as error:
        raise DataFormatError(path, f"key {error.args[0]!r} appears twice in one object", field=error.args[0]) from None
    except json.JSONDecodeError as error:
        raise DataFormatError(
            path, f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except (UnicodeDecodeError, RecursionError) as error:
        raise DataFormatError(path, f"not valid JSON: {type(error).__name__}") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, f"expected a JSON object mapping {meaning}, got {_json_type(data)}")
    return data


class _DuplicateKey(Exception):
    pass


def _json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
