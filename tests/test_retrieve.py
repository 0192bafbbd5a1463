"""llmrec.retrieve: catalog texts, cached embeddings, faiss indexes and grounding, with a tiny
random sentence-transformers model built on the fly (a 2-layer BERT and a byte-level BPE
tokenizer trained on the catalog's titles); the slow test uses the prepared multilingual e5."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from llmrec.config import ConfigError, load_config
from llmrec.retrieve import (
    CatalogIndex,
    Encoder,
    EncoderConfig,
    GroundConfig,
    IndexConfig,
    RetrieveConfig,
    VectorIndex,
    candidate_titles,
    embed_catalog,
    ground_titles,
    product_texts,
)
from llmrec.retrieve.index import index_cache_name
from tests.helpers import tiny_sentence_encoder

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def tiny_model(catalog, tmp_path_factory) -> str:
    return tiny_sentence_encoder(catalog["title"].drop_nulls().to_list(), tmp_path_factory.mktemp("models"))


class CountingEncoder(Encoder):
    """Counts the texts it encodes, so a test can tell a cache hit from a re-encode."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoded = 0

    def encode(self, texts, role, description=None):
        self.encoded += len(texts)
        return super().encode(texts, role, description)


def retrieve_config(tiny_model, cache, *overrides) -> RetrieveConfig:
    # the catalog gets the query prompt too, so a product's own title embeds exactly like its text
    base = [
        f"encoder.name={tiny_model}",
        "encoder.threads=1",
        "index.threads=1",
        "catalog_role=query",
        "text_fields=[title]",
        "index.kind=Flat",
        f"cache_dir={cache}",
    ]
    return load_config(RetrieveConfig, None, base + list(overrides))


@pytest.fixture(scope="module")
def flat(tiny_model, tmp_path_factory) -> RetrieveConfig:
    return retrieve_config(tiny_model, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def index(catalog, flat) -> CatalogIndex:
    return CatalogIndex.build(catalog, flat, **QUIET)


def titles_frame(rows: list[tuple[int, str, list[tuple[str | None, float | None]] | None]]) -> pl.DataFrame:
    """(session_id, locale, [(title, score), ...]) rows as the generate step writes them."""
    kind = pl.List(pl.Struct({"title": pl.String, "score": pl.Float64}))
    return pl.DataFrame(
        {
            "session_id": [r[0] for r in rows],
            "locale": [r[1] for r in rows],
            "candidates": [None if r[2] is None else [{"title": t, "score": s} for t, s in r[2]] for r in rows],
        },
        schema={"session_id": pl.Int64, "locale": pl.String, "candidates": kind},
    )


def sessions_frame(prev_items: dict[int, list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"session_id": list(prev_items), "prev_items": list(prev_items.values())},
        schema={"session_id": pl.Int64, "prev_items": pl.List(pl.String)},
    )


# --------------------------------------------------------------------------- product texts


def test_product_texts_skip_empty_fields_and_values_the_title_holds():
    catalog = pl.DataFrame(
        {
            "title": ["Red Acme Mug", "  ", None, "Cup", None],
            "brand": ["Acme", "Bolt ", "Cord", None, None],
            "color": ["red", "blue", None, "", None],
            "model": ["M1", None, None, "C 2", None],
        }
    )
    texts = product_texts(catalog, ["title", "brand", "color", "model"])
    assert texts.to_list() == ["Red Acme Mug | M1", "Bolt | blue", "Cord", "Cup | C 2", ""]
    assert product_texts(catalog, ["model"]).to_list() == ["M1", "", "", "C 2", ""]
    with pytest.raises(ValueError, match="no column 'material'"):
        product_texts(catalog, ["title", "material"])


# --------------------------------------------------------------------------- encoder


def test_encoder_uses_the_model_prompts_and_returns_unit_float32_rows(tiny_model):
    encoder = Encoder(EncoderConfig(name=tiny_model, max_seq_length=32, batch_size=3, threads=1))
    texts = [
        "Wasserdichte Winterjacke",
        "まな板 38 x 25 cm",
        "Cup",
        "Wasserdichte Winterjacke",
        "T-Shirt by Quinzenano - Linen",
    ]
    queries, documents = encoder.encode(texts, "query"), encoder.encode(texts, "document")
    assert queries.dtype == np.float32 and queries.shape == (5, encoder.dimension)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(queries[0], queries[3])  # a repeated text is encoded once
    plain = encoder.model.encode([f"query: {t}" for t in texts], normalize_embeddings=True)
    assert np.allclose(queries, plain, atol=1e-5)
    assert not np.allclose(queries, documents, atol=1e-3)  # "passage: " differs from "query: "
    assert encoder.model.max_seq_length == 32
    assert encoder.encode([], "query").shape == (0, encoder.dimension)


@pytest.mark.parametrize("int8", [False, True])
def test_onnx_backend_encodes_like_torch_and_exports_once(tiny_model, tmp_path, monkeypatch, int8):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path))
    texts = ["Wasserdichte Winterjacke", "まな板 38 x 25 cm", "Cup", "T-Shirt by Quinzenano - Linen", "Red Acme Mug"]
    reference = Encoder(EncoderConfig(name=tiny_model, threads=1))
    config = EncoderConfig(name=tiny_model, threads=1, backend="onnx", int8=int8)
    encoder = Encoder(config)
    queries, documents = encoder.encode(texts, "query"), encoder.encode(texts, "document")
    assert queries.dtype == np.float32 and np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    cosines = (queries * reference.encode(texts, "query")).sum(axis=1)
    if int8:  # quantized weights move the vectors a little, and only a little
        assert cosines.min() > 0.95 and not np.allclose(cosines, 1.0, atol=1e-6)
    else:
        assert np.allclose(queries, reference.encode(texts, "query"), atol=1e-5)
        assert np.allclose(documents, reference.encode(texts, "document"), atol=1e-5)
    exports = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "onnx").rglob("*") if p.is_file())
    assert [e.split("/", 2)[2][:10] for e in exports] == (["model-int8", "model.onnx"] if int8 else ["model.onnx"])
    assert encoder.fingerprint != reference.fingerprint
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "onnx").rglob("*.onnx")}
    again = Encoder(config)  # the export is reused, not redone
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "onnx").rglob("*.onnx")} == written
    assert again.fingerprint == encoder.fingerprint and np.array_equal(again.encode(texts, "query"), queries)


