"""The synthetic dataset is written in the release's formats and has its statistics."""

from __future__ import annotations

import json

import polars as pl

from llmrec.cli.main import main
from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import LOCALES, PRICE_PLACEHOLDER
from llmrec.data.stats import dataset_stats
from llmrec.data.synth import SynthConfig, generate
from llmrec.data.synth.catalog import vocabulary


def test_tiny_writes_every_release_file_in_its_format(tiny_data):
    expected = ["products_train.csv", "sessions_train.csv"] + [
        f"task{t}/{kind}_task{t}_phase{p}.csv" for t in (1, 2, 3) for p in (1, 2) for kind in ("sessions_test", "gt")
    ]
    assert all((tiny_data / name).exists() for name in expected)
    raw = (tiny_data / "sessions_train.csv").read_text(encoding="utf-8")
    assert raw.startswith("prev_items,next_item,locale\n")
    assert "'\n '" in raw  # numpy's wrap after five ids, inside a quoted field
    products = (tiny_data / "products_train.csv").read_text(encoding="utf-8")
    assert products.startswith("id,locale,title,price,brand,color,size,model,material,author,desc\n")
    assert f",{PRICE_PLACEHOLDER}," in products
    assert (tiny_data / "task3" / "gt_task3_phase1.csv").read_text(encoding="utf-8").startswith("next_item_title,locale\n")
    AmazonM2(tiny_data).validate()


def test_sessions_have_the_real_shape(tiny_data):
    data = AmazonM2(tiny_data)
    stats = {row["locale"]: row for row in dataset_stats(data).to_dicts()}
    overall = stats["all"]
    assert overall["next_in_sess"] == 0.0  # the next item is never a session item
    assert 3.6 < overall["avg_len"] < 4.8 and overall["median_len"] == 3
    assert 0.2 < overall["repeat"] < 0.5 and 0.08 < overall["imm_repeat"] < 0.3
    assert stats["JP"]["shared"] == 0.0
    assert min(stats[loc]["shared"] for loc in ("ES", "FR", "IT")) > max(stats[loc]["shared"] for loc in ("UK", "DE"))
    assert stats["DE"]["sessions"] > 5 * stats["ES"]["sessions"]
    train = data.train_sessions()
    lengths = train["prev_items"].list.len()
    assert (lengths >= 2).all() and (lengths == 2).mean() > 0.25 and lengths.max() >= 12
    assert data.test_sessions(1)["locale"].cast(pl.String).unique().sort().to_list() == ["DE", "JP", "UK"]
    assert data.test_sessions(2)["locale"].cast(pl.String).unique().sort().to_list() == ["ES", "FR", "IT"]
    assert data.test_sessions(3)["locale"].n_unique() == 6


def test_targets_are_long_tail_and_follow_the_session(tiny_data):
    train = AmazonM2(tiny_data).train_sessions()
    counts = train.group_by("locale", "next_item").len()["len"]
    assert (counts == 1).mean() > 0.3  # many targets occur once
    assert counts.max() >= 5  # and a few are popular


def test_products_speak_their_locale_language_and_currency(tiny_data):
    products = AmazonM2(tiny_data).products()
    vocab = vocabulary()
    for locale, lang in zip(LOCALES, ("en", "de", "ja", "es", "fr", "it")):
        titles = products.filter(pl.col("locale") == locale)["title"]
        names = [t["names"][lang] for category in vocab["categories"] for t in category["types"]]
        assert titles.str.contains_any(names).mean() > 0.8, locale
    jp = products.filter(pl.col("locale") == "JP")["price"].median()
    de = products.filter(pl.col("locale") == "DE")["price"].median()
    assert jp > 50 * de
    assert products["price"].null_count() > 0 and products["material"].null_count() > 0
    isbn = products["id"].str.contains(r"^[0-9]{9}[0-9X]$")
    assert 0 < isbn.mean() < 0.1
    assert products.filter(isbn)["author"].null_count() < isbn.sum()


def test_same_seed_same_files_and_complete_runs_are_not_redone(tmp_path):
    first = generate(tmp_path / "a", SynthConfig("tiny", seed=5))
    second = generate(tmp_path / "b", SynthConfig("tiny", seed=5))
    other = generate(tmp_path / "c", SynthConfig("tiny", seed=6))
    name = "sessions_train.csv"
    assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / name).read_bytes() != (other / name).read_bytes()
    stamp = (first / name).stat().st_mtime_ns
    generate(first, SynthConfig("tiny", seed=5))
    assert (first / name).stat().st_mtime_ns == stamp


def test_cli_synth_and_check_print_statistics(tmp_path, capsys):
    main(["data", "synth", "--out", str(tmp_path / "d"), "--scale", "tiny", "--seed", "1"])
    capsys.readouterr()
    main(["data", "check", "--data", str(tmp_path / "d"), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["locale"] for r in rows] == [*LOCALES, "all"]
    assert all(r["sessions"] > 0 and r["products"] > 0 for r in rows)
