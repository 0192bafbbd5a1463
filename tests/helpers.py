"""Small offline building blocks for tests: a tokenizer trained in milliseconds, a tiny random
sentence-transformers encoder."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast


def tiny_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with pad/eos/bos tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")


def tiny_sentence_encoder(texts: list[str], folder) -> str:
    """A random 2-layer BERT with mean pooling and e5's prompts, saved as a sentence-transformers
    folder under `folder`; returns its path."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer(texts, vocab_size=1000)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
    ))
    bert.save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    first = Transformer(str(folder / "bert"), max_seq_length=128)
    modules = [first, Pooling(first.get_embedding_dimension(), "mean"), Normalize()]
    SentenceTransformer(modules=modules, prompts={"query": "query: ", "document": "passage: "}, device="cpu").save(str(folder / "st"))
    return str(folder / "st")
