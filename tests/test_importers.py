"""Importers turn LC-Rec JSON and interaction logs into leave-one-out folders that every part of
llmrec reads unchanged; the valid split of such a folder never sees the test inputs."""

from __future__ import annotations

import json

import polars as pl
import pytest

from llmrec import io
from llmrec.baselines import BaselineConfig, run_baseline
from llmrec.data.dataset import AmazonM2
from llmrec.data.errors import DataFormatError
from llmrec.data.importers import MANIFEST, ImportConfig, import_csv, import_lcrec, product_ids
from llmrec.data.read import read_ground_truth, read_products
from llmrec.data.schema import PRODUCT_COLUMNS
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.data.stats import dataset_stats
from llmrec.evaluate import evaluate
from llmrec.prompts import PromptConfig, split_prompts

ITEMS = {
    str(i): {
        "title": f"Tool {i} &amp; Case  {'x' * i}.",
        "description": f"About tool {i}",
        "brand": f"Brand{i % 3}",
        "categories": "Tools,Hand Tools",
    }
    for i in range(12)
}
USERS = {
    "u1": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # longer than small windows
    "u2": [3, 4, 5, 6],  # the shortest allowed: no training session, still validated and tested
    "u3": [11, 9, 7, 5, 3],
    "u4": [2, 4, 2, 8, 10, 1],  # a repeated item
}


def item_id(item) -> str:
    return f"I{int(item):09d}"


def write_lcrec(folder, users=USERS, items=ITEMS):
    folder.mkdir(parents=True, exist_ok=True)
    inter, item_file = folder / "x.inter.json", folder / "x.item.json"
    inter.write_text(json.dumps(users), encoding="utf-8")
    item_file.write_text(json.dumps(items), encoding="utf-8")
    return inter, item_file


def leave_one_out(users: dict, window: int, prefixes: int) -> dict[str, list[tuple[list[str], str]]]:
    """The protocol, written out plainly: per user, training pairs, one validation and one test pair."""
    parts = {"train": [], "valid": [], "test": []}
    for sequence in users.values():
        ids, n = [item_id(i) for i in sequence], len(sequence)
        start = max(2, n - 2 - prefixes) if prefixes else 2
        parts["train"] += [(ids[max(0, t - window) : t], ids[t]) for t in range(start, n - 2)]
        parts["valid"].append((ids[max(0, n - 2 - window) : n - 2], ids[n - 2]))
        parts["test"].append((ids[max(0, n - 1 - window) : n - 1], ids[n - 1]))
    return parts


def pairs(sessions: pl.DataFrame, targets: pl.Series) -> list[tuple[list[str], str]]:
    return list(zip(sessions["prev_items"].to_list(), targets.to_list()))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lcrec")
    return import_lcrec(*write_lcrec(folder / "src"), folder / "data", ImportConfig())


@pytest.mark.parametrize("window, prefixes", [(20, 0), (3, 0), (3, 2), (2, 1)])
def test_sessions_follow_leave_one_out_with_windows(tmp_path, window, prefixes):
    out = import_lcrec(
        *write_lcrec(tmp_path / "src"), tmp_path / "data", ImportConfig(window=window, prefixes=prefixes)
    )
    data, expected = AmazonM2(out), leave_one_out(USERS, window, prefixes)
    data.validate()
    train, valid = data.train_sessions(), data.valid_sessions()
    assert pairs(train, train["next_item"]) == expected["train"]
    assert pairs(valid, valid["next_item"]) == expected["valid"]
    for task in (1, 3):
        assert data.test_sessions(task)["prev_items"].to_list() == [prev for prev, _ in expected["test"]]
    assert data.ground_truth(1)["next_item"].to_list() == [target for _, target in expected["test"]]
    titles = dict(zip(data.products()["id"], data.products()["title"]))
    assert data.ground_truth(3)["next_item_title"].to_list() == [titles[target] for _, target in expected["test"]]
    assert set(data.ground_truth(3)["locale"].cast(pl.String)) == {"UK"}
    counts = io.read_yaml(out / MANIFEST)["counts"]
    assert counts["sessions_train"] == len(expected["train"]) and counts["users"] == len(USERS)
    assert pl.read_csv(out / "users.csv")["user"].to_list() == list(USERS)


