"""`llmrec export --merge`: a LoRA adapter folded into its base model, saved as a plain model."""

from __future__ import annotations

import json
from pathlib import Path

from llmrec.models.prepare import resolve_model


def export_merged(adapter: Path, out: Path, model: str | None = None) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = adapter / "adapter_config.json"
    if not settings.exists():
        raise FileNotFoundError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    base = resolve_model(model) if model else json.loads(settings.read_text())["base_model_name_or_path"]
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    staging = out.with_name(f".{out.name}.tmp")
    merged.save_pretrained(staging)
    AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").exists() else base).save_pretrained(staging)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)
    return out
