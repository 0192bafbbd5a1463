"""Every reader, fed a mutated file, either reads exactly what the file holds or raises a
one-line `DataFormatError` that names the file and the row and field at fault; never another
exception, never a row silently dropped or invented.

What a CSV "holds" is decided by an independent reference parser (`rfc_records`, RFC 4180 as
llmrec reads it); readers must agree with it record for record.
"""

from __future__ import annotations

import html
import json
import re
import string
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmrec import io
from llmrec.data.errors import DataFormatError, one_line
from llmrec.data.importers import ImportConfig, import_lcrec
from llmrec.data.read import read_ground_truth, read_products, read_sessions
from llmrec.data.write import write_sessions
from llmrec.evaluate import check_predictions, read_predictions

SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
LOCALES = ("UK", "DE", "JP")
ID = st.text(string.ascii_uppercase + string.digits, min_size=10, max_size=10)
TEXT = st.text(string.ascii_letters + " ,\"'.&-é", max_size=12)
SPECIAL = ['"', ",", "\n", "'", " ", "[", "]", "X", "0", "é", '""']


# --- the reference parser ----------------------------------------------------------


def rfc_records(text: str) -> list[list[str | None]] | None:
    """Records of a CSV text, or None when it is malformed: a record ends at "\\n" (an "\\r"
    before it, or at the very end, is dropped), a field is quoted as a whole or holds no quote, "" escapes a quote
    inside quotes, every record has the header's fields and no column is named twice. An
    unquoted empty field is None (polars' null), a quoted one ""."""
    if not text.strip():
        return None
    records, fields, position = [], [], 0
    while True:
        if position < len(text) and text[position] == '"':
            value, position = [], position + 1
            while True:
                if position >= len(text):
                    return None  # never closed
                if text[position] == '"':
                    if text[position + 1 : position + 2] == '"':
                        value.append('"')
                        position += 2
                        continue
                    position += 1
                    break
                value.append(text[position])
                position += 1
            field = "".join(value)
            if text[position : position + 1] == "\r" and text[position + 1 : position + 2] in ("\n", ""):
                position += 1
            if position < len(text) and text[position] not in ",\n":
                return None  # text after the closing quote
        else:
            end = position
            while end < len(text) and text[end] not in ",\n":
                end += 1
            raw = text[position:end]
            if raw.endswith("\r") and text[end : end + 1] in ("\n", ""):
                raw = raw[:-1]  # CRLF, or CR at the very end
            if '"' in raw:
                return None  # a quote inside an unquoted field
            field, position = (raw or None), end
        fields.append(field)
        if position >= len(text) or text[position] == "\n":
            records.append(fields)
            fields = []
            position += 1
            if position >= len(text):
                break
        else:
            position += 1  # the separator
    header = records[0]
    if len(set(header)) != len(header) or not any(header):
        return None
    if any(len(record) != len(header) for record in records):
        return None
    return records


def test_reference_parser_knows_the_cases_that_matter():
    assert rfc_records('a,b\n1,"x,""y"""\n') == [["a", "b"], ["1", 'x,"y"']]
    assert rfc_records("a,b\r\n1,\r\n") == [["a", "b"], ["1", None]]
    assert rfc_records('a,b\n1,"x\ny"') == [["a", "b"], ["1", "x\ny"]]
    for malformed in (
        "a,b\n1\n",
        "a,b\n1,2,3\n",
        'a,b\n1,x"y\n',
        'a,b\n1,"x"y\n',
        'a,b\n1,"x\n',
        "a,a\n1,2\n",
        "a,b\n1,2\n\n",
    ):
        assert rfc_records(malformed) is None, malformed


# --- mutations ---------------------------------------------------------------------