def test_encoder_backend_settings_are_checked():
    with pytest.raises(ConfigError, match="torch or onnx"):
        EncoderConfig(backend="openvino")
    with pytest.raises(ConfigError, match="needs encoder.backend=onnx"):
        EncoderConfig(int8=True)


def test_unknown_encoder_is_a_one_line_file_not_found(tmp_path):
    with pytest.raises(ConfigError, match="no such model folder") as error:
        Encoder(EncoderConfig(name=str(tmp_path / "missing-model")))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="not prepared") as error:
        Encoder(EncoderConfig(name="multilingual-e5-small"), models_cache=tmp_path)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- grounding


def test_own_title_grounds_to_its_product_in_every_locale(index, catalog):
    """Exact text -> identical embedding -> rank 1. Several products can share a title (variants
    listed twice): then rank 1 must be one of them, at similarity 1 too."""
    products = catalog.select(pl.col("locale").cast(pl.String), "id", "title").filter(pl.col("title").is_not_null())
    titles = titles_frame(
        [(i, r["locale"], [(r["title"], -1.0)]) for i, r in enumerate(products.iter_rows(named=True))]
    )
    grounded = ground_titles(
        index, titles, sessions_frame({i: [] for i in range(products.height)}), config=GroundConfig(top_k=5), **QUIET
    )
    first = (
        grounded.group_by("session_id", maintain_order=True)
        .first()
        .sort("session_id")
        .with_columns(pl.col("locale").cast(pl.String))
    )
    assert first.height == products.height
    expected = products.with_row_index("session_id").with_columns(pl.col("session_id").cast(pl.Int64))
    compared = first.join(expected, on="session_id", suffix="_asked").join(
        products.select("locale", "id", pl.col("title").alias("found_title")), on=["locale", "id"]
    )
    assert (compared["found_title"] == compared["title"]).all()
    assert (compared["similarity"] > 1 - 1e-4).all() and (compared["retrieval_rank"] == 1).all()
    unique_titles = products.filter(pl.len().over("locale", "title") == 1)
    exact = compared.join(
        unique_titles.select("locale", "id"), left_on=["locale", "id_asked"], right_on=["locale", "id"]
    )
    assert exact.height == unique_titles.height and (exact["id"] == exact["id_asked"]).all()
    per_locale = compared.group_by("locale").len()
    assert set(per_locale["locale"]) == {"UK", "DE", "JP", "ES", "FR", "IT"}


