"""Small offline building blocks for tests: a tokenizer trained in milliseconds, a tiny random
sentence-transformers encoder, and what the ranking tests share."""

from __future__ import annotations

import numpy as np
import polars as pl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from llmrec.config import load_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.item_index import ItemIndex
from llmrec.rank import RecommendConfig, ranking_data, recommend


def tiny_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with pad/eos/bos tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")


def tiny_llama(tokenizer, max_positions: int = 512):
    """A random 2-layer Llama (head_dim 64, as vLLM's CPU attention needs) sized for
    `tokenizer`, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=max_positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def tiny_llm_folder(data, folder):
    """A random 2-layer Llama (head_dim 64, as vLLM's CPU attention needs) with a tokenizer
    trained on the prompts of the data folder's sessions, saved in `folder`."""
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.prompts import PromptConfig, prompt_dataset

    split = load_task_split(AmazonM2(data), 3, SplitConfig())
    prompts = prompt_dataset(split.history.head(300), split.catalog, PromptConfig())["prompt"]
    tokenizer = tiny_tokenizer(list(prompts), vocab_size=500)
    model = tiny_llama(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_sentence_encoder(texts: list[str], folder) -> str:
    """A random 2-layer BERT with mean pooling and e5's prompts, saved as a sentence-transformers
    folder under `folder`; returns its path."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer(texts, vocab_size=1000)
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    bert.save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    first = Transformer(str(folder / "bert"), max_seq_length=128)
    modules = [first, Pooling(first.get_embedding_dimension(), "mean"), Normalize()]
    SentenceTransformer(modules=modules, prompts={"query": "query: ", "document": "passage: "}, device="cpu").save(
        str(folder / "st")
    )
    return str(folder / "st")


# Ranking tests share these: fast settings, the submission checks, titles and stand-in text.
FAST = ["chunk_size=150", "reranker.num_trees=60", "reranker.threads=1", "candidates.sknn.postings=100"]


def config(data, *overrides) -> RecommendConfig:
    """A fast recommend config on `data`."""
    return load_config(RecommendConfig, None, [f"data={data}", *FAST, *overrides])


def check_lists(lists: pl.DataFrame, split, k: int = 100) -> None:
    """The competition's format: session order, k distinct ids of the locale (listed there or
    seen in its sessions), no session items."""
    assert lists.columns == ["locale", "next_item_prediction"] and lists.height == split.sessions.height
    assert lists["locale"].to_list() == split.sessions["locale"].cast(pl.String).to_list()
    assert (lists["next_item_prediction"].list.len() == k).all()
    assert (lists["next_item_prediction"].list.n_unique() == k).all()
    ids = (
        ItemIndex.from_split(split)
        .items.select(pl.col("locale").cast(pl.String), "id")
        .with_columns(pl.lit(True).alias("listed"))
    )
    listed = (
        lists.with_row_index("row")
        .explode("next_item_prediction")
        .rename({"next_item_prediction": "id"})
        .join(ids, on=["locale", "id"], how="left")
    )
    assert listed["listed"].fill_null(False).all()
    overlap = (
        lists.with_columns(split.sessions["prev_items"])
        .select(pl.col("next_item_prediction").list.set_intersection("prev_items").list.len())
        .to_series()
    )
    assert (overlap == 0).all()


def rank(settings: RecommendConfig, out, titles=None, valid_titles=None, text=None):
    """`recommend` on the splits of `settings`, quietly."""
    return recommend(
        settings, ranking_data(AmazonM2(settings.data), settings), out, titles, valid_titles, text, log=lambda _: None
    )


class GroundTruthText:
    """Stand-in text signals whose grounding proposes each session's true next item (and a
    wrong one): the grounded source must carry it to the top."""

    def __init__(self, truth: dict[int, str], catalog: pl.DataFrame):
        self.truth, self.catalog = truth, catalog

    def ground(self, titles, sessions, popularity):
        rows = [
            {"session_id": s, "id": item, "ground_score": 1.0, "similarity": 0.99, "retrieval_rank": 0, "hits": 1}
            for s, item in self.truth.items()
        ]
        return grounded_frame(rows, titles)

    def neighbors(self, frame, k):
        products = (
            self.catalog.select(pl.col("locale").cast(pl.String), pl.col("id").alias("neighbor"))
            .group_by("locale")
            .head(k)
        )
        return frame.join(products, on="locale").with_columns(pl.lit(0.5).alias("similarity"))

    def similarity_by_code(self, index):
        return lambda a, b: (a == b).astype(np.float32)


def grounded_frame(rows: list[dict], titles: pl.DataFrame) -> pl.DataFrame:
    """What `TextSignals.ground` returns, from rows (session_id, id, ground_score, similarity,
    retrieval_rank, hits and optionally title_score) of the sessions of `titles`."""
    schema = {"session_id": pl.Int64, "id": pl.String, "ground_score": pl.Float64, "similarity": pl.Float64}
    schema |= {"retrieval_rank": pl.Int64, "hits": pl.Int64, "title_score": pl.Float64}
    frame = pl.DataFrame(rows, schema=schema).join(
        titles.select(pl.col("session_id").cast(pl.Int64), "locale"), on="session_id"
    )
    return frame.select("session_id", "locale", *[c for c in schema if c != "session_id"])


def titles_for(split) -> pl.DataFrame:
    """One made-up generated title per session of the split."""
    return split.sessions.select(
        pl.col("session_id").cast(pl.Int64),
        pl.col("locale").cast(pl.String),
        pl.lit("a title").alias("next_item_title"),
        pl.lit(
            [{"title": "a title", "score": -1.0}], dtype=pl.List(pl.Struct({"title": pl.String, "score": pl.Float64}))
        ).alias("candidates"),
    )