@st.composite
def mutated(draw, text: str) -> str:
    """`text` after one to three edits: delete, duplicate or swap characters, insert or put a
    quote, comma, newline, bracket..., cut the end, empty a field or change an id."""
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        body = text.find("\n") + 1  # mostly below the header: a damaged header is one error, rows are many
        at = draw(st.integers(body if 0 < body < len(text) and draw(st.integers(0, 3)) else 0, len(text) - 1))
        kind = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "insert", "replace", "truncate", "empty_field", "change_id", "crlf"]
            )
        )
        if kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "duplicate":
            text = text[: at + 1] + text[at:]
        elif kind == "swap" and at + 1 < len(text):
            text = text[:at] + text[at + 1] + text[at] + text[at + 2 :]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from(SPECIAL)) + text[at:]
        elif kind == "replace":
            text = text[:at] + draw(st.sampled_from(SPECIAL)) + text[at + 1 :]
        elif kind == "truncate":
            text = text[:at]
        elif kind == "empty_field":
            commas = [m.start() for m in re.finditer(",", text)]
            if len(commas) > 1:
                i = draw(st.integers(0, len(commas) - 2))
                text = text[: commas[i] + 1] + text[commas[i + 1] :]
        elif kind == "change_id":
            ids = list(re.finditer(r"[A-Z0-9]{10}", text))
            if ids:
                found = draw(st.sampled_from(ids))
                text = (
                    text[: found.start()]
                    + draw(st.text(string.ascii_uppercase + string.digits + "'", min_size=8, max_size=11))
                    + text[found.end() :]
                )
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
    return text


def located(error: DataFormatError, path: Path, header_changed: bool) -> None:
    """A one-line message naming the file and the row and field; a file whose header line is
    damaged (or gone) may name only the column or the header."""
    message = str(error)
    assert "\n" not in message and message.startswith(str(path))
    if error.row is not None:
        assert f"row {error.row}" in message and error.field is not None
        assert f"field '{one_line(error.field)}'" in message  # escaped as the message writes it
    else:
        assert header_changed or error.field is not None, message


def header_of(text: str) -> str:
    return text.split("\n", 1)[0].removesuffix("\r")


def outcome(reader, path: Path, text: str, original: str):
    """The reader's frame, or None after checking its error is located."""
    path.write_text(text, encoding="utf-8", newline="")
    try:
        return reader(path)
    except DataFormatError as error:
        located(error, path, header_changed=header_of(text) != header_of(original))
        return None


def expect_consistent(frame: pl.DataFrame | None, records, columns: dict[str, int], normalize) -> None:
    """A malformed text must not read; a read text yields the reference's rows, values and all."""
    event("malformed" if records is None else ("well-formed, refused" if frame is None else "well-formed, read"))
    if records is None:
        assert frame is None, "a malformed file was read"
        return
    if frame is None:
        return
    assert frame.height == len(records) - 1, "rows were dropped or invented"
    for name, index in columns.items():
        assert frame[name].cast(pl.String).to_list() == [normalize(name, record[index]) for record in records[1:]], name


# --- sessions and ground truth (CSV) --------------------------------------------------


@st.composite
def sessions_frames(draw, with_next_item: bool) -> pl.DataFrame:
    rows = draw(st.integers(1, 4))
    prev = [draw(st.lists(ID, min_size=2, max_size=7)) for _ in range(rows)]
    frame = pl.DataFrame({"prev_items": prev, "locale": [draw(st.sampled_from(LOCALES)) for _ in range(rows)]})
    if with_next_item:
        frame = frame.with_columns(pl.Series("next_item", [draw(ID) for _ in range(rows)]))
    return frame


def session_value(name: str, value: str | None):
    if name == "prev_items":
        return str(re.findall(r"[^'\s,\[\]]+", value or ""))
    return value


@pytest.mark.parametrize("with_next_item", [True, False])
@SETTINGS
@given(data=st.data())
def test_mutated_session_csv_reads_like_the_reference_or_names_the_row(tmp_path, with_next_item, data):
    base = tmp_path / "base.csv"
    write_sessions(data.draw(sessions_frames(with_next_item)), base)
    original = base.read_text(encoding="utf-8")
    text = data.draw(mutated(original))
    frame = outcome(
        lambda p: read_sessions(p, with_next_item=with_next_item), tmp_path / "sessions.csv", text, original
    )
    records = rfc_records(text)
    if frame is not None:
        frame = frame.with_columns(
            pl.col("prev_items").map_elements(lambda items: str(items.to_list()), return_dtype=pl.String)
        )
    if records is not None and header_of(text) != header_of(original):
        return  # another header: the reader may rightly miss a column; the reference cannot know
    columns = {"prev_items": 0} | ({"next_item": 1, "locale": 2} if with_next_item else {"locale": 1})
    expect_consistent(frame, records, columns, session_value)
    if text == original:
        assert frame is not None


