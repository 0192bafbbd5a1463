"""The playground's engine, free of any UI: one session in, its prompt, generated titles and
grounded products out.

Loading is what is slow (a model, a dataset's splits, a catalog's embeddings and indexes), so
each piece is loaded once and kept, keyed by what decides it: the generator by (model,
adapter, backend, dtype), the splits and the catalog index by data folder, tokenizers by
model. Decoding settings never reload anything: the generator reads `generator.config` at
each call, so it is swapped per request. One generator is held at a time: a new key releases
the previous engine (an LLM per past choice would fill the memory).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import polars as pl

from llmrec.config import load_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.schema import LANGUAGE, LOCALES
from llmrec.data.split import SplitConfig, TaskSplit, load_task_split
from llmrec.errors import ConfigError
from llmrec.generate.base import GenerateConfig, Generator
from llmrec.models.prepare import DEFAULT_MODELS
from llmrec.playground.templates import TemplateText, edited_template_file, read_template_text
from llmrec.prompts.render import PromptConfig, render_prompts, resolve_template
from llmrec.retrieve import CatalogIndex, Encoder, RetrieveConfig
from llmrec.runs import overrides_of, trained_settings

MAX_GROUNDED = 100  # products per generated title


@dataclass
class PlaygroundConfig:
    data: str = "data/synth-small"
    split: SplitConfig = field(
        default_factory=SplitConfig
    )  # task 3 sessions to pick from (valid or test; limit caps them)
    model: str = "gemma-3-270m"  # a default model, a local folder or a hub id
    adapter: str = ""  # a PEFT LoRA folder; empty: the base model
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generate: GenerateConfig = field(
        default_factory=lambda: GenerateConfig(backend="hf")
    )  # hf starts in seconds, vLLM in a minute
    retrieve: RetrieveConfig = field(
        default_factory=RetrieveConfig
    )  # grounding: encoder and index of the data folder's catalog
    ground_k: int = 5  # products shown per generated title
    # What a request may open (the page takes typed paths): data folders under data_root (default: the folder
    # holding `data`), models and adapters under runs_root besides the default models, hub ids only with allow_hub
    # (the hub stays offline otherwise).
    data_root: str = ""
    runs_root: str = "runs"
    allow_hub: bool = False


def playground_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data: str | None = None,
    model: str | None = None,
    adapter: str | None = None,
    backend: str | None = None,
    data_root: str | None = None,
    runs_root: str | None = None,
    allow_hub: bool | None = None,
) -> PlaygroundConfig:
    """Defaults, then the YAML file, then the base model and prompt settings `adapter` was
    trained with, then `key=value` overrides, then the named options."""
    named = {
        "data": data,
        "model": model,
        "adapter": adapter,
        "generate.backend": backend,
        "data_root": data_root,
        "runs_root": runs_root,
        "allow_hub": allow_hub,
    }
    trained = overrides_of(trained_settings(adapter)) if adapter else []
    return load_config(
        PlaygroundConfig,
        path,
        [*trained, *overrides, *(f"{k}={json.dumps(v)}" for k, v in named.items() if v is not None)],
    )


@dataclass
class Request:
    """One question: which session, how to prompt it, which model, how to decode."""

    data: str
    split: Literal["valid", "test"]
    locale: str
    source: Literal["split", "typed"] = "split"
    session: int = 0  # index among the split's sessions of `locale`
    typed: str = ""  # product titles or ids of `locale`, one per line, oldest first
    template: TemplateText | None = None  # None: the configured file's template of the locale's language
    history: int = 5
    attributes: list[str] = field(default_factory=list)
    model: str = "gemma-3-270m"
    adapter: str = ""
    backend: Literal["hf", "vllm"] = "hf"
    decoding: Literal["greedy", "beam", "sample"] = "greedy"
    num_candidates: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 48
    ground_k: int = 5


@dataclass(frozen=True)
class Rendered:
    prompt: str  # exactly what the model reads
    tokens: int  # the prompt's length in the model's tokens
    session: str  # which session this is, in words
    target: str | None  # the true next title; None when the split is unlabelled or the session typed


@dataclass(frozen=True)
class Answer:
    rendered: Rendered
    candidates: pl.DataFrame  # candidate (1 = best), title, score (total log-probability)
    grounded: pl.DataFrame  # candidate, rank, title, price, similarity, id: nearest products per candidate
    seconds: float  # generation time, loading excluded


@dataclass
class _DataFolder:
    dataset: AmazonM2
    splits: dict[str, TaskSplit] = field(default_factory=dict)
    index: CatalogIndex | None = None


class Playground:
    def __init__(
        self,
        config: PlaygroundConfig,
        encoder: Encoder | None = None,
        make_generator: Callable[..., Generator] | None = None,
        load_tokenizer: Callable[[str], Any] | None = None,
        log: Callable[[str], None] = print,
    ):
        """`encoder` grounds titles (default: the one `config.retrieve.encoder` names);
        `make_generator(GenerateConfig, model_folder, adapter)` and `load_tokenizer(model)`
        default to llmrec's own."""
        from llmrec.generate import make_generator as default_make_generator
        from llmrec.models.prepare import load_tokenizer as default_load_tokenizer

        self.config, self.encoder, self.log = config, encoder, log
        self.make_generator = make_generator or default_make_generator
        self.load_tokenizer = load_tokenizer or default_load_tokenizer
        self._scratch = tempfile.TemporaryDirectory(prefix="llmrec-playground-")
        self._folders: dict[str, _DataFolder] = {}
        self._tokenizers: dict[str, Any] = {}
        self._generator: tuple[tuple, Generator] | None = None
        self._titles: tuple[tuple, Any] | None = None  # the last constrained request's catalogue trie, by key
        self._lock = threading.RLock()  # the UI may call from several threads; models and caches are not shared safely

    def check_request(self, request: Request) -> None:
        """Requests name folders and models typed into a web page: only those under the roots
        given at start-up may be opened, and hub ids only when the hub was allowed."""
        config = self.config
        data_root = Path(config.data_root or Path(config.data).resolve().parent)
        if not inside(request.data, data_root):
            raise ConfigError(
                f"data folder {request.data} is outside the data root {data_root} given at start-up (--data-root)"
            )
        if request.adapter.strip() and not inside(request.adapter.strip(), Path(config.runs_root)):
            raise ConfigError(
                f"adapter {request.adapter} is outside the runs root {config.runs_root} given at start-up (--runs-root)"
            )
        model = request.model.strip()
        if model in DEFAULT_MODELS or inside(model, Path(config.runs_root)):
            return
        if Path(model).exists() or not config.allow_hub:
            where = (
                "a folder outside the runs root"
                if Path(model).exists()
                else "a hub id, and the hub was not allowed (--allow-hub)"
            )
            raise ConfigError(
                f"model {model} is {where}: use a default model ({', '.join(DEFAULT_MODELS)}) or a "
                f"folder under {config.runs_root}"
            )

    def default_request(self, locale: str = "UK") -> Request:
        """The configured settings as a request for the first session of `locale`."""
        config = self.config
        return Request(
            data=config.data,
            split=config.split.name,
            locale=locale,
            history=config.prompt.history,
            attributes=list(config.prompt.attributes),
            model=config.model,
            adapter=config.adapter,
            backend=config.generate.backend,
            decoding=config.generate.decoding,
            num_candidates=config.generate.num_candidates,
            temperature=config.generate.temperature,
            top_p=config.generate.top_p,
            max_new_tokens=config.generate.max_new_tokens,
            ground_k=config.ground_k,
        )

    def template_text(self, locale: str, data: str | None = None) -> TemplateText:
        """The configured template of `locale`'s language for the data folder (default: the
        configured one), where edits start from."""
        template = resolve_template(self.config.prompt, data or self.config.data).template
        return read_template_text(template, LANGUAGE[check_locale(locale)])

    def session_count(self, data: str, split: str, locale: str) -> int:
        self.check_request(dataclasses.replace(self.default_request(check_locale(locale)), data=data))
        with self._lock:
            return self._split(data, split).sessions.filter(pl.col("locale") == check_locale(locale)).height

    def render(self, request: Request) -> Rendered:
        """The prompt of the requested session under the requested template and history."""
        self.check_request(request)
        with self._lock:
            locale = check_locale(request.locale)
            if request.history < 1:
                raise ValueError(f"history must be at least 1, got {request.history}")
            sessions, catalog, target, description = self._session(request, locale)
            template = resolve_template(self.config.prompt, request.data).template
            if request.template is not None:
                template = str(
                    edited_template_file(template, LANGUAGE[locale], request.template, Path(self._scratch.name))
                )
            prompt_config = dataclasses.replace(
                self.config.prompt, template=template, history=request.history, attributes=list(request.attributes)
            )
            tokenizer = self._tokenizer(request.model)
            try:
                prompt = render_prompts(sessions, catalog, prompt_config, tokenizer)[0]
            except ValueError as error:
                if request.template is None:
                    raise
                raise ValueError(str(error).replace(f"{template}: ", "edited template: ")) from None
            return Rendered(prompt, len(tokenizer(prompt)["input_ids"]), description, target)

    def answer(self, request: Request) -> Answer:
        """Generated titles for the session's prompt, each grounded to the catalog's nearest products."""
        with self._lock:
            if not 1 <= request.ground_k <= MAX_GROUNDED:
                raise ValueError(f"products per title must be between 1 and {MAX_GROUNDED}, got {request.ground_k}")
            rendered = self.render(request)
            decoding = self._decoding(request)
            generator = self._generator_for(request)
            generator.config = decoding
            started = time.perf_counter()
            if decoding.decoding == "constrained":
                candidates = self._constrained(request, rendered.prompt, generator, decoding)
            else:
                candidates = generator.generate([rendered.prompt])[0]
            seconds = time.perf_counter() - started
            titles = pl.DataFrame(
                {
                    "candidate": range(1, len(candidates) + 1),
                    "title": [t for t, _ in candidates],
                    "score": [s for _, s in candidates],
                },
                schema={"candidate": pl.Int64, "title": pl.String, "score": pl.Float64},
            )
            hits = self._index(request.data).search_titles(titles["title"].to_list(), request.locale, request.ground_k)
            grounded = hits.select(
                (pl.col("query").cast(pl.Int64) + 1).alias("candidate"), "rank", "title", "price", "similarity", "id"
            )
            return Answer(rendered, titles, grounded, seconds)

    def close(self) -> None:
        """Stops a vLLM engine and removes the edited templates."""
        with self._lock:
            self._release_generator()
            self._scratch.cleanup()

    def _folder(self, data: str) -> _DataFolder:
        key = str(Path(data).resolve())
        if key not in self._folders:
            self._folders[key] = _DataFolder(AmazonM2(Path(data)))
        return self._folders[key]

    def _split(self, data: str, name: str) -> TaskSplit:
        folder = self._folder(data)
        if name not in folder.splits:
            self.log(f"loading the task 3 {name} split of {data}")
            folder.splits[name] = load_task_split(folder.dataset, 3, dataclasses.replace(self.config.split, name=name))
        return folder.splits[name]

    def _index(self, data: str) -> CatalogIndex:
        folder = self._folder(data)
        if folder.index is None:
            self.log(f"building the catalog index of {data} (embeddings are cached on disk after the first time)")
            folder.index = CatalogIndex.build(
                folder.dataset.products(), self.config.retrieve, self.encoder, log=self.log
            )
        return folder.index

    def _tokenizer(self, model: str):
        if model not in self._tokenizers:
            self._tokenizers[model] = self.load_tokenizer(model)
        return self._tokenizers[model]

    def _session(self, request: Request, locale: str) -> tuple[pl.DataFrame, pl.DataFrame, str | None, str]:
        """(the session as a one-row frame, the catalog rows its prompt needs, target, description)."""
        if request.source == "typed":
            return typed_session(request.typed, locale, self._folder(request.data).dataset.products())
        split = self._split(request.data, request.split)
        rows = split.sessions.with_row_index("row").filter(pl.col("locale") == locale)
        if not 0 <= request.session < rows.height:
            raise ValueError(
                f"session {request.session} is outside the {rows.height} {locale} sessions of the "
                f"{request.split} split (0 to {rows.height - 1})"
            )
        row = rows.slice(request.session, 1)
        target = split.targets[int(row["row"][0])] if split.targets is not None else None
        items = row.select(pl.col("prev_items").alias("id"), "locale").explode("id")
        catalog = split.catalog.join(items, on=["id", "locale"], how="semi")
        description = (
            f"session {row['session_id'][0]} ({locale}, {items.height} items): {request.session + 1} of "
            f"{rows.height} {locale} sessions of the {request.split} split"
        )
        return row.drop("row"), catalog, target, description

    def _decoding(self, request: Request) -> GenerateConfig:
        """The configured generation settings with the request's decoding; beam search keeps at
        least as many beams as candidates asked for."""
        return dataclasses.replace(
            self.config.generate,
            backend=request.backend,
            decoding=request.decoding,
            num_candidates=request.num_candidates,
            num_beams=max(self.config.generate.num_beams, request.num_candidates),
            temperature=request.temperature,
            top_p=request.top_p,
            max_new_tokens=request.max_new_tokens,
        )

    def _constrained(self, request: Request, prompt: str, generator: Generator, decoding: GenerateConfig) -> list:
        """Beams over the titles of the locale's catalogue, the session's own products banned."""
        from llmrec.generate.constrained import CatalogConstraint, CatalogTitles

        sessions = self._session(request, request.locale)[0].select(
            pl.lit(0).alias("session_id"), pl.lit(request.locale).alias("locale"), "prev_items"
        )
        key = (request.data, request.locale, self._generator[0])  # the catalogue's trie under this model's tokenizer
        if self._titles is None or self._titles[0] != key:
            catalog = self._folder(request.data).dataset.products().filter(pl.col("locale") == request.locale)
            self._titles = (key, CatalogTitles.build(catalog, generator.tokenizer))
        rules = CatalogConstraint.for_sessions(sessions, self._titles[1], decoding.exclude_history)
        row = pl.DataFrame({"session_id": [0], "locale": [request.locale], "prompt": [prompt]})
        return rules.generate(generator, row, decoding.num_beams, decoding.num_candidates)[0]

    def _generator_for(self, request: Request) -> Generator:
        from llmrec.models.prepare import resolve_model

        model = resolve_model(request.model)
        adapter = request.adapter.strip() or None
        # a vLLM engine reads constrained decoding's log-probabilities after the mask: another engine
        engine = self._decoding(request) if request.backend == "vllm" and request.decoding == "constrained" else None
        key = (model, adapter, request.backend, self.config.generate.dtype, engine and engine.num_beams)
        if self._generator is None or self._generator[0] != key:
            self._release_generator()
            self.log(
                f"loading {request.model}" + (f" with adapter {adapter}" if adapter else "") + f" ({request.backend})"
            )
            config = engine or dataclasses.replace(self.config.generate, backend=request.backend)
            self._generator = (key, self.make_generator(config, model, adapter))
        return self._generator[1]

    def _release_generator(self) -> None:
        if self._generator is not None:
            generator, self._generator = self._generator[1], None
            if hasattr(generator, "close"):
                generator.close()


