"""Catalog embedding: one short text per product, encoded once and cached on disk.

Encoding the 1.5M-product catalog takes hours on two CPU cores (FACTS 5), so each locale's
embeddings are stored under a key that hashes everything that decides them: the encoder's
weights, tokenizer, modules, prompt and sequence length, the text fields, and the exact
(id, text) pairs. A locale whose key is on disk is loaded, never re-encoded; when one locale's
products change, only that locale is encoded again.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import polars as pl

from llmrec import io
from llmrec.data.errors import DataFormatError
from llmrec.errors import ConfigError, UserError
from llmrec.models.prepare import cache_dir, resolve_model
from llmrec.progress import track

DEFAULT_TEXT_FIELDS = ("title", "brand", "color", "size", "material", "model")
FIELD_SEPARATOR = " | "
Role = Literal["query", "document"]  # which of the model's prompts a text gets


@dataclass
class EncoderConfig:
    name: str = "multilingual-e5-small"  # a prepared default model, a local folder or a sentence-transformers hub id
    batch_size: int = 64
    max_seq_length: int = 64  # tokens; titles are short, and short batches are what make CPU encoding bearable
    device: str = "cpu"
    # torch CPU threads while encoding; 0: torch's default. On a shared, busy machine 1 thread can beat all
    # cores by far (e5-small here: 105 titles/s on 1 thread, 28 on 2, with other jobs running)
    threads: int = 0
    # torch, or onnx: the transformer in onnxruntime (the `onnx` extra), exported once into the llmrec cache
    backend: str = "torch"
    int8: bool = False  # onnx only: dynamically quantized int8 weights (eval/bench_embed.py: speed and recall)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_seq_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"encoder.{name} must be at least 1")
        if self.threads < 0:
            raise ConfigError("encoder.threads must not be negative")
        if self.backend not in ("torch", "onnx"):
            raise ConfigError(f"encoder.backend must be torch or onnx, not '{self.backend}'")
        if self.int8 and self.backend != "onnx":
            raise ConfigError("encoder.int8 needs encoder.backend=onnx")


def product_texts(catalog: pl.DataFrame, fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> pl.Series:
    """One text per catalog row: the first field (the title) followed by the other fields'
    values, " | "-separated. Null or blank values are skipped, and so is a value the title
    already contains (Amazon titles usually name their brand and colour), so texts stay short
    and no attribute counts twice. Empty string when every field is empty."""
    if not fields:
        raise ConfigError("text_fields: name at least one catalog column")
    missing = [f for f in fields if f not in catalog.columns]
    if missing:
        raise ConfigError(
            f"text_fields: the catalog has no column '{missing[0]}' (columns: {', '.join(catalog.columns)})"
        )

    def cleaned(name: str) -> pl.Expr:
        value = pl.col(name).cast(pl.String).str.strip_chars()
        return pl.when(value.str.len_chars() > 0).then(value)

    head = cleaned(fields[0])
    head_lower = head.str.to_lowercase().fill_null("")
    extras = [
        pl.when(~head_lower.str.contains(cleaned(f).str.to_lowercase(), literal=True).fill_null(False)).then(cleaned(f))
        for f in fields[1:]
    ]
    text = pl.concat_str([head, *extras], separator=FIELD_SEPARATOR, ignore_nulls=True).fill_null("")
    return catalog.select(text.alias("text")).to_series()


class Encoder:
    """A sentence-transformers model giving unit-norm float32 rows. Queries and documents get
    the model's own prompts when it defines them (e5: "query: " / "passage: "), through
    sentence-transformers' `encode_query` / `encode_document`."""

    def __init__(self, config: EncoderConfig, models_cache: Path | None = None):
        self.config = config
        self.model = _load_sentence_transformer(config.name, config.device, models_cache)
        self.model.max_seq_length = min(config.max_seq_length, self.model.max_seq_length or config.max_seq_length)
        self.onnx_file: Path | None = None
        if config.backend == "onnx":
            from llmrec.retrieve.onnx import exported_model, use_onnx

            folder = cache_dir() / "onnx" / _model_digest(self.model)
            self.onnx_file = exported_model(self.model, folder, config.int8)
            use_onnx(self.model, self.onnx_file, config.threads)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @cached_property
    def fingerprint(self) -> str:
        """Hash of what decides an embedding: weights, tokenizer, modules, prompts, sequence
        length, and for onnx the exported file itself (int8 weights included). Computed from the
        loaded model, so a hub id, a copied folder and the prepared folder of the same model
        agree (about 2 s for e5-small)."""
        if self.onnx_file is None:
            return _model_digest(self.model)
        digest = hashlib.blake2b(self.onnx_file.parent.name.encode(), digest_size=16)  # the torch model's digest
        with self.onnx_file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        return digest.hexdigest()

    def encode(self, texts: Sequence[str], role: Role, description: str | None = None) -> np.ndarray:
        """(len(texts), d) float32 unit rows. Each distinct text is encoded once, in batches of
        similar length (less padding); with a `description`, under a progress bar."""
        texts = pl.Series("text", list(texts), dtype=pl.String)
        if texts.null_count():
            raise ValueError("encode: texts must not be null")
        distinct = texts.unique(maintain_order=True)
        order = np.argsort(distinct.str.len_bytes().to_numpy(), kind="stable")
        ordered = distinct.gather(order).to_list()
        size = self.config.batch_size
        encode = self.model.encode_query if role == "query" else self.model.encode_document
        vectors = np.zeros((len(ordered), self.dimension), dtype=np.float32)
        batches = range(0, len(ordered), size)
        with torch_threads(self.config.threads):
            for start in track(batches, description, total=len(batches)) if description else batches:
                batch = ordered[start : start + size]
                vectors[order[start : start + size]] = encode(
                    batch, batch_size=size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
        positions = texts.to_frame().join(
            distinct.to_frame().with_row_index("row"), on="text", how="left", maintain_order="left"
        )["row"]
        return vectors[positions.to_numpy()]


def _model_digest(model) -> str:
    """Hash of a sentence-transformers model's weights, tokenizer, modules, prompts and length."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    tokenizer = model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(
        (backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)).encode()
    )
    modules = [(type(m).__name__, m.get_config_dict() if hasattr(m, "get_config_dict") else None) for m in model]
    settings = {"modules": modules, "prompts": model.prompts, "max_seq_length": model.max_seq_length}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU thread count set to `threads` (0: unchanged) for the block, then restored."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load_sentence_transformer(name: str, device: str, models_cache: Path | None):
    """The model behind `name`, or a one-line FileNotFoundError."""
    from sentence_transformers import SentenceTransformer

    location = resolve_model(name, models_cache)
    looks_local = location.startswith(("/", "./", "../", "~")) or Path(location).expanduser().exists()
    if looks_local and not Path(location).expanduser().exists():
        raise ConfigError(f"encoder '{name}': no such model folder")
    try:
        return SentenceTransformer(str(Path(location).expanduser()) if looks_local else location, device=device)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"encoder '{name}' not found: not a default model, a sentence-transformers folder, nor a "
            f"hub id available here ({str(error).splitlines()[0][:120]})"
        ) from None


@dataclass(frozen=True)
class LocaleEmbeddings:
    locale: str
    ids: pl.Series  # product ids, sorted, in the order of the rows of `vectors`
    texts: pl.Series  # what was encoded for each id
    vectors: np.ndarray  # (n, d) float32 unit rows
    key: str  # content hash naming the cache file


def embeddings_folder(folder: str | Path | None = None) -> Path:
    """Where catalog embeddings are cached: `folder`, else `<llmrec cache>/embeddings`."""
    return Path(folder) if folder else cache_dir() / "embeddings"


def embed_catalog(
    catalog: pl.DataFrame,
    encoder: Encoder,
    fields: Sequence[str],
    role: Role = "document",
    folder: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, LocaleEmbeddings]:
    """Embeddings of every product with a non-empty text, per locale (locales in catalog
    order, ids sorted; a locale without any text is left out). Each locale is loaded from
    `<folder>/<locale>-<key>.npy` when that file exists, else encoded and written there atomically."""
    folder = embeddings_folder(folder)
    duplicated = catalog.select("locale", "id").filter(pl.struct("locale", "id").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise DataFormatError("catalog", f"product {row['id']} is listed twice in locale {row['locale']}")
    products = (
        catalog.select(pl.col("locale").cast(pl.String), pl.col("id"), product_texts(catalog, fields))
        .filter(pl.col("text").str.len_chars() > 0)
        .sort("locale", "id", maintain_order=True)
    )
    locales = catalog["locale"].cast(pl.String).unique(maintain_order=True).to_list()
    settings = {
        "fields": list(fields),
        "separator": FIELD_SEPARATOR,
        "role": role,
    }  # the prompts are in the fingerprint
    result = {}
    for locale in locales:
        rows = products.filter(pl.col("locale") == locale)
        if rows.height == 0:
            log(f"{locale}: no product has any text in {', '.join(fields)}: not indexed")
            continue
        key = _content_key(encoder.fingerprint, settings, rows["id"], rows["text"])
        path = folder / f"{locale}-{key}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape != (rows.height, encoder.dimension) or vectors.dtype != np.float32:
                raise UserError(
                    f"{path}: cached embeddings have shape {vectors.shape}, expected "
                    f"{(rows.height, encoder.dimension)}: delete the file"
                )
            log(f"{locale}: {rows.height:,} product embeddings from the cache ({path.name})")
        else:
            vectors = encoder.encode(rows["text"].to_list(), role, f"embedding the {locale} catalog")
            with io.atomic_path(path) as temporary, temporary.open("wb") as handle:
                np.save(handle, vectors)
            log(f"{locale}: {rows.height:,} products embedded, cached in {path}")
        result[locale] = LocaleEmbeddings(locale, rows["id"], rows["text"], vectors, key)
    return result


def _content_key(fingerprint: str, settings: dict, ids: pl.Series, texts: pl.Series) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(fingerprint.encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for column in (ids, texts):
        digest.update(column.str.join("\x1e").item().encode() if len(column) else b"")
        digest.update(b"\x1d")
    return digest.hexdigest()