@pytest.mark.parametrize("task", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_mutated_ground_truth_reads_like_the_reference_or_names_the_row(tmp_path, task, data):
    rows = data.draw(st.integers(1, 5))
    locales = [data.draw(st.sampled_from(LOCALES)) for _ in range(rows)]
    if task == 3:
        frame = pl.DataFrame({"next_item_title": [data.draw(TEXT) for _ in range(rows)], "locale": locales})
    else:
        frame = pl.DataFrame({"next_item": [data.draw(ID) for _ in range(rows)], "locale": locales})
    base = io.write_csv(frame, tmp_path / "gt.csv")
    original = base.read_text(encoding="utf-8")
    text = data.draw(mutated(original))
    read = outcome(lambda p: read_ground_truth(p, task), tmp_path / "gt_mutated.csv", text, original)
    records = rfc_records(text)
    if records is not None and header_of(text) != header_of(original):
        return
    first = "next_item_title" if task == 3 else "next_item"
    normalize = lambda name, value: ("" if value is None else value) if name == "next_item_title" else value
    expect_consistent(read, records, {first: 0, "locale": 1}, normalize)


# --- products (CSV) ----------------------------------------------------------------


@st.composite
def product_frames(draw) -> pl.DataFrame:
    rows = draw(st.integers(1, 4))
    ids = draw(st.lists(ID, min_size=rows, max_size=rows, unique=True))
    texts = {
        c: [draw(TEXT) for _ in range(rows)]
        for c in ("title", "brand", "color", "size", "model", "material", "author", "desc")
    }
    prices = [draw(st.sampled_from(["12.99", "", "40000000.07", "1980.0"])) for _ in range(rows)]
    frame = pl.DataFrame(
        {"id": ids, "locale": [draw(st.sampled_from(LOCALES)) for _ in range(rows)], "price": prices} | texts
    )
    return frame.select(
        "id", "locale", "title", "price", "brand", "color", "size", "model", "material", "author", "desc"
    )


def product_value(name: str, value: str | None):
    if name == "price":
        number = None if value is None or not value.strip() else float(value)
        return None if number is None or abs(number - 40000000.07) < 1e-6 else str(number)
    return value or None


@SETTINGS
@given(data=st.data())
def test_mutated_products_read_like_the_reference_or_name_the_row(tmp_path, data):
    base = io.write_csv(data.draw(product_frames()), tmp_path / "base.csv")
    original = base.read_text(encoding="utf-8")
    text = data.draw(mutated(original))
    frame = outcome(read_products, tmp_path / "products.csv", text, original)
    records = rfc_records(text)
    if records is not None and header_of(text) != header_of(original):
        return
    expect_consistent(frame, records, {"id": 0, "locale": 1, "title": 2, "price": 3, "desc": 10}, product_value)


# --- parquet: wrong types, nulls, missing columns, damaged bytes ---------------------


def parquet_mutation(draw, frame: pl.DataFrame) -> pl.DataFrame:
    column = draw(st.sampled_from(frame.columns))
    kind = draw(st.sampled_from(["to_int", "to_float", "to_bool", "to_int_list", "null", "drop", "stringify", "keep"]))
    values = frame[column]
    if kind == "to_int":
        return frame.with_columns(pl.int_range(frame.height).alias(column))
    if kind == "to_float":
        return frame.with_columns(pl.lit(1.5).alias(column))
    if kind == "to_bool":
        return frame.with_columns(pl.lit(True).alias(column))
    if kind == "to_int_list":
        return frame.with_columns(pl.lit([1, 2], dtype=pl.List(pl.Int64)).alias(column))
    if kind == "null":
        row = draw(st.integers(0, frame.height - 1))
        return frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row).then(None).otherwise(pl.col(column)).alias(column)
        )
    if kind == "drop":
        return frame.drop(column)
    if kind == "stringify" and values.dtype == pl.List(pl.String):
        return frame.with_columns(values.list.join(" ").alias(column))
    return frame


