"""Sessions become prompts in the locale's language, newest items kept within the budget."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import LOCALES
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.errors import ConfigError
from llmrec.prompts import PromptConfig, load_templates, prompt_dataset, render_prompts, resolve_template
from llmrec.prompts.render import template_path
from tests.helpers import tiny_tokenizer

CATALOG = pl.DataFrame(
    {
        "id": [f"P{i:09d}" for i in range(6)],
        "locale": ["DE"] * 6,
        "title": ["Handyhülle Schwarz", "Handyhülle Rot", "Ladekabel 2 m", "Panzerglas", "Autohalterung", None],
        "brand": ["Voltex", "Voltex", None, "Lumora", None, None],
        "color": ["Schwarz", "Rot", None, None, None, None],
        "size": [None, None, "2 m", None, None, None],
        "price": [12.99, 12.99, None, 7.5, 19.0, None],
    }
)


def sessions(*item_lists: list[int], locale: str = "DE") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session_id": list(range(len(item_lists))),
            "prev_items": [[f"P{i:09d}" for i in items] for items in item_lists],
            "locale": [locale] * len(item_lists),
        }
    )


def test_prompt_lists_the_last_k_items_oldest_first_with_localized_attributes():
    config = PromptConfig(history=3, attributes=["brand", "color", "price"])
    (prompt,) = render_prompts(sessions([0, 1, 2, 3, 5]), CATALOG, config).to_list()
    lines = prompt.splitlines()
    assert lines[0].startswith("Einkaufssitzung auf Amazon.de") and lines[-2:] == [
        "Als Nächstes angesehenes Produkt:",
        "-",
    ]
    assert lines[1:-2] == [
        "- Ladekabel 2 m",
        "- Panzerglas (Marke: Lumora, Preis: 7.5 €)",
        "- unbekanntes Produkt P000000005",
    ]


def test_immediate_repeats_collapse():
    (prompt,) = render_prompts(sessions([0, 0, 0, 1]), CATALOG, PromptConfig(attributes=[])).to_list()
    assert prompt.count("Handyhülle Schwarz") == 1
    (prompt,) = render_prompts(
        sessions([0, 0, 1]), CATALOG, PromptConfig(attributes=[], collapse_repeats=False)
    ).to_list()
    assert prompt.count("Handyhülle Schwarz") == 2


def test_token_budget_drops_the_oldest_items_first():
    config = PromptConfig(history=10, attributes=["brand", "color", "size", "price"], max_prompt_tokens=10_000)
    full = render_prompts(sessions([0, 1, 2, 3, 4]), CATALOG, config).to_list()[0]
    tokenizer = tiny_tokenizer([full] * 5)
    full_tokens = len(tokenizer(full)["input_ids"])
    budget = full_tokens - 3
    config.max_prompt_tokens = budget
    (cut,) = render_prompts(sessions([0, 1, 2, 3, 4]), CATALOG, config, tokenizer).to_list()
    assert len(tokenizer(cut)["input_ids"]) <= budget
    assert "Handyhülle Schwarz" not in cut and "Autohalterung" in cut  # oldest gone, newest kept
    config.max_prompt_tokens = 1
    (newest_only,) = render_prompts(sessions([0, 1, 2, 3, 4]), CATALOG, config, tokenizer).to_list()
    assert newest_only.splitlines()[1].startswith("- Autohalterung")  # the last item always stays


def test_every_locale_renders_in_its_language(tiny_data):
    data = AmazonM2(tiny_data)
    split = load_task_split(data, 3, SplitConfig(name="valid"))
    dataset = prompt_dataset(split.sessions, split.catalog, PromptConfig(attributes=["brand", "price"]), split.targets)
    assert dataset.column_names == ["session_id", "locale", "prompt", "completion"]
    templates = load_templates(PromptConfig().template)
    headers = {
        "UK": "Amazon UK",
        "DE": "Amazon.de",
        "JP": "Amazon.co.jp",
        "ES": "Amazon.es",
        "FR": "Amazon.fr",
        "IT": "Amazon.it",
    }
    frame = dataset.to_polars()
    for locale in LOCALES:
        rows = frame.filter(pl.col("locale") == locale)
        assert rows.height > 0
        assert rows["prompt"].str.contains(headers[locale], literal=True).all()
        assert (
            rows["prompt"]
            .str.ends_with(next(t.footer for lang, t in templates.items() if headers[locale] in t.header))
            .all()
        )
    assert frame["completion"].str.starts_with(" ").all()
    assert (frame["completion"].str.len_chars() > 5).all()


def test_bad_template_files_are_named(tmp_path):
    path = tmp_path / "t.yaml"
    for text, error in (
        ("xx: {header: a}\n", "t.yaml: unknown language 'xx'"),
        ("", "t.yaml: no language templates"),
        ("en: header\n", "t.yaml: template 'en' is not a mapping"),
        ("en: {header: a, item: '{title}', footer: b, attributes: {}, unknown: u}\n", "template 'en' item must"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=error):
            load_templates(path)
    raw = yaml.safe_load(template_path(PromptConfig().template).read_text(encoding="utf-8"))
    raw["en"]["item"] = "- {title}"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="t.yaml: template 'en' item must contain"):
        load_templates(path)
    with pytest.raises(ConfigError, match="prompt template file not found"):
        load_templates(tmp_path / "none.yaml")
    with pytest.raises(ValueError, match="unknown attribute 'weight'"):
        render_prompts(sessions([0, 1]), CATALOG, PromptConfig(attributes=["weight"]))


def test_an_empty_session_is_a_clear_error():
    empty = pl.DataFrame(
        {"session_id": [7], "prev_items": [[]], "locale": ["DE"]}, schema_overrides={"prev_items": pl.List(pl.String)}
    )
    with pytest.raises(ValueError, match="session 7 has no items"):
        render_prompts(empty, CATALOG, PromptConfig())


def test_a_template_may_cover_some_languages_and_names_a_missing_one():
    purchases = PromptConfig(template="purchases", attributes=[])
    catalog = CATALOG.with_columns(pl.lit("UK").alias("locale"))
    (uk,) = render_prompts(sessions([0, 1], locale="UK"), catalog, purchases).to_list()
    assert uk == "\n".join(
        [
            "Products one customer bought, oldest first:",
            "- Handyhülle Schwarz",
            "- Handyhülle Rot",
            "Next purchase:",
            "-",
        ]
    )
    with pytest.raises(ConfigError, match=r"purchases.yaml: no template for language 'de' \(sessions of locale DE\)"):
        render_prompts(sessions([0, 1]), CATALOG, purchases)


def test_auto_template_is_the_data_folders_own(tmp_path):
    auto = PromptConfig()
    assert resolve_template(auto, tmp_path).template == "task3"  # M2 and synthetic folders name none
    (tmp_path / "dataset.yaml").write_text("prompt_template: purchases\n")
    assert resolve_template(auto, tmp_path).template == "purchases"
    assert resolve_template(PromptConfig(template="task3"), tmp_path).template == "task3"  # an explicit choice stays
    (tmp_path / "dataset.yaml").write_text("prompt_template: 3\n")
    with pytest.raises(ConfigError, match="dataset.yaml: prompt_template must name a template"):
        resolve_template(auto, tmp_path)