def test_products_are_cleaned_and_keep_their_categories(imported):
    products = read_products(imported / "products_train.csv")
    assert products.columns == [*PRODUCT_COLUMNS, "categories"]
    first = products.row(1, named=True)
    assert first["id"] == "I000000001" and first["locale"] == "UK"
    assert first["title"] == "Tool 1 & Case x"  # entity decoded, spaces collapsed, appended "." gone
    assert first["desc"] == "About tool 1" and first["brand"] == "Brand1" and first["categories"] == "Tools,Hand Tools"
    assert products["price"].null_count() == products.height
    assert products.height == len(ITEMS) and products["id"].n_unique() == len(ITEMS)
    ids = pl.read_csv(imported / "item_ids.csv", infer_schema=False)
    assert dict(zip(ids["item"], ids["id"])) == {key: item_id(key) for key in ITEMS}


def test_release_products_keep_exactly_their_columns(tiny_data):
    assert AmazonM2(tiny_data).products().columns == list(PRODUCT_COLUMNS)


def test_valid_split_is_the_validation_file_and_never_sees_test_inputs(imported):
    data = AmazonM2(imported)
    train, valid, test = data.train_sessions(), data.valid_sessions(), data.test_sessions(1)
    for task in (1, 3):
        split = load_task_split(data, task, SplitConfig(name="valid", valid_fraction=0.5, seed=7))
        assert split.sessions["prev_items"].to_list() == valid["prev_items"].to_list()
        assert split.history.equals(train)
        assert split.unlabelled["prev_items"].to_list() == valid["prev_items"].to_list()
        # The leak the rule exists for: test inputs end with the validation targets.
        leaked = pl.DataFrame({"prev": test["prev_items"], "target": valid["next_item"]})
        assert leaked.select(pl.col("prev").list.last() == pl.col("target")).to_series().all()
    assert load_task_split(data, 1, SplitConfig(name="valid")).targets.to_list() == valid["next_item"].to_list()
    titles = load_task_split(data, 3, SplitConfig(name="valid")).targets.to_list()
    catalog = dict(zip(data.products()["id"], data.products()["title"]))
    assert titles == [catalog[item] for item in valid["next_item"]]


def test_test_split_learns_from_validation_sessions_and_counts_test_inputs_once(imported):
    data = AmazonM2(imported)
    split = load_task_split(data, 1, SplitConfig(name="test"))
    train, valid = data.train_sessions(), data.valid_sessions()
    assert split.history.height == train.height + valid.height
    assert split.history["session_id"].n_unique() == split.history.height
    assert split.history.tail(valid.height)["next_item"].to_list() == valid["next_item"].to_list()
    assert split.unlabelled["prev_items"].to_list() == data.test_sessions(1)["prev_items"].to_list()
    assert split.targets.to_list() == data.ground_truth(1)["next_item"].to_list()


def test_every_entry_point_works_on_an_imported_folder(imported, tmp_path):
    data = AmazonM2(imported)
    stats = {row["locale"]: row for row in dataset_stats(data).to_dicts()}
    assert stats["UK"]["products"] == len(ITEMS) and stats["UK"]["valid"] == stats["UK"]["test1"] == len(USERS)
    for split_name in ("valid", "test"):
        split = load_task_split(data, 1, SplitConfig(name=split_name))
        for name in ("covisit", "sknn", "popularity"):
            lists = run_baseline(name, split, BaselineConfig(k=5))
            result = evaluate(1, lists, split.targets, split.sessions["locale"], k=5)
            assert {"mrr@5", "hr@5", "ndcg@5"} <= set(result["overall"]) and result["overall"]["sessions"] == len(USERS)
        titles_split = load_task_split(data, 3, SplitConfig(name=split_name))
        titles = run_baseline("last-title", titles_split, BaselineConfig())
        assert 0 <= evaluate(3, titles, titles_split.targets, titles_split.sessions["locale"])["overall"]["bleu"] <= 1
        prompts = split_prompts(data, 3, SplitConfig(name=split_name), PromptConfig())
        assert len(prompts) == len(USERS) and "Tool" in prompts[0]["prompt"] and prompts[0]["completion"].strip()
        assert prompts[0]["prompt"].startswith("Products one customer bought")  # the folder's own template