def damaged(draw, path: Path) -> None:
    data = path.read_bytes()
    kind = draw(st.sampled_from(["none", "truncate", "flip"]))
    if kind == "truncate":
        path.write_bytes(data[: draw(st.integers(0, len(data) - 1))])
    elif kind == "flip":
        at = draw(st.integers(0, len(data) - 1))
        path.write_bytes(data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :])


def parquet_located(error: DataFormatError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and message.startswith(str(path))
    assert error.row is not None or error.field is not None or "parquet" in message, message
    if error.row is not None:
        assert f"row {error.row}" in message and f"field '{error.field}'" in message


@SETTINGS
@given(data=st.data())
def test_parquet_readers_keep_every_row_or_name_the_field(tmp_path, data):
    kind = data.draw(st.sampled_from(["train", "test", "products", "gt1", "gt3"]))
    if kind in ("train", "test"):
        frame = data.draw(sessions_frames(kind == "train"))
        reader = lambda p: read_sessions(p, with_next_item=kind == "train")
    elif kind == "products":
        frame = data.draw(product_frames()).with_columns(pl.col("price").cast(pl.Float64, strict=False))
        reader = read_products
    else:
        frame = pl.DataFrame({"next_item": [data.draw(ID)], "next_item_title": [data.draw(TEXT)], "locale": ["UK"]})
        reader = lambda p: read_ground_truth(p, int(kind[-1]))
    path = tmp_path / f"{kind}.parquet"
    mutated_frame = parquet_mutation(data.draw, frame)
    mutated_frame.write_parquet(path)
    damaged(data.draw, path)
    try:
        read = reader(path)
    except DataFormatError as error:
        parquet_located(error, path)
        return
    assert read.height == frame.height


# --- submissions -------------------------------------------------------------------


CATALOG = pl.DataFrame({"id": [f"P{i:09d}" for i in range(30)], "locale": ["UK"] * 15 + ["DE"] * 15})


@SETTINGS
@given(data=st.data())
def test_submissions_are_scored_only_when_valid(tmp_path, data):
    rows, k = data.draw(st.integers(1, 4)), 5
    locales = [data.draw(st.sampled_from(["UK", "DE"])) for _ in range(rows)]
    lists = [
        data.draw(
            st.lists(st.sampled_from(CATALOG.filter(pl.col("locale") == loc)["id"].to_list()), max_size=k, unique=True)
        )
        for loc in locales
    ]
    frame = pl.DataFrame(
        {"locale": locales, "next_item_prediction": lists},
        schema={"locale": pl.String, "next_item_prediction": pl.List(pl.String)},
    )
    kind = data.draw(
        st.sampled_from(
            ["keep", "duplicate", "too_many", "other_locale", "unknown_id", "null_list", "null_id", "parquet"]
        )
    )
    row = data.draw(st.integers(0, rows - 1))
    edited = [list(items) for items in lists]
    if kind == "duplicate" and edited[row]:
        edited[row].append(edited[row][0])
    elif kind == "too_many":
        edited[row] = [f"Z{i:09d}" for i in range(k + 1)]
    elif kind == "other_locale":
        edited[row].append(CATALOG.filter(pl.col("locale") != locales[row])["id"][0])
    elif kind == "unknown_id":
        edited[row].append("Q000000000")
    elif kind == "null_id":
        edited[row].append(None)
    submission = frame.with_columns(pl.Series("next_item_prediction", edited, dtype=pl.List(pl.String)))
    if kind == "null_list":
        submission = submission.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(None)
            .otherwise(pl.col("next_item_prediction"))
            .alias("next_item_prediction")
        )
    path = tmp_path / "submission.parquet"
    submission = parquet_mutation(data.draw, submission) if kind == "parquet" else submission
    submission.write_parquet(path)
    try:
        checked = check_predictions(
            read_predictions(path, 1), 1, path, catalog=CATALOG, k=k, locales=pl.Series(locales)
        )
    except DataFormatError as error:
        parquet_located(error, path)
        assert kind != "keep"
        return
    # Whatever passed is a valid submission: lists of at most k distinct ids of the row's locale.
    assert checked.height == rows
    row_locales = checked["locale"] if "locale" in checked.columns else locales
    for locale, items in zip(row_locales, checked["next_item_prediction"]):
        assert items is not None and len(items) <= k and len(set(items)) == len(items)
        assert set(items) <= set(CATALOG.filter(pl.col("locale") == locale)["id"])


