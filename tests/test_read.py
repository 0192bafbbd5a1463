"""The data layer reads the release's exact formats and rejects bad input in one line."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.read import read_products, read_sessions
from llmrec.data.split import train_valid_split
from llmrec.data.stats import dataset_stats
from llmrec.data.write import format_prev_items

# As the release prints them: numpy string arrays wrapped after five ids, ISBN-10 ids with
# leading zeros and a trailing X, quoted only when the field spans lines.
SESSIONS_CSV = """prev_items,next_item,locale
"['B09W9FND7K' 'B09JSPLN1M' '0007525439' 'B09M7GY217' 'B076THCGSG'
 'B007MO8IME' '020161622X']",B08FSNJSCD,DE
['B0B7HSSDRB' 'B09BJWJD41'],0307389731,ES
"['B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z'
 'B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z' 'B0B93M4B8Z'
 'B09C7C94R4']",B0B6ZRJWF3,JP
"""
PRODUCTS_CSV = '''id,locale,title,price,brand,color,size,model,material,author,desc
B09W9FND7K,DE,"Voltex Handyhülle, Schwarz",12.99,Voltex,Schwarz,,X200,,,"Stoßfest, ""robust"""
B08FSNJSCD,DE,Lumora Ladekabel 2 m,40000000.07,Lumora,,2 m,,,,
0307389731,ES,El nombre del viento (Tapa blanda),18.9,,,,,,Patrick Rothfuss,
B0B6ZRJWF3,JP,ゼノバ スマホケース ブラック,1980.0,ゼノバ,ブラック,,,,,
'''


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_wrapped_lists_and_isbn_ids_parses_like_its_parquet_twin(tmp_path):
    from_csv = read_sessions(write(tmp_path, "sessions_train.csv", SESSIONS_CSV))
    twin = pa.table(
        {
            "prev_items": pa.array(
                [
                    ["B09W9FND7K", "B09JSPLN1M", "0007525439", "B09M7GY217", "B076THCGSG", "B007MO8IME", "020161622X"],
                    ["B0B7HSSDRB", "B09BJWJD41"],
                    ["B0B93M4B8Z"] * 10 + ["B09C7C94R4"],
                ],
                pa.list_(pa.string()),
            ),
            "next_item": ["B08FSNJSCD", "0307389731", "B0B6ZRJWF3"],
            "locale": ["DE", "ES", "JP"],
        }
    )
    pq.write_table(twin, tmp_path / "sessions_train.parquet")
    from_parquet = read_sessions(tmp_path / "sessions_train.parquet")
    assert from_csv.equals(from_parquet)
    assert from_csv["prev_items"][0].to_list()[2] == "0007525439"
    assert from_csv["next_item"][1] == "0307389731"
    assert from_csv["locale"].cast(pl.String).to_list() == ["DE", "ES", "JP"]


@pytest.mark.parametrize("length", [1, 2, 4, 5, 6, 10, 11, 23])
def test_written_prev_items_are_numpy_printed_arrays(length):
    ids = [f"B{i:09d}" for i in range(length)]
    written = pl.DataFrame({"prev_items": [ids]}).select(format_prev_items()).item()
    assert written == str(np.array(ids))


def test_products_placeholder_price_and_empty_fields_become_null(tmp_path):
    products = read_products(write(tmp_path, "products_train.csv", PRODUCTS_CSV))
    assert products["price"].to_list() == [12.99, None, 18.9, 1980.0]
    assert products["desc"][0] == 'Stoßfest, "robust"'
    assert products["color"][1] is None and products["author"][2] == "Patrick Rothfuss"
    assert products["id"][2] == "0307389731"


def test_session_ids_missing_from_catalog_are_allowed_and_counted(tmp_path):
    write(tmp_path, "sessions_train.csv", SESSIONS_CSV)
    write(tmp_path, "products_train.csv", PRODUCTS_CSV)
    stats = dataset_stats(AmazonM2(tmp_path))
    by_locale = {row["locale"]: row for row in stats.to_dicts()}
    # DE mentions 8 distinct ids (7 inputs + next), of which 2 are in the catalog.
    assert by_locale["DE"]["unlisted_ids"] == 6
    assert by_locale["JP"]["repeat"] == 1.0
    assert by_locale["ES"]["sessions"] == 1


BAD_INPUTS = [
    (
        "sessions_train.csv",
        "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1M'],B08FSNJSCD,DE\n\"['B09W9FND7K', "
        'B09JSPLN1M]",B08FSNJSCD,DE\n',
        "row 2, field 'prev_items'",
        "not a list of quoted ids",
    ),
    (
        "sessions_train.csv",
        "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1M'],B08FSNJSCD,US\n",
        "row 1, field 'locale'",
        "unknown locale 'US'",
    ),
    (
        "sessions_train.csv",
        "prev_items,locale\n['B09W9FND7K' 'B09JSPLN1M'],DE\n",
        "field 'next_item'",
        "missing column 'next_item'",
    ),
    (
        "sessions_train.csv",
        "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1M'],B08FSNJSCD,DE\n['B09W9FND7K'],B08FSNJSCD,DE\n",
        "row 2, field 'prev_items'",
        "needs at least 2",
    ),
    (
        "sessions_train.csv",
        "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1'],B08FSNJSCD,DE\n",
        "row 1, field 'prev_items'",
        "'B09JSPLN1' is not 10 characters",
    ),
    (
        "sessions_train.csv",
        "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1M'],B08FSNJSCDX,DE\n",
        "row 1, field 'next_item'",
        "is not 10 characters",
    ),
    (
        "products_train.csv",
        PRODUCTS_CSV + "B09W9FND7K,DE,Again,1.0,,,,,,,\n",
        "row 5, field 'id'",
        "duplicate product 'B09W9FND7K' in locale DE",
    ),
    (
        "products_train.csv",
        PRODUCTS_CSV.replace("12.99", "12,99", 1).replace(
            '"Voltex Handyhülle, Schwarz",12,99', '"Voltex Handyhülle, Schwarz","12,99"'
        ),
        "row 1, field 'price'",
        "not a number",
    ),
    (
        "products_train.csv",
        PRODUCTS_CSV.replace("B0B6ZRJWF3,JP", "B0B6ZRJWF,JP"),
        "row 4, field 'id'",
        "is not 10 characters",
    ),
]


@pytest.mark.parametrize("name, text, where, message", BAD_INPUTS)
def test_malformed_input_gets_one_line_naming_file_row_and_field(tmp_path, name, text, where, message):
    path = write(tmp_path, name, text)
    reader = read_products if name.startswith("products") else read_sessions
    with pytest.raises(DataFormatError) as caught:
        reader(path, with_next_item=True) if reader is read_sessions else reader(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(str(path)) and where in text and message in text


def test_data_check_prints_the_error_in_one_line_without_traceback(tmp_path, capsys):
    write(tmp_path, "sessions_train.csv", "prev_items,next_item,locale\n['B09W9FND7K' 'B09JSPLN1M'],B08FSNJSCD,XX\n")
    write(tmp_path, "products_train.csv", PRODUCTS_CSV)
    with pytest.raises(SystemExit) as exit_code:
        main(["data", "check", "--data", str(tmp_path)])
    assert exit_code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "sessions_train.csv, row 1, field 'locale': unknown locale 'XX'" in err


def test_an_unknown_option_is_a_usage_error_without_traceback(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["baseline", "last-title", "--task", "3", "--no-such-option", "1", "--out", "x.parquet"])
    assert exit_code.value.code == 2
    err = capsys.readouterr().err
    assert "No such option: --no-such-option" in err and "Traceback" not in err


def test_validation_split_is_seeded_disjoint_and_about_ten_percent():
    train = pl.DataFrame({"session_id": np.arange(10_000)})
    fit, held_out = train_valid_split(train, 0.1, seed=3)
    again_fit, again_held_out = train_valid_split(train, 0.1, seed=3)
    assert held_out.equals(again_held_out) and fit.equals(again_fit)
    assert fit.height + held_out.height == train.height
    assert set(fit["session_id"]).isdisjoint(held_out["session_id"])
    assert 900 < held_out.height < 1100
    assert not train_valid_split(train, 0.1, seed=4)[1].equals(held_out)
