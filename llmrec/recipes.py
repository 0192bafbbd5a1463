"""Which settings each shipped config holds: the dataclass its YAML loads into. A config
names only what departs from that dataclass's defaults; `llmrec configs show` prints it
resolved."""

from __future__ import annotations


def _task3() -> type:
    from llmrec.train.config import Task3Config

    return Task3Config


def _recommend() -> type:
    from llmrec.rank.pipeline import RecommendConfig

    return RecommendConfig


def _baselines() -> type:
    from llmrec.baselines import BaselineRun

    return BaselineRun


def _demo() -> type:
    from llmrec.demo import DemoConfig

    return DemoConfig


RECIPES = {"task3": _task3, "recommend": _recommend, "baselines": _baselines, "demo": _demo}  # kind -> its dataclass
SHIPPED_KINDS = {
    "task3": "task3",
    "task3-gpu": "task3",
    "demo": "demo",
}  # every shipped config -> the kind of settings it holds


def recipe_class(name: str) -> type:
    """The dataclass a shipped config (or a kind) loads into."""
    return RECIPES[SHIPPED_KINDS.get(name, name)]()
