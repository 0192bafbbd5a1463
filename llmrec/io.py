"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl
import yaml

from llmrec.errors import UserError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path in the target's folder; renames it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual mode
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as temporary:
        frame.write_parquet(temporary)
    return Path(path)


def write_csv(frame: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as temporary:
        frame.write_csv(temporary, quote_style="necessary")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(data: dict, path: str | Path) -> Path:
    return write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", path)


def json_digest(data: dict) -> str:
    """sha256 of `data` as canonical JSON: one digest for the same settings in any key order."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def write_yaml(data: dict, path: str | Path) -> Path:
    return write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), path)


def read_yaml(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


WHOLE_FILE_BYTES = 256 * 2**20  # files up to this size are hashed whole
SAMPLE_BYTES = 16 * 2**20  # of larger ones (weights of big models): size, start, middle and end


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content; past WHOLE_FILE_BYTES, of its size and three 16 MiB samples
    (a retrained or other model changes every tensor, so the samples see it, in a second
    instead of a minute for 14 GB of weights)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        if size <= WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            for start in (0, size // 2, size - SAMPLE_BYTES):
                handle.seek(start)
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def folder_digest(path: str | Path) -> str:
    """sha256 over every file below `path` (relative names and contents), or of one file: what
    decides an output that reads them, so a resumed run never mixes in partial outputs made
    from other data or another model. Hidden files (`.name`) are left out."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()


def claim_folder(folder: str | Path, settings: dict) -> bool:
    """Mark `folder` as holding the partial outputs of a run with `settings`, so a rerun
    resumes from them; True when it already did. Outputs of other settings are never mixed
    in: a folder claimed with different settings is an error naming the first difference."""
    path = Path(folder) / "settings.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in settings if previous.get(k) != settings[k]] + [k for k in previous if k not in settings]
        if changed:
            raise UserError(
                f"{folder} holds partial outputs of another run ({changed[0]} differs): rerun with "
                "its settings or remove the folder"
            )
        return True
    write_json(settings, path)
    return False
