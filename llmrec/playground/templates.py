"""Prompt templates edited in the playground, rendered through the project's own loader.

`render_prompts` reads its templates from a YAML file, so an edited template becomes a copy of
the configured file with one language's header, item and footer replaced, written once per
distinct content into a scratch folder: every check of `load_templates` applies to edits too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmrec import io
from llmrec.errors import ConfigError
from llmrec.prompts.render import template_path


@dataclass(frozen=True)
class TemplateText:
    """The editable part of one language's template, as written in the YAML file."""

    header: str
    item: str  # holds {title} then {attributes}
    footer: str


def read_template_text(path: str | Path, language: str) -> TemplateText:
    entry = _read(path).get(language)
    if not isinstance(entry, dict):
        raise ValueError(f"{template_path(path)}: no template for language '{language}'")
    return TemplateText(header=entry.get("header", ""), item=entry.get("item", ""), footer=entry.get("footer", ""))


def edited_template_file(path: str | Path, language: str, text: TemplateText, folder: Path) -> Path:
    """A template file equal to `path` except for `language`'s header, item and footer."""
    raw = _read(path)
    raw[language] = {**(raw.get(language) or {}), "header": text.header, "item": text.item, "footer": text.footer}
    content = yaml.safe_dump(raw, allow_unicode=True, sort_keys=True)
    out = folder / f"template-{hashlib.sha256(content.encode()).hexdigest()[:16]}.yaml"
    if not out.exists():
        io.write_text(content, out)
    return out


def _read(path: str | Path) -> dict:
    resolved = template_path(path)
    if not resolved.exists():
        raise ConfigError(f"{resolved}: prompt template file not found")
    return yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
