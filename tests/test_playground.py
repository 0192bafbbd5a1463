"""The prompt playground: the engine (`Playground`) on its own, then the web page driven in
Chromium by Playwright. Everything is local and tiny: the synthetic `tiny_data`, a random
Llama (head_dim 64) with a BPE tokenizer trained on the catalog's titles, a random 2-layer
sentence encoder for grounding, HF backend."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
from pathlib import Path

import polars as pl
import pytest
import torch

from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split
from llmrec.generate import make_generator
from llmrec.generate.base import eos_ids, stop_token_ids
from llmrec.playground import Playground, PlaygroundConfig, TemplateText
from llmrec.playground.service import playground_config
from tests.helpers import tiny_llama, tiny_sentence_encoder, tiny_tokenizer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def models(catalog, tmp_path_factory) -> dict[str, str]:
    """A random Llama whose output rows for stop tokens (EOS, newlines) are zero, so its greedy
    titles never end early and are never empty; and a random sentence encoder."""
    root = tmp_path_factory.mktemp("playground-models")
    titles = catalog["title"].drop_nulls().to_list()
    tokenizer = tiny_tokenizer(titles, vocab_size=400)
    llama = tiny_llama(tokenizer, max_positions=1024)
    with torch.no_grad():
        llama.lm_head.weight[stop_token_ids(tokenizer, eos_ids(tokenizer, llama.generation_config))] = 0.0
    llama.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return {"llm": str(root / "llm"), "encoder": tiny_sentence_encoder(titles, root)}


@pytest.fixture(scope="module")
def config(tiny_data, models, tmp_path_factory) -> PlaygroundConfig:
    return playground_config(
        None,
        [
            "generate.dtype=float32",
            "generate.max_new_tokens=8",
            "prompt.max_prompt_tokens=1000",
            f"retrieve.encoder.name={models['encoder']}",
            "retrieve.encoder.threads=1",
            "retrieve.index.kind=Flat",
            "retrieve.index.threads=1",
            f"retrieve.cache_dir={tmp_path_factory.mktemp('embeddings')}",
        ],
        data=str(tiny_data),
        model=models["llm"],
        backend="hf",
        runs_root=str(tmp_path_factory.getbasetemp()),
    )


@pytest.fixture(scope="module")
def split(tiny_data):
    return load_task_split(AmazonM2(tiny_data), 3, SplitConfig())


class CountingFactory:
    """`make_generator` that records the models it loads."""

    def __init__(self):
        self.loads: list[tuple] = []

    def __call__(self, config, model, adapter=None):
        self.loads.append((model, adapter, config.backend))
        return make_generator(config, model, adapter)


@pytest.fixture(scope="module")
def playground(config):
    engine = Playground(config, **QUIET)
    yield engine
    engine.close()


def session_of(split, locale: str, index: int) -> tuple[list[str], str]:
    """(titles of the session's items, oldest first; the true next title) of the index-th session of `locale`."""
    rows = split.sessions.with_row_index("row").filter(pl.col("locale") == locale)
    row = rows.slice(index, 1)
    items = row.select(pl.col("prev_items").alias("id"), "locale").explode("id")
    titles = items.join(
        split.catalog.select("id", "locale", "title"), on=["id", "locale"], how="left", maintain_order="left"
    )["title"]
    return titles.to_list(), split.targets[int(row["row"][0])]


def long_session(split, locale: str) -> int:
    """The index among `locale`'s sessions of the first one with at least three distinct items."""
    rows = split.sessions.filter(pl.col("locale") == locale)
    return int(rows["prev_items"].list.unique().list.len().ge(3).arg_true()[0])


def test_split_session_prompt_and_true_next_title(playground, split):
    index = long_session(split, "DE")
    request = dataclasses.replace(playground.default_request("DE"), session=index)
    rendered = playground.render(request)
    titles, target = session_of(split, "DE", index)
    assert rendered.prompt.startswith("Einkaufssitzung auf Amazon.de.")
    assert rendered.prompt.endswith("Als Nächstes angesehenes Produkt:\n-")
    assert all(title in rendered.prompt for title in titles[-request.history :])
    assert rendered.target == target
    assert f"{index + 1} of {playground.session_count(request.data, 'valid', 'DE')} DE sessions" in rendered.session
    assert rendered.tokens > 0


def test_model_loads_once_across_decoding_settings(config, models, tmp_path):
    factory = CountingFactory()
    playground = Playground(config, make_generator=factory, **QUIET)
    request = playground.default_request("UK")
    greedy = playground.answer(request)
    beam = playground.answer(dataclasses.replace(request, decoding="beam", num_candidates=3))
    sample = playground.answer(
        dataclasses.replace(request, decoding="sample", num_candidates=2, temperature=1.0, top_p=0.9)
    )
    assert len(factory.loads) == 1
    assert (greedy.candidates.height, beam.candidates.height, sample.candidates.height) == (1, 3, 2)
    assert beam.candidates["score"].is_sorted(descending=True)
    assert greedy.candidates["title"].str.len_chars().min() > 0
    copy = shutil.copytree(models["llm"], tmp_path / "llm-copy")
    playground.answer(dataclasses.replace(request, model=str(copy)))
    assert [load[0] for load in factory.loads] == [models["llm"], str(copy)]  # another model: loaded once more
    playground.close()


def test_requests_open_only_folders_under_the_start_up_roots(playground, config, tmp_path):
    """The page takes typed paths: data folders outside the data root, models or adapters
    outside the runs root, and hub ids without --allow-hub are refused."""
    from llmrec.errors import ConfigError

    request = playground.default_request("UK")
    outside = Path("/")
    with pytest.raises(ConfigError, match="outside the data root"):
        playground.render(dataclasses.replace(request, data=str(outside)))
    with pytest.raises(ConfigError, match="adapter /etc is outside the runs root"):
        playground.render(dataclasses.replace(request, adapter="/etc"))
    with pytest.raises(ConfigError, match="a folder outside the runs root"):
        playground.render(dataclasses.replace(request, model="/etc"))
    with pytest.raises(ConfigError, match="hub was not allowed"):
        playground.render(dataclasses.replace(request, model="someone/some-model"))
    with pytest.raises(ConfigError, match="outside the data root"):
        playground.session_count(str(tmp_path.parent.parent.parent), "valid", "UK")
    hub = Playground(dataclasses.replace(config, allow_hub=True), **QUIET)
    hub.check_request(dataclasses.replace(request, model="someone/some-model"))  # allowed now (not loaded here)
    hub.close()


def test_serving_beyond_this_machine_is_announced(monkeypatch, config):
    from llmrec.playground import app

    monkeypatch.setattr(app, "launch", lambda *args, **kwargs: None)
    lines = []
    app.serve(config, host="0.0.0.0", log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("WARNING: serving on 0.0.0.0")
    app.serve(config, host="127.0.0.1", log=lines.append)
    assert len(lines) == 1 and os.environ["HF_HUB_OFFLINE"] == "1"


def test_grounded_products_come_from_the_catalog(playground, catalog):
    request = dataclasses.replace(playground.default_request("FR"), decoding="beam", num_candidates=2, ground_k=4)
    grounded = playground.answer(request).grounded
    assert grounded.group_by("candidate").len().sort("candidate").rows() == [(1, 4), (2, 4)]
    assert (
        grounded.group_by("candidate")
        .agg(pl.col("similarity").is_sorted(descending=True).alias("sorted"))["sorted"]
        .all()
    )
    known = grounded.join(
        catalog.filter(pl.col("locale") == "FR").select("id", "title", pl.col("price").alias("catalog_price")),
        on=["id", "title"],
    )
    assert known.height == grounded.height
    assert known.select((pl.col("price").eq_missing(pl.col("catalog_price"))).all()).item()


def test_constrained_decoding_names_catalogue_products_only(playground, catalog, split):
    """Beams over the locale's catalogue titles: each candidate is a real product's title (its
    own nearest product), none of them one the session viewed."""
    request = dataclasses.replace(playground.default_request("FR"), decoding="constrained", num_candidates=3)
    answer = playground.answer(request)
    titles = answer.candidates["title"].to_list()
    viewed = set(session_of(split, "FR", request.session)[0])
    assert len(set(titles)) == 3 and set(titles) <= set(catalog.filter(pl.col("locale") == "FR")["title"])
    assert not set(titles) & viewed and answer.candidates["score"].is_sorted(descending=True)
    nearest = answer.grounded.filter(pl.col("rank") == answer.grounded["rank"].min()).sort("candidate")
    assert nearest["title"].to_list() == titles


def test_constrained_requests_build_the_catalogue_trie_once(playground, monkeypatch):
    from llmrec.generate import constrained

    built, build = [], constrained.CatalogTitles.build
    monkeypatch.setattr(constrained.CatalogTitles, "build", lambda *a: built.append(a) or build(*a))
    request = dataclasses.replace(playground.default_request("FR"), decoding="constrained", num_candidates=3)
    first = playground.answer(request)
    again = playground.answer(dataclasses.replace(request, session=request.session + 1))
    assert playground.answer(request).candidates.equals(first.candidates) and again.candidates.height == 3
    assert len(built) <= 1  # none when an earlier test left FR's trie built
    before = len(built)
    playground.answer(dataclasses.replace(playground.default_request("IT"), decoding="constrained"))
    assert len(built) == before + 1  # another locale: its own trie


def test_typed_titles_and_ids(playground, catalog):
    product = catalog.filter(pl.col("locale") == "IT").row(0, named=True)
    typed = f"{product['id']}\n\n  Tazza da caffè in ceramica blu  \n"
    answer = playground.answer(dataclasses.replace(playground.default_request("IT"), source="typed", typed=typed))
    prompt = answer.rendered.prompt
    assert prompt.startswith("Sessione di acquisto su Amazon.it.")
    assert prompt.index(product["title"]) < prompt.index("- Tazza da caffè in ceramica blu\n")
    assert answer.rendered.target is None
    assert "2 items, 1 of them product ids" in answer.rendered.session
    assert answer.grounded.height == playground.config.ground_k


def test_edited_template_renders_live(playground):
    request = playground.default_request("JP")
    edited = dataclasses.replace(request, template=TemplateText("閲覧履歴:", "* {title}{attributes}", "次:\n*"))
    prompt = playground.render(edited).prompt
    assert prompt.startswith("閲覧履歴:\n* ") and prompt.endswith("\n次:\n*")
    assert playground.render(request).prompt.startswith(
        "Amazon.co.jp の閲覧履歴"
    )  # the configured template is untouched


def test_a_data_folder_that_names_its_template_gets_it(playground, config):
    """`prompt.template: auto`: a folder whose dataset.yaml names a template (imported purchase
    histories) renders with it, in the prompt and in the template the page shows for editing."""
    own = Path(config.data).parent / "tiny-purchases"
    if not own.exists():
        shutil.copytree(config.data, own)
        (own / "dataset.yaml").write_text("prompt_template: purchases\n")
    request = dataclasses.replace(playground.default_request("UK"), data=str(own))
    assert playground.render(request).prompt.startswith("Products one customer bought, oldest first:\n- ")
    assert playground.template_text("UK", str(own)).footer == "Next purchase:\n-"
    assert playground.template_text("UK").header.startswith("Amazon UK shopping session")  # the configured folder's


@pytest.mark.parametrize(
    "change, message",
    [
        ({"locale": "XX"}, r"unknown locale 'XX': choose one of UK, DE, JP, ES, FR, IT"),
        ({"source": "typed", "typed": " \n \n"}, r"the typed session is empty"),
        ({"session": 10_000}, r"session 10000 is outside the \d+ UK sessions of the valid split"),
        (
            {"template": TemplateText("h", "- {title}", "f")},
            r"edited template: template 'en' item must contain \{title\} then \{attributes\}",
        ),
        ({"decoding": "greedy", "num_candidates": 3}, r"decoding=greedy gives one candidate"),
        ({"ground_k": 0}, r"products per title must be between 1 and 100"),
        ({"history": 0}, r"history must be at least 1"),
        ({"data": "/nonexistent/folder"}, r"data folder /nonexistent/folder is outside the data root"),
    ],
)
def test_bad_requests_fail_with_one_line(playground, change, message):
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        playground.answer(dataclasses.replace(playground.default_request("UK"), **change))
    assert re.search(message, str(error.value)) and "\n" not in str(error.value)


def test_config_options_override_the_file_and_the_adapters_training(tmp_path):
    path = tmp_path / "playground.yaml"
    path.write_text(
        "model: smollm2-135m\nground_k: 9\nprompt: {history: 2}\ngenerate: {backend: vllm, max_new_tokens: 20}\n"
    )
    config = playground_config(path, ["generate.max_new_tokens=30"], data="data/x", backend="hf")
    assert (config.model, config.ground_k, config.data, config.generate.backend, config.generate.max_new_tokens) == (
        "smollm2-135m",
        9,
        "data/x",
        "hf",
        30,
    )
    run = tmp_path / "finetune"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(
        "model: gemma-3-270m\nprompt: {history: 4, attributes: [], max_prompt_tokens: 160}\nlora: {r: 8}\n"
    )
    config = playground_config(path, ["prompt.max_prompt_tokens=300"], adapter=str(run / "adapter"))
    assert (
        config.model,
        config.adapter,
        config.prompt.history,
        config.prompt.attributes,
        config.prompt.max_prompt_tokens,
    ) == ("gemma-3-270m", str(run / "adapter"), 4, [], 300)


def table(page, selector: str) -> list[list[str]]:
    """The shown cells of a gradio Dataframe, row by row."""
    return [
        [cell.strip() for cell in row.locator("[role=gridcell]").all_inner_texts()]
        for row in page.locator(f"{selector} .virtual-row").all()
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_browser_session_generate_and_template_edit(config, split, catalog, tmp_path):
    """Chromium drives the page: pick a German session, generate, read the results, edit the header."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install playwright")
    from llmrec.playground.app import launch

    engine = Playground(config, **QUIET)
    port = free_port()
    app = launch(engine, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    index = long_session(split, "DE")
    titles, target = session_of(split, "DE", index)
    outside: list[str] = []
    try:
        with sync_api.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(url)
                    else (outside.append(route.request.url), route.abort())
                ),
            )
            page.goto(url)
            expect, prompt = sync_api.expect, page.locator("#prompt textarea")
            expect(prompt).to_have_value(re.compile(r"^Amazon UK shopping session"), timeout=60_000)

            page.locator("#locale input").click()
            page.locator("#locale [role=option][aria-label=DE]").click()
            expect(page.locator("#header textarea")).to_have_value(re.compile(r"^Einkaufssitzung auf Amazon\.de"))
            page.locator("#session input").fill(str(index))
            page.locator("#session input").press("Enter")
            sessions = split.sessions.filter(pl.col("locale") == "DE").height
            expect(page.locator("#status")).to_contain_text(f"{index + 1} of {sessions} DE sessions", timeout=30_000)
            shown = prompt.input_value()
            assert shown.startswith("Einkaufssitzung auf Amazon.de.") and all(
                title in shown for title in titles[-config.prompt.history :]
            )
            expect(page.locator("#target textarea")).to_have_value(target)

            page.locator("#generate").click()
            expect(page.locator("#status")).to_contain_text("generated in", timeout=120_000)
            expect(page.locator("#candidates .virtual-row")).to_have_count(1)
            ((candidate, generated, score),) = table(page, "#candidates")
            assert candidate == "1" and generated and float(score) < 0
            rows = table(page, "#grounded")
            assert len(rows) == config.ground_k
            prices = dict(catalog.filter(pl.col("locale") == "DE").select("id", "price").iter_rows())
            for rank, (candidate, shown_rank, title, price, similarity, product) in enumerate(rows, start=1):
                assert (candidate, shown_rank) == ("1", str(rank)) and title
                assert (float(price) if price else None) == (
                    round(prices[product], 3) if prices[product] is not None else None
                )
                assert -1.0 <= float(similarity) <= 1.0
            assert [float(row[4]) for row in rows] == sorted((float(row[4]) for row in rows), reverse=True)
            expect(page.locator("#target textarea")).to_have_value(target)
            screenshot = page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)

            header = page.locator("#header textarea")
            header.select_text()
            header.press_sequentially(
                "Ein eigener Kopf für den Test:"
            )  # typed as a user types: gradio reacts to key input
            expect(prompt).to_have_value(re.compile(r"^Ein eigener Kopf für den Test:\n- "))
            browser.close()
    finally:
        app.close()
        engine.close()
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    assert outside == []  # the page needs nothing from the internet
    if os.environ.get("LLMREC_SCREENSHOTS"):
        folder = Path(os.environ["LLMREC_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "playground.png", folder / "playground.png")
