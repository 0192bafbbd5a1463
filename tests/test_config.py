"""YAML configs: defaults, file values, typed `key.sub=value` overrides, clear errors."""

from __future__ import annotations

import pytest

from llmrec.cli.main import BaselineRun
from llmrec.config import ConfigError, config_path_for, load_config, save_config


def test_file_then_overrides_with_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: 2\nbaseline:\n  covisit:\n    neighbors: 10\n    weightings:\n      - {window: 3, weight: 2}\n")
    run = load_config(BaselineRun, path, ["baseline.covisit.neighbors=80", "split.valid_fraction=0.2", "baseline.sknn.recency_decay=1"])
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
