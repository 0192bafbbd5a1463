"""LoRA adapters and their base models: checks that turn a missing model or a mismatched
adapter into one-line errors, and merging an adapter into its base model (`llmrec export
--merge`, and the merged copy vLLM serves on CPU). Both training and generation use them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from llmrec.errors import ConfigError, first_line
from llmrec.models.prepare import cache_dir, resolve_model


def model_digest(model: str, adapter: str | None = None) -> str:
    """What the weights are, by content: a local folder's digest, a hub id's cached snapshot's
    (the id itself when it is not cached), with the adapter folder's digest when one is given.
    Resumable outputs are keyed on it, so titles of two models never mix."""
    from llmrec.io import folder_digest

    path = Path(model)
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(model, local_files_only=True))
        except Exception:  # not in the local hub cache: the id is all there is to go by
            path = None
    digest = folder_digest(path) if path is not None else f"hub:{model}"
    return digest if adapter is None else hashlib.sha256(f"{digest}+{folder_digest(adapter)}".encode()).hexdigest()


def check_model(model: str):
    """The model's transformers config, or FileNotFoundError naming the model."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model {model} not found or not loadable: {first_line(error)}") from None


def check_adapter(model: str, adapter: str) -> None:
    """Every LoRA matrix of `adapter` must fit a module of `model` (shapes read from the model
    built on the meta device, so nothing is loaded): a mismatch fails here with one line
    instead of deep inside PEFT or the vLLM engine."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    folder = Path(adapter)
    weights = folder / "adapter_model.safetensors"
    if not (folder / "adapter_config.json").exists() or not weights.exists():
        raise ConfigError(
            f"adapter {adapter}: not a PEFT adapter folder (adapter_config.json, adapter_model.safetensors)"
        )
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(check_model(model))
    shapes = {
        name: tuple(m.weight.shape)
        for name, m in base.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor)
    }
    with safe_open(weights, "pt") as tensors:
        for key in tensors.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            module, kind = key.removeprefix("base_model.model.").split(".lora_")
            shape = tuple(tensors.get_slice(key).get_shape())
            target = shapes.get(module)
            if target is None:
                raise ConfigError(
                    f"adapter {adapter} does not match base model {model}: the model has no module {module}"
                )
            if (
                len(target) != 2
                or (kind.startswith("A") and shape[1] != target[1])
                or (kind.startswith("B") and shape[0] != target[0])
            ):
                raise ConfigError(
                    f"adapter {adapter} does not match base model {model}: {module}.lora_{kind} has "
                    f"shape {shape}, the module's weight {target}"
                )


def export_merged(adapter: Path, out: Path, model: str | None = None) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = adapter / "adapter_config.json"
    if not settings.exists():
        raise ConfigError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    base = resolve_model(model) if model else json.loads(settings.read_text())["base_model_name_or_path"]
    # folded and saved in float32: in a bfloat16 copy the small LoRA update is rounded away in part (vLLM's CPU
    # engine then wrote other titles than the adapter's, up to 0.1 apart in log-probability)
    network = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(network, adapter).merge_and_unload()
    staging = out.with_name(f".{out.name}.tmp")
    merged.save_pretrained(staging)
    AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").exists() else base).save_pretrained(
        staging
    )
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def merged_model(model: str, adapter: str) -> str:
    """The base model with the adapter folded in, built once into the model cache (keyed by
    both) and reused."""
    digest = hashlib.sha256(str(Path(model).resolve() if Path(model).exists() else model).encode() + b" float32")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((Path(adapter) / name).read_bytes())
    folder = cache_dir() / "merged" / digest.hexdigest()[:16]
    if not (folder / "config.json").exists():
        export_merged(Path(adapter), folder, model)
    return str(folder)
