"""YAML configs: defaults, file values, typed `key.sub=value` overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmrec.baselines import BaselineRun
from llmrec.config import SHIPPED, ConfigError, find_config, load_config, save_config, shipped_configs, to_dict
from llmrec.recipes import recipe_class
from llmrec.runs import config_path_for


def test_file_then_overrides_with_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "task: 2\nbaseline:\n  covisit:\n    neighbors: 10\n    weightings:\n      - {window: 3, weight: 2}\n"
    )
    run = load_config(
        BaselineRun,
        path,
        ["baseline.covisit.neighbors=80", "split.valid_fraction=0.2", "baseline.sknn.recency_decay=1"],
    )
    assert run.task == 2 and run.baseline.covisit.neighbors == 80
    assert run.split.valid_fraction == 0.2 and isinstance(run.baseline.sknn.recency_decay, float)
    (weighting,) = run.baseline.covisit.weightings
    assert weighting.window == 3 and weighting.weight == 2.0 and weighting.backward == 0.5  # defaults fill the rest
    assert run.baseline.sknn.neighbors == 100  # untouched default


def test_saved_config_loads_back_identically(tmp_path):
    run = load_config(BaselineRun, None, ["name=sknn", "baseline.k=50"])
    out = config_path_for(tmp_path / "pred.parquet")
    assert out.name == "pred.config.yaml"
    save_config(run, out)
    assert load_config(BaselineRun, out) == run


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["baseline.covisit.neighbours=3"], "unknown key 'neighbours'"),
        (["task=two"], "task: expected int, got 'two'"),
        (["split.name=train"], "'train' is not one of 'valid', 'test'"),
        (["baseline.covisit.weightings=3"], "expected a list"),
        (["task"], "is not key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(BaselineRun, None, overrides)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(BaselineRun, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(BaselineRun, bad)


def _repeated_defaults(tree: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys of `tree` whose value equals the default (a mirror of a default)."""
    found = []
    for key, value in tree.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict) and isinstance(default, dict):
            found += _repeated_defaults(value, default, f"{prefix}{key}.")
        elif value == default:
            found.append(prefix + key)
    return found


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_loads_and_only_departs_from_the_defaults(name):
    """As litgpt's config hub test: each shipped YAML loads into its dataclass; and a recipe
    states only what it changes, so no default has a second home."""
    cls = recipe_class(name)
    config = load_config(cls, name)
    assert isinstance(config, cls)
    tree = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
    assert _repeated_defaults(tree, to_dict(cls())) == []


def test_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("task3") == SHIPPED / "task3.yaml"
    (tmp_path / "task3").write_text("train: {max_steps: 3}\n")  # a file of that name wins over the shipped recipe
    assert find_config("task3") == Path("task3")
    with pytest.raises(ConfigError, match="shipped configs: .*task3"):
        find_config("no-such-recipe")


def test_configs_show_prints_every_key_resolved(capsys):
    from llmrec.cli.main import main

    main(["configs", "show", "task3", "train.max_steps=7"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["max_steps"] == 7 and shown["train"]["lr"] == 3.0e-4 and shown["train"]["batch_size"] == 8
    main(["configs", "show", "recommend"])
    assert yaml.safe_load(capsys.readouterr().out)["reranker"]["kind"] == "lightgbm"
