"""Task 3 generation: next-product titles with scores from vLLM or transformers, written as a
submission in resumable chunks."""

from llmrec.generate.backends import make_generator
from llmrec.generate.base import Candidate, GenerateConfig, Generator
from llmrec.generate.run import generate_titles, titles_for_tasks

__all__ = ["Candidate", "GenerateConfig", "Generator", "generate_titles", "make_generator", "titles_for_tasks"]