def test_session_items_are_never_grounded_and_lists_stay_full(index, catalog):
    """The product itself and its 20 nearest products are the session's items: with top_k=5 the
    first search (top_k + margin) loses them all, so the deeper search must refill the list."""
    product = catalog.filter(pl.col("locale") == "DE").row(0, named=True)
    near = index.search_titles(product["title"], "DE", k=21)["id"].to_list()
    short_sessions = range(8, 18)  # most sessions are short, so the first search goes little deeper than top_k
    titles = titles_frame([(s, "DE", [(product["title"], -1.0)]) for s in (7, *short_sessions)])
    sessions = sessions_frame({7: near} | {s: [product["id"], "NOT-LISTED"] for s in short_sessions})
    grounded = ground_titles(index, titles, sessions, config=GroundConfig(top_k=5), **QUIET)
    crowded = grounded.filter(pl.col("session_id") == 7)
    assert crowded.height == 5 and not set(crowded["id"]) & set(near)
    assert sorted(crowded["retrieval_rank"].to_list()) == [1, 2, 3, 4, 5]
    plain = grounded.filter(pl.col("session_id") == 8)
    assert plain.height == 5 and product["id"] not in plain["id"].to_list()
    assert plain["id"].to_list() == [i for i in near if i != product["id"]][:5]


def test_products_of_other_locales_are_never_returned(index, catalog):
    uk = catalog.filter(pl.col("locale") == "UK").head(20)
    titles = titles_frame([(i, locale, [(t, -1.0)]) for i, t in enumerate(uk["title"]) for locale in ["DE"]])
    grounded = ground_titles(
        index, titles, sessions_frame({i: [] for i in range(uk.height)}), config=GroundConfig(top_k=30), **QUIET
    )
    assert grounded.height == 20 * 30 and (grounded["locale"].cast(pl.String) == "DE").all()
    listed = grounded.join(catalog.select("locale", "id"), on=["locale", "id"], how="anti")
    assert listed.height == 0
    assert grounded.schema["locale"] == catalog.schema["locale"]


def test_popularity_lifts_popular_products_but_not_over_an_exact_match(index, catalog):
    product = catalog.filter(pl.col("locale") == "FR").row(3, named=True)
    titles = titles_frame([(1, "FR", [(product["title"], -2.0)])])
    sessions = sessions_frame({1: []})
    plain = ground_titles(index, titles, sessions, config=GroundConfig(top_k=10), **QUIET)
    assert np.allclose(plain["ground_score"], plain["similarity"])  # gamma 0, one candidate: the cosine
    popular = plain["id"][6]
    counts = pl.DataFrame(
        {"locale": ["FR", "FR", "DE"], "id": [popular, plain["id"][2], popular], "count": [1000.0, 1.0, 5000.0]}
    )
    lifted = ground_titles(index, titles, sessions, counts, GroundConfig(top_k=10, gamma=4.0), **QUIET)
    assert set(lifted["id"]) == set(plain["id"])  # re-weighting re-orders what was retrieved
    assert lifted["id"].to_list().index(popular) < 6
    assert lifted["id"][0] == plain["id"][0] and lifted["similarity"][0] > 1 - 1e-4
    row = lifted.filter(pl.col("id") == popular).row(0, named=True)
    assert row["ground_score"] == pytest.approx(
        1 - (1 - row["similarity"]) / 2.0**4, abs=1e-5
    )  # P = 1 for the locale's top
    with pytest.raises(ValueError, match="needs an item popularity table"):
        ground_titles(index, titles, sessions, None, GroundConfig(gamma=1.0), **QUIET)