def test_test_ground_truth_scores_by_its_own_locale(imported):
    truth = read_ground_truth(imported / "task3" / "gt_task3_phase1.csv", 3)
    assert truth.columns == ["next_item_title", "locale"]
    predictions = pl.DataFrame({"next_item_title": truth["next_item_title"]})  # no locale column: the labels' decide
    result = evaluate(3, predictions, truth["next_item_title"], truth["locale"])
    assert list(result["per_locale"]) == ["UK"] and result["overall"]["bleu"] == pytest.approx(1.0)


def test_import_is_deterministic_and_rewrites_an_earlier_import(tmp_path):
    inter, items = write_lcrec(tmp_path / "src")
    first = import_lcrec(inter, items, tmp_path / "a", ImportConfig(window=3))
    second = import_lcrec(inter, items, tmp_path / "b", ImportConfig(window=3))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    again = import_lcrec(inter, items, first, ImportConfig(window=5))
    assert io.read_yaml(again / MANIFEST)["config"]["window"] == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        import_lcrec(inter, items, tmp_path / "other", ImportConfig())


def test_a_refused_input_leaves_an_earlier_import_intact(tmp_path):
    inter, items = write_lcrec(tmp_path / "src")
    out = import_lcrec(inter, items, tmp_path / "data", ImportConfig())
    bad, _ = write_lcrec(tmp_path / "bad", users={"u": [0, 1, 2, 99]})
    with pytest.raises(DataFormatError):
        import_lcrec(bad, items, out, ImportConfig())
    assert (out / MANIFEST).exists()
    AmazonM2(out).validate()


def test_short_users_are_an_error_or_skipped_and_counted(tmp_path):
    users = USERS | {"short": [1, 2, 3], "single": [4]}
    inter, items = write_lcrec(tmp_path / "src", users=users)
    with pytest.raises(DataFormatError, match=r"row 5, field 'items': user 'short' has 3 item\(s\)"):
        import_lcrec(inter, items, tmp_path / "a", ImportConfig())
    out = import_lcrec(inter, items, tmp_path / "b", ImportConfig(skip_short_users=True))
    counts = io.read_yaml(out / MANIFEST)["counts"]
    assert counts["users_skipped"] == 2 and counts["users"] == len(USERS)
    assert counts["interactions"] == sum(len(s) for s in USERS.values())


def test_product_ids_are_stable_unique_and_ten_characters():
    keys = pl.Series(["4343", "0", "B0B7HSSDRB", "020161622X", "sku-1", "007", "a b", "1000000000"])
    ids = product_ids(keys)
    assert ids.to_list()[:4] == ["I000004343", "I000000000", "B0B7HSSDRB", "020161622X"]
    assert ids.str.contains(r"^[0-9A-Za-z]{10}$").all() and ids.n_unique() == len(keys)
    assert ids.equals(product_ids(keys.reverse()).reverse())  # an id depends on its key alone


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD_ITEM = {"title": "A saw.", "description": "", "brand": "B", "categories": "Tools"}
LCREC_ERRORS = [
    ("inter", "[1, 2]", None, "expected a JSON object mapping users"),
    ("inter", '{"u": [0, 1, 2, 3], "v": 5}', "row 2, field 'items'", "expected a list of items, got a number"),
    ("inter", '{"u": [0, 1.5, 2, 3]}', "row 1, field 'items'", "user 'u', item 2: expected a number or a string"),
    (
        "inter",
        '{"u": [0, 1, 2, 3], "v": [0, 1, 2, 9]}',
        "row 2, field 'items'",
        "user 'v', item 4: '9' is not in x.item.json",
    ),
    ("inter", '{"u": []}', "row 1, field 'items'", "user 'u' has 0 item(s)"),
    ("inter", '{"u": [1]}', "row 1, field 'items'", "user 'u' has 1 item(s)"),
    ("inter", '{"u": [0, 1, 2, 3], "u": [0, 1, 2, 3]}', "field 'u'", "key 'u' appears twice"),
    ("inter", '{"u": [0, 1, 2, 3]', None, "not valid JSON"),
    ("items", json.dumps({"0": GOOD_ITEM, "1": {"description": "x"}}), "row 2, field 'title'", "item '1' has no title"),
    (
        "items",
        json.dumps({"0": GOOD_ITEM, "1": GOOD_ITEM | {"title": " . "}}),
        "row 2, field 'title'",
        "item '1' has an empty title",
    ),
    (
        "items",
        json.dumps({"0": GOOD_ITEM, "1": GOOD_ITEM | {"title": 5}}),
        "row 2, field 'title'",
        "a title of type a number",
    ),
    (
        "items",
        json.dumps({"0": GOOD_ITEM, "1": GOOD_ITEM | {"brand": ["x"]}}),
        "row 2, field 'brand'",
        "expected a string, got a list",
    ),
    ("items", json.dumps({"0": GOOD_ITEM, "1": "A saw"}), "row 2, field 'title'", "expected an object of attributes"),
]