def inside(path: str | Path, root: Path) -> bool:
    """Whether `path`, links resolved, lies in the folder `root` (or is it)."""
    return Path(path).resolve().is_relative_to(root.resolve())


def check_locale(locale: str) -> str:
    if locale not in LOCALES:
        raise ValueError(f"unknown locale '{locale}': choose one of {', '.join(LOCALES)}")
    return locale


def typed_session(typed: str, locale: str, products: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, None, str]:
    """A session from typed lines: a line equal to a product id of `locale` is that product,
    any other line is the title of a product the catalog does not hold."""
    lines = [line.strip() for line in typed.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the typed session is empty: type product titles or ids, one per line, oldest first")
    known = products.filter(pl.col("locale") == locale)["id"]
    typed_items = (
        pl.DataFrame({"line": lines})
        .with_row_index("pos")
        .with_columns(pl.col("line").is_in(known.implode()).alias("is_id"))
    )
    typed_items = typed_items.with_columns(
        pl.when("is_id").then(pl.col("line")).otherwise(pl.format("typed-{}", pl.col("pos"))).alias("id"),
        pl.lit(locale).cast(products["locale"].dtype).alias("locale"),
    )
    catalog = pl.concat(
        [
            products.join(typed_items.filter("is_id").select("id", "locale"), on=["id", "locale"], how="semi"),
            typed_items.filter(~pl.col("is_id")).select("id", "locale", pl.col("line").alias("title")),
        ],
        how="diagonal_relaxed",
    )
    session = pl.DataFrame({"session_id": [0], "prev_items": [typed_items["id"].to_list()], "locale": [locale]})
    description = f"typed session ({locale}, {len(lines)} items, {int(typed_items['is_id'].sum())} of them product ids)"
    return session, catalog, None, description