def test_candidates_merge_per_product(index, catalog):
    """Two candidate titles of one session: per product the best similarity and rank, the number
    of candidates that found it, and the softmax-weighted similarity, checked against the
    titles' own searches. Empty and null titles give nothing."""
    # Two variants of one product (same brand and model): their searches share some neighbours.
    jp = catalog.filter(pl.col("locale") == "JP").drop_nulls(["brand", "model"]).unique("title", maintain_order=True)
    first, second = (
        jp.filter(pl.len().over("brand", "model") >= 2).sort("brand", "model", "title")["title"].head(2).to_list()
    )
    titles = titles_frame(
        [
            (1, "JP", [(first, -1.0), (second, -2.5), ("  ", -0.1)]),
            (2, "JP", [("", -1.0), (None, -2.0)]),
            (3, "JP", None),
            (4, "JP", [(second, None)]),
        ]
    )
    grounded = ground_titles(
        index, titles, sessions_frame({1: [], 2: [], 3: [], 4: []}), config=GroundConfig(top_k=40), **QUIET
    )
    assert set(grounded["session_id"]) == {1, 4}
    searched = index.search_titles([first, second], "JP", k=40)
    weights = np.exp([-1.0, -2.5]) / np.exp([-1.0, -2.5]).sum()
    expected = (
        searched.join(
            pl.DataFrame({"query": [0, 1], "weight": weights}, schema_overrides={"query": pl.UInt32}), on="query"
        )
        .group_by("id")
        .agg(
            (pl.col("weight") * pl.col("similarity")).sum().alias("score"),
            pl.col("similarity").max().alias("best"),
            pl.col("rank").min().alias("top"),
            pl.len().alias("count"),
        )
    )
    merged = grounded.filter(pl.col("session_id") == 1).join(expected, on="id")
    assert merged.height == expected.height == grounded.filter(pl.col("session_id") == 1).height
    assert np.allclose(merged["ground_score"], merged["score"], atol=1e-5)
    assert np.allclose(merged["similarity"], merged["best"], atol=1e-6)
    assert (merged["retrieval_rank"] == merged["top"]).all() and (merged["hits"] == merged["count"]).all()
    assert merged["hits"].max() == 2 and merged["hits"].min() == 1
    scores = grounded.filter(pl.col("session_id") == 1)["ground_score"]
    assert (scores.diff().drop_nulls() <= 0).all()  # best first
    # a product whose own title is a candidate carries that candidate's score; the others none
    own = merged.join(catalog.filter(pl.col("locale") == "JP").select("id", "title"), on="id")
    given = {first: -1.0, second: -2.5}
    assert own["title_score"].to_list() == [given.get(title) for title in own["title"].str.strip_chars()]
    assert own["title_score"].null_count() < own.height
    assert (
        grounded.filter(pl.col("session_id") == 4)["title_score"].null_count()
        == grounded.filter(pl.col("session_id") == 4).height
    )


def test_candidate_weights_are_a_softmax_of_the_scores():
    titles = titles_frame([(1, "UK", [("a", -1.0), ("b", -3.0), ("c", None)]), (2, "UK", [("d", None)])])
    weights = candidate_titles(titles, temperature=2.0)
    expected = np.exp(np.array([-1.0, -3.0, -3.0]) / 2.0)
    assert np.allclose(weights["weight"][:3], expected / expected.sum())
    assert weights["weight"][3] == 1.0
    single = candidate_titles(pl.DataFrame({"session_id": [5], "locale": ["UK"], "next_item_title": ["Mug"]}))
    assert single.select("title", "weight").row(0) == ("Mug", 1.0)


def test_bad_titles_frames_are_one_line_errors(index):
    sessions = sessions_frame({1: []})
    for frame, message in (
        (titles_frame([(1, "XX", [("Mug", -1.0)])]), "locale 'XX' has no products"),
        (titles_frame([(2, "UK", [("Mug", -1.0)])]), "session_id 2 is not among the sessions"),
        (titles_frame([(1, "UK", [("Mug", -1.0)]), (1, "UK", [("Cup", -1.0)])]), "session_id 1 appears twice"),
        (
            pl.DataFrame({"session_id": [1], "locale": ["UK"], "candidates": [["Mug"]]}),
            "list of {title, score} structs",
        ),
    ):
        with pytest.raises(ValueError, match=message) as error:
            ground_titles(index, frame, sessions, **QUIET)
        assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- searching


