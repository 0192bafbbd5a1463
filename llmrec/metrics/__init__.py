"""Evaluation metrics: next-item ranking (Task 1) and next-title BLEU (Task 3)."""

from llmrec.metrics.bleu import bleu_metrics, corpus_bleu
from llmrec.metrics.ranking import ranking_metrics, target_ranks

__all__ = ["target_ranks", "ranking_metrics", "corpus_bleu", "bleu_metrics"]
