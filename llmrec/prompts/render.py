"""Sessions -> multilingual title prompts, built column-wise.

A prompt lists the session's last K products (titles plus optional brand, color, size,
price) in the locale's language, oldest first, and ends where the next product's title
should follow. When a tokenizer is given, the oldest items are dropped until the prompt fits
`max_prompt_tokens`, so the most recent items always survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import yaml

from llmrec.data.errors import DataFormatError
from llmrec.data.importers.folder import MANIFEST
from llmrec.data.schema import LANGUAGE
from llmrec.errors import ConfigError

ATTRIBUTES = ("brand", "color", "size", "price")
CURRENCY = {"UK": "£", "DE": "€", "JP": "¥", "ES": "€", "FR": "€", "IT": "€"}
TEMPLATE_KEYS = ("header", "item", "footer", "attributes", "unknown")
TEMPLATES = Path(__file__).parent / "templates"
AUTO = "auto"
DEFAULT_TEMPLATE = "task3"  # shopping sessions, in the six locales' languages


@dataclass
class PromptConfig:
    template: str = AUTO  # a template file, the name of a shipped one (llmrec/prompts/templates/<name>.yaml), or
    # auto: the data folder's own (`prompt_template` in its dataset.yaml: purchases for imported data), else task3
    history: int = 4  # K: the last K session items are shown
    attributes: list[str] = field(
        default_factory=list
    )  # any of brand, color, size, price (titles already name brand and colour)
    max_prompt_tokens: int = 160  # the oldest items are dropped beyond this
    max_title_chars: int = 160  # very long titles are cut
    collapse_repeats: bool = True  # A A B is shown as A B


@dataclass(frozen=True)
class Template:
    header: str
    item_prefix: str  # text before {title}
    item_middle: str  # between {title} and {attributes}
    item_suffix: str
    footer: str
    attribute_names: dict[str, str]
    unknown: str


def resolve_template(config: PromptConfig, data: str | Path) -> PromptConfig:
    """`config` with `template: auto` replaced by the template the data folder names (imported
    purchase histories name `purchases`; M2 and the synthetic sets name none: task3)."""
    if config.template != AUTO:
        return config
    manifest = Path(data) / MANIFEST
    named = (yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}) if manifest.exists() else {}
    template = named.get("prompt_template", DEFAULT_TEMPLATE) if isinstance(named, dict) else DEFAULT_TEMPLATE
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{manifest}: prompt_template must name a template")
    return replace(config, template=template)


def template_path(name_or_path: str | Path) -> Path:
    """A template file: an existing path, or the name of a shipped one (`task3`); `auto` not
    resolved against a data folder is task3."""
    name_or_path = DEFAULT_TEMPLATE if name_or_path == AUTO else name_or_path
    path = Path(name_or_path)
    shipped = TEMPLATES / f"{name_or_path}.yaml"
    if not path.exists() and path.suffix not in (".yaml", ".yml") and len(path.parts) == 1 and shipped.exists():
        return shipped
    return path


def load_templates(path: str | Path) -> dict[str, Template]:
    """language -> Template, for the languages the file covers (a dataset's own template may
    cover its language only; rendering a session of another language is an error)."""
    path = template_path(path)
    if not path.exists():
        raise ConfigError(f"{path}: prompt template file not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    languages = sorted(set(LANGUAGE.values()))
    unknown = [key for key in raw if key not in languages] if isinstance(raw, dict) else []
    if not isinstance(raw, dict) or not raw or unknown:
        found = f"unknown language '{unknown[0]}'" if unknown else "no language templates"
        raise ConfigError(f"{path}: {found} (expected keys among {', '.join(languages)})")
    templates = {}
    for language in [language for language in languages if language in raw]:
        entry = raw[language]
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: template '{language}' is not a mapping")
        missing = [k for k in TEMPLATE_KEYS if k not in entry]
        if missing:
            raise ConfigError(f"{path}: template '{language}' lacks '{missing[0]}'")
        item = entry["item"]
        if (
            item.count("{title}") != 1
            or item.count("{attributes}") != 1
            or item.index("{title}") > item.index("{attributes}")
        ):
            raise ConfigError(
                f"{path}: template '{language}' item must contain {{title}} then {{attributes}} once each"
            )
        prefix, rest = item.split("{title}")
        middle, suffix = rest.split("{attributes}")
        templates[language] = Template(
            header=entry["header"],
            item_prefix=prefix,
            item_middle=middle,
            item_suffix=suffix,
            footer=entry["footer"],
            attribute_names=dict(entry["attributes"]),
            unknown=entry["unknown"],
        )
    return templates


def _template_table(templates: dict[str, Template]) -> pl.DataFrame:
    rows = []
    for locale, language in LANGUAGE.items():
        if language not in templates:
            continue
        t = templates[language]
        row = {
            "locale": locale,
            "header": t.header,
            "footer": t.footer,
            "item_prefix": t.item_prefix,
            "item_middle": t.item_middle,
            "item_suffix": t.item_suffix,
            "unknown": t.unknown,
            "currency": CURRENCY[locale],
        }
        row |= {f"name_{a}": t.attribute_names.get(a, a) for a in ATTRIBUTES}
        rows.append(row)
    return pl.DataFrame(rows)


def session_lines(
    sessions: pl.DataFrame, catalog: pl.DataFrame, config: PromptConfig, templates: dict[str, Template]
) -> pl.DataFrame:
    """One row per shown item: (row, pos, locale, line), the last K items of every session."""
    unknown_attributes = [a for a in config.attributes if a not in ATTRIBUTES]
    if unknown_attributes:
        raise ConfigError(
            f"prompt.attributes: unknown attribute '{unknown_attributes[0]}' (known: {', '.join(ATTRIBUTES)})"
        )
    items = sessions.select(
        pl.int_range(pl.len()).alias("row"), pl.col("locale").cast(pl.String), pl.col("prev_items").alias("id")
    )
    items = items.explode("id").with_columns(pl.int_range(pl.len()).over("row").alias("pos"))
    if config.collapse_repeats:
        items = items.filter((pl.col("id") != pl.col("id").shift(1).over("row")).fill_null(True))
    items = items.filter(pl.int_range(pl.len()).reverse().over("row") < config.history)
    products = catalog.select(
        "id", pl.col("locale").cast(pl.String), "title", *[a for a in ATTRIBUTES if a != "price"], "price"
    )
    items = items.join(products, on=["id", "locale"], how="left").join(
        _template_table(templates), on="locale", how="left"
    )
    shown = []
    for attribute in config.attributes:
        value = pl.col(attribute)
        if attribute == "price":
            value = (
                pl.when(pl.col("locale") == "JP")
                .then(value.round(0).cast(pl.Int64).cast(pl.String))
                .otherwise(value.round(2).cast(pl.String))
            )
            value = pl.concat_str([value, pl.lit(" "), pl.col("currency")])
        shown.append(pl.concat_str([pl.col(f"name_{attribute}"), pl.lit(": "), value]))
    attributes = pl.concat_list(shown).list.drop_nulls().list.join(", ") if shown else pl.lit("")
    attributes = (
        pl.when(attributes.str.len_chars() > 0)
        .then(pl.concat_str([pl.lit(" ("), attributes, pl.lit(")")]))
        .otherwise(pl.lit(""))
    )
    title = pl.coalesce(
        pl.col("title").str.slice(0, config.max_title_chars),
        pl.concat_str([pl.col("unknown"), pl.lit(" "), pl.col("id")]),
    )
    line = pl.concat_str([pl.col("item_prefix"), title, pl.col("item_middle"), attributes, pl.col("item_suffix")])
    return items.select("row", "pos", "locale", line.alias("line"), "header", "footer")


def render_prompts(sessions: pl.DataFrame, catalog: pl.DataFrame, config: PromptConfig, tokenizer=None) -> pl.Series:
    """The prompt of every session, in session order. With a tokenizer, the oldest lines are
    dropped until header + lines + footer fit `max_prompt_tokens` (the last line always stays)."""
    empty = sessions["prev_items"].list.len().fill_null(0) == 0
    if empty.any():
        row = int(empty.arg_true()[0])
        raise DataFormatError(
            "sessions",
            f"session {sessions['session_id'][row] if 'session_id' in sessions.columns else row} has "
            "no items to build a prompt from",
        )
    templates = load_templates(config.template)
    missing = sessions.select(pl.col("locale").cast(pl.String).unique().sort()).filter(
        ~pl.col("locale").replace_strict(LANGUAGE, default=None).is_in(list(templates))
    )
    if missing.height:
        locale = missing["locale"][0]
        raise ConfigError(
            f"{template_path(config.template)}: no template for language '{LANGUAGE.get(locale, locale)}' "
            f"(sessions of locale {locale}); it covers {', '.join(templates)}"
        )
    lines = session_lines(sessions, catalog, config, templates)
    if tokenizer is not None:
        lines = _fit_budget(lines, tokenizer, config.max_prompt_tokens)
    joined = (
        lines.sort("row", "pos")
        .group_by("row", maintain_order=True)
        .agg(pl.col("line").str.join("\n"), pl.col("header").first(), pl.col("footer").first())
    )
    prompts = joined.select(
        "row",
        pl.concat_str([pl.col("header"), pl.lit("\n"), pl.col("line"), pl.lit("\n"), pl.col("footer")]).alias("prompt"),
    )
    return pl.DataFrame({"row": pl.int_range(sessions.height, eager=True)}).join(prompts, on="row", how="left")[
        "prompt"
    ]


def _fit_budget(lines: pl.DataFrame, tokenizer, budget: int) -> pl.DataFrame:
    def count(texts: pl.Series) -> pl.Series:
        encoded = tokenizer(texts.to_list(), add_special_tokens=False)["input_ids"]
        return pl.Series([len(ids) + 1 for ids in encoded], dtype=pl.Int64)  # + the newline

    fixed = lines.select("locale", "header", "footer").unique("locale")
    frame = fixed.select(pl.concat_str([pl.col("header"), pl.lit("\n"), pl.col("footer")])).to_series()
    fixed = fixed.with_columns(count(frame).alias("fixed_tokens"))
    lines = lines.with_columns(count(lines["line"]).alias("tokens")).join(
        fixed.select("locale", "fixed_tokens"), on="locale"
    )
    newest_first = pl.col("tokens").reverse().cum_sum().reverse().over("row", order_by="pos")
    keep = (newest_first + pl.col("fixed_tokens") <= budget) | (pl.col("pos") == pl.col("pos").max().over("row"))
    return lines.filter(keep)