def test_search_titles_neighbors_and_similarity(index, catalog):
    product = catalog.filter(pl.col("locale") == "IT").row(0, named=True)
    found = index.search_titles(product["title"], "IT", k=3)
    assert found.columns == ["query", "text", "rank", "locale", "id", "title", "price", "similarity"]
    assert found["rank"].to_list() == [1, 2, 3] and found["title"][0] == product["title"]
    assert (found["locale"].cast(pl.String) == "IT").all() and found["price"].dtype == pl.Float64
    assert index.search_titles(["", product["title"]], ["UK", "IT"], k=2)["query"].to_list() == [1, 1]
    near = index.neighbors(
        pl.DataFrame({"locale": ["IT", "IT", "UK"], "id": [product["id"], "NOT-LISTED", product["id"]]}), k=4
    )
    assert near.height == 4 and product["id"] not in near["neighbor"].to_list()
    assert (near["locale"].cast(pl.String) == "IT").all()
    pairs = near.select("locale", pl.col("neighbor").alias("id"))
    similarity = index.similarity(near.select("locale", "id"), pairs)
    assert np.allclose(similarity, near["similarity"], atol=1e-5)
    missing = index.similarity(
        pl.DataFrame({"locale": ["IT"], "id": ["NOT-LISTED"]}), pl.DataFrame({"locale": ["IT"], "id": [product["id"]]})
    )
    assert math.isnan(missing[0])


@pytest.mark.parametrize("kind", ["Flat", "IVF", "IVFPQ", "HNSW"])
def test_every_index_kind_finds_each_vector_itself(kind, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    config = IndexConfig(kind=kind, nlist=16, nprobe=4, pq_m=16, hnsw_m=16, ef_search=32, threads=1)
    cache = tmp_path / "index.faiss"
    index = VectorIndex.build(vectors, config, cache, **QUIET)
    assert index.kind == kind and index.size == 2000
    scores, positions = index.search(vectors[:200], 5)
    if kind == "IVFPQ":  # compressed vectors: scores approximate, each vector still among its own top 5
        assert (positions == np.arange(200)[:, None]).any(axis=1).mean() >= 0.95
        assert np.abs(scores[:, 0] - 1.0).mean() < 0.1
    else:
        assert (positions[:, 0] == np.arange(200)).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert cache.exists() == (kind != "Flat")  # trained indexes are cached, Flat rebuilds in no time
    if kind != "Flat":
        reread = VectorIndex.build(vectors, config, cache, **QUIET)
        assert np.array_equal(reread.search(vectors[:200], 5)[1], positions)


def test_ivf_falls_back_to_flat_when_a_locale_is_too_small(catalog, tiny_model, tmp_path):
    """nlist=8 needs 8 x 39 training vectors: DE, UK and JP have them, ES, FR and IT do not."""
    config = retrieve_config(tiny_model, tmp_path, "index.kind=IVF", "index.nlist=8", "index.nprobe=8")
    messages = []
    index = CatalogIndex.build(catalog, config, log=messages.append)
    assert {locale: part.kind for locale, part in index.indexes.items()} == {
        "UK": "IVF",
        "DE": "IVF",
        "JP": "IVF",
        "ES": "Flat",
        "FR": "Flat",
        "IT": "Flat",
    }
    assert any("too few to train" in m for m in messages)
    for locale in index.locales:
        product = catalog.filter((pl.col("locale") == locale) & pl.col("title").is_not_null()).row(0, named=True)
        assert index.search_titles(product["title"], locale, k=1)["title"][0] == product["title"]


def test_a_locale_without_texts_is_not_indexed(catalog, tiny_model, tmp_path):
    blank = catalog.with_columns(pl.when(pl.col("locale") == "IT").then(None).otherwise(pl.col("title")).alias("title"))
    messages = []
    index = CatalogIndex.build(blank, retrieve_config(tiny_model, tmp_path), log=messages.append)
    assert sorted(index.locales) == ["DE", "ES", "FR", "JP", "UK"]
    assert any(m.startswith("IT: no product has any text") for m in messages)
    with pytest.raises(ValueError, match="locale 'IT' has no products in the catalog index"):
        index.search_titles("Borraccia", "IT")


# --------------------------------------------------------------------------- caching


def test_catalog_embeddings_are_cached_per_locale(catalog, tiny_model, tmp_path):
    encoder = CountingEncoder(EncoderConfig(name=tiny_model, threads=1))
    first = embed_catalog(catalog, encoder, ["title"], folder=tmp_path, **QUIET)
    assert encoder.encoded == catalog.filter(pl.col("title").is_not_null()).height
    files = {path.name: path.stat().st_mtime_ns for path in tmp_path.glob("*.npy")}
    assert len(files) == 6 and not list(tmp_path.glob(".*"))  # one file per locale, no temporary left

    encoder.encoded = 0
    again = embed_catalog(catalog, encoder, ["title"], folder=tmp_path, **QUIET)
    assert encoder.encoded == 0
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.glob("*.npy")} == files
    for locale in first:
        assert np.array_equal(first[locale].vectors, again[locale].vectors) and first[locale].ids.equals(
            again[locale].ids
        )

    changed = catalog.with_columns(
        pl.when(
            (pl.col("locale") == "ES")
            & (pl.int_range(pl.len()) == pl.int_range(pl.len()).filter(pl.col("locale") == "ES").first())
        )
        .then(pl.lit("A brand new title"))
        .otherwise(pl.col("title"))
        .alias("title")
    )
    embed_catalog(changed, encoder, ["title"], folder=tmp_path, **QUIET)
    assert encoder.encoded == changed.filter((pl.col("locale") == "ES") & pl.col("title").is_not_null()).height
    encoder.encoded = 0
    embed_catalog(catalog, encoder, ["title", "brand"], folder=tmp_path, **QUIET)
    assert encoder.encoded > 0  # other text fields are other embeddings


