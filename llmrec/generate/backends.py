"""Choose a generation backend by name: `base` defines the interface and never imports its
variants; the backends are imported only when chosen (vLLM is a heavy import)."""

from __future__ import annotations

from llmrec.config import ConfigError
from llmrec.generate.base import GenerateConfig, Generator
from llmrec.models.adapters import check_adapter, check_model, model_digest

BACKENDS = ("vllm", "hf")


def make_generator(config: GenerateConfig, model: str, adapter: str | None = None) -> Generator:
    """The configured backend on `model` (a local folder or a Hugging Face id), with the PEFT
    LoRA `adapter` folder applied when given."""
    if config.backend not in BACKENDS:
        raise ConfigError(f"generate.backend: '{config.backend}' is not one of {', '.join(BACKENDS)}")
    check_model(model)
    if adapter is not None:
        check_adapter(model, adapter)
    if config.backend == "hf":
        from llmrec.generate.hf import HFGenerator

        generator = HFGenerator(config, model, adapter)
    else:
        from llmrec.generate.vllm import VLLMGenerator

        generator = VLLMGenerator(config, model, adapter)
    generator.fingerprint = model_digest(model, adapter)
    return generator
