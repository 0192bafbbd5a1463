"""llmrec: LLM-based generative recommendation on shopping sessions."""

__version__ = "0.1.0"