def test_built_indexes_are_cached_with_their_embeddings(catalog, tiny_model, tmp_path):
    config = retrieve_config(tiny_model, tmp_path, "index.kind=HNSW", "index.hnsw_m=8")
    index = CatalogIndex.build(catalog, config, **QUIET)
    for locale, part in index.embeddings.items():
        assert (tmp_path / index_cache_name(part.key, config.index)).exists(), locale


def test_retrieve_config_from_yaml(tmp_path):
    path = tmp_path / "retrieve.yaml"
    path.write_text("encoder:\n  name: some/model\n  max_seq_length: 48\nindex:\n  kind: HNSW\n  ef_search: 64\n")
    config = load_config(RetrieveConfig, path, ["text_fields=[title,brand]"])
    assert (config.encoder.name, config.encoder.max_seq_length, config.index.kind, config.index.ef_search) == (
        "some/model",
        48,
        "HNSW",
        64,
    )
    assert config.text_fields == ["title", "brand"]
    with pytest.raises(ConfigError, match="index.kind"):
        load_config(RetrieveConfig, None, ["index.kind=Annoy"])
    with pytest.raises(ValueError, match="ground.top_k"):
        load_config(GroundConfig, None, ["top_k=0"])


# --------------------------------------------------------------------------- the real e5


@pytest.mark.slow
def test_e5_grounds_across_languages(tmp_path):
    """With the prepared multilingual-e5-small, a title in any of the six languages finds the
    same product's English (UK) and German (DE) listing first, among all the other products."""
    from llmrec.models.e5 import LANGUAGES, PRODUCT_TITLES
    from llmrec.models.prepare import cache_dir

    if not (cache_dir() / "multilingual-e5-small" / "config.json").exists():
        pytest.skip("multilingual-e5-small is not prepared (llmrec models prepare)")
    english, german = LANGUAGES.index("en"), LANGUAGES.index("de")
    catalog = pl.DataFrame(
        {
            "id": [f"P{i:09d}" for i in range(len(PRODUCT_TITLES))] * 2,
            "locale": ["UK"] * len(PRODUCT_TITLES) + ["DE"] * len(PRODUCT_TITLES),
            "title": [p[english] for p in PRODUCT_TITLES] + [p[german] for p in PRODUCT_TITLES],
        }
    )
    index = CatalogIndex.build(
        catalog, load_config(RetrieveConfig, None, [f"cache_dir={tmp_path}", "index.kind=Flat"]), **QUIET
    )
    rows = [
        (i, product[language], locale)
        for i, product in enumerate(PRODUCT_TITLES)
        for language in range(len(LANGUAGES))
        for locale in ("UK", "DE")
    ]
    found = index.search_titles([r[1] for r in rows], [r[2] for r in rows], k=1)
    expected = [f"P{r[0]:09d}" for r in rows]
    assert found["id"].to_list() == expected