@pytest.mark.parametrize("which, text, where, message", LCREC_ERRORS)
def test_malformed_lcrec_input_is_one_line_naming_file_row_and_field(tmp_path, which, text, where, message):
    inter, items = write_lcrec(tmp_path, users={"u": [0, 1, 2, 3]}, items={str(i): GOOD_ITEM for i in range(4)})
    path = write(tmp_path, inter.name if which == "inter" else items.name, text)
    with pytest.raises(DataFormatError) as caught:
        import_lcrec(inter, items, tmp_path / "out", ImportConfig())
    shown = str(caught.value)
    assert "\n" not in shown and shown.startswith(str(path)) and message in shown
    assert where is None or where in shown
    assert not (tmp_path / "out").exists()


# --- interaction logs ----------------------------------------------------------------


def log_rows(users: dict) -> list[tuple[str, str, int]]:
    """Rows newest first across users; each user's ties (two items per timestamp) in sequence order."""
    rows = [
        (user, str(item), position // 2) for user, sequence in users.items() for position, item in enumerate(sequence)
    ]
    return sorted(rows, key=lambda row: -row[2])


def test_csv_log_imports_like_the_same_data_in_lcrec_format(tmp_path):
    log = pl.DataFrame(log_rows(USERS), schema=["user", "item", "timestamp"], orient="row")
    io.write_csv(log, tmp_path / "log.csv")
    table = pl.DataFrame(
        {
            "item": list(ITEMS),
            "title": [entry["title"].removesuffix(".") for entry in ITEMS.values()],
            "description": [entry["description"] for entry in ITEMS.values()],
            "brand": [e["brand"] for e in ITEMS.values()],
        }
    )
    io.write_csv(table, tmp_path / "items.csv")
    from_csv = AmazonM2(
        import_csv(tmp_path / "log.csv", tmp_path / "items.csv", tmp_path / "csv", ImportConfig(window=3))
    )
    from_json = AmazonM2(import_lcrec(*write_lcrec(tmp_path / "src"), tmp_path / "json", ImportConfig(window=3)))
    from_csv.validate()

    def by_user(data: AmazonM2, folder) -> dict:
        users = pl.read_csv(folder / "users.csv", infer_schema=False)["user"].to_list()
        valid, test = data.valid_sessions(), data.test_sessions(1)
        return {
            u: (valid["prev_items"][i].to_list(), valid["next_item"][i], test["prev_items"][i].to_list())
            for i, u in enumerate(users)
        }

    assert by_user(from_csv, tmp_path / "csv") == by_user(from_json, tmp_path / "json")
    key = lambda frame: sorted(zip(map(tuple, frame["prev_items"].to_list()), frame["next_item"]))
    assert key(from_csv.train_sessions()) == key(from_json.train_sessions())
    assert from_csv.products().drop("categories").equals(from_json.products().drop("categories"))


def test_csv_log_orders_date_times(tmp_path):
    write(tmp_path, "log.csv", "user,item,timestamp\na,3,2021-03-01\na,1,2021-01-01\na,2,2021-02-01\na,4,2021-04-01\n")
    write(tmp_path, "items.csv", "item,title\n1,One\n2,Two\n3,Three\n4,Four\n")
    data = AmazonM2(import_csv(tmp_path / "log.csv", tmp_path / "items.csv", tmp_path / "out", ImportConfig()))
    assert data.valid_sessions()["prev_items"].to_list() == [["I000000001", "I000000002"]]
    assert data.ground_truth(1)["next_item"].to_list() == ["I000000004"]


CSV_ERRORS = [
    ("log.csv", "user,item\na,1\n", "field 'timestamp'", "missing column 'timestamp'"),
    ("log.csv", "user,item,timestamp\na,1,5\na,2,x\n", "row 2, field 'timestamp'", "not a number or a date-time: 'x'"),
    ("log.csv", "user,item,timestamp\na,1,5\n,2,6\n", "row 2, field 'user'", "missing user"),
    ("log.csv", "user,item,timestamp\na,1,1\na,2,2\na,3,3\na,7,4\n", "row 4, field 'item'", "'7' is not in items.csv"),
    ("items.csv", "item,title\n1,One\n2,\n", "row 2, field 'title'", "item '2' has no title"),
    ("items.csv", "item,title\n1,One\n1,Uno\n", "row 2, field 'item'", "item '1' is listed twice"),
    ("items.csv", "item,name\n1,One\n", "field 'title'", "missing column 'title'"),
]


@pytest.mark.parametrize("name, text, where, message", CSV_ERRORS)
def test_malformed_csv_input_is_one_line_naming_file_row_and_field(tmp_path, name, text, where, message):
    write(tmp_path, "log.csv", "user,item,timestamp\na,1,1\na,2,2\na,3,3\na,1,4\n")
    write(tmp_path, "items.csv", "item,title\n1,One\n2,Two\n3,Three\n")
    path = write(tmp_path, name, text)
    with pytest.raises(DataFormatError) as caught:
        import_csv(tmp_path / "log.csv", tmp_path / "items.csv", tmp_path / "out", ImportConfig())
    shown = str(caught.value)
    assert "\n" not in shown and shown.startswith(str(path)) and where in shown and message in shown


def test_cli_imports_then_runs_verbs_on_the_folder(tmp_path, capsys):
    """`llmrec data import lcrec`, then the verbs on the folder as a user chains them: check,
    a baseline on the test users, evaluate with the papers' metrics and the catalogue check."""
    import json as json_module

    from llmrec.cli.main import main

    inter, items = write_lcrec(tmp_path / "src")
    data = tmp_path / "data"
    main(["data", "import", "lcrec", "--inter", str(inter), "--items", str(items), "--out", str(data), "--window", "5"])
    main(["data", "check", "--data", str(data)])
    assert "all files valid" in capsys.readouterr().out
    out = tmp_path / "covisit.parquet"
    main(
        [
            "baseline",
            "covisit",
            "--task",
            "1",
            "--data",
            str(data),
            "--split",
            "test",
            "--out",
            str(out),
            "baseline.k=5",
        ]
    )
    capsys.readouterr()
    main(["evaluate", "--task", "1", "--pred", str(out), "--data", str(data), "--split", "test", "--json"])
    by_split = json_module.loads(capsys.readouterr().out)
    main(
        [
            "evaluate",
            "--task",
            "1",
            "--pred",
            str(out),
            "--gt",
            str(data / "task1" / "gt_task1_phase1.csv"),
            "--data",
            str(data),
            "--json",
        ]
    )
    by_labels = json_module.loads(capsys.readouterr().out)
    assert {"hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@100"} <= set(by_split["overall"]) and by_split["overall"][
        "sessions"
    ] == len(USERS)
    assert by_labels == by_split
    foreign = pl.read_parquet(out).with_columns(pl.lit(["B000000000"] * 1).alias("next_item_prediction"))
    foreign.write_parquet(tmp_path / "foreign.parquet")
    with pytest.raises(SystemExit):
        main(
            [
                "evaluate",
                "--task",
                "1",
                "--pred",
                str(tmp_path / "foreign.parquet"),
                "--data",
                str(data),
                "--split",
                "test",
            ]
        )
    assert "not in the catalogue" in capsys.readouterr().err