# --- the LC-Rec import -------------------------------------------------------------


@st.composite
def lcrec_files(draw) -> tuple[str, str]:
    n_items = draw(st.integers(4, 8))
    items = {
        str(i): {
            "title": draw(TEXT.filter(lambda t: t.strip(" ."))) + ".",
            "description": draw(TEXT),
            "brand": draw(TEXT),
            "categories": "A,B",
        }
        for i in range(n_items)
    }
    users = {
        str(u): draw(st.lists(st.integers(0, n_items - 1), min_size=4, max_size=8))
        for u in range(draw(st.integers(1, 4)))
    }
    return json.dumps(users), json.dumps(items, indent=1)


def oracle_counts(inter: str, items: str) -> dict | None:
    """What a correct import of these texts writes, or None when they must be refused."""
    try:
        users = json.loads(inter, object_pairs_hook=_unique)
        catalogue = json.loads(items, object_pairs_hook=_unique)
    except (ValueError, KeyError):
        return None
    if not isinstance(users, dict) or not isinstance(catalogue, dict):
        return None
    for entry in catalogue.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            return None
        if not " ".join(html.unescape(entry["title"]).split()).removesuffix(".").strip():
            return None  # the documented cleaning leaves nothing
        if entry.get("brand") is not None and not isinstance(entry["brand"], str):
            return None
        for field in ("description", "categories"):  # text, or a list of texts
            value = entry.get(field)
            if not (
                value is None
                or isinstance(value, str)
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            ):
                return None
    for sequence in users.values():
        if not isinstance(sequence, list) or len(sequence) < 4:
            return None
        if any(isinstance(i, bool) or not isinstance(i, int | str) or str(i) not in catalogue for i in sequence):
            return None
    return {"users": len(users), "products": len(catalogue), "interactions": sum(len(s) for s in users.values())}


def _unique(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise KeyError("duplicate")
    return dict(pairs)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_mutated_lcrec_files_import_faithfully_or_name_the_place(tmp_path, data):
    inter, items = data.draw(lcrec_files())
    which = data.draw(st.sampled_from(["inter", "items"]))
    if which == "inter":
        inter = data.draw(mutated(inter))
    else:
        items = data.draw(mutated(items))
    inter_path, items_path = tmp_path / "x.inter.json", tmp_path / "x.item.json"
    inter_path.write_text(inter, encoding="utf-8")
    items_path.write_text(items, encoding="utf-8")
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "out"  # a fresh folder per example
    expected = oracle_counts(inter, items)
    try:
        import_lcrec(inter_path, items_path, out, ImportConfig(window=3))
    except DataFormatError as error:
        message = str(error)
        assert "\n" not in message and message.startswith((str(inter_path), str(items_path)))
        assert error.row is not None or error.field is not None or "JSON" in message, message
        assert expected is None, message
        return
    assert expected is not None, "malformed input was imported"
    counts = io.read_yaml(out / "dataset.yaml")["counts"]
    assert {k: counts[k] for k in expected} == expected
    assert counts["sessions_valid"] == counts["sessions_test"] == expected["users"]
    assert counts["sessions_train"] == expected["interactions"] - 4 * expected["users"]
