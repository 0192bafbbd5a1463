"""SASRec's settings, apart from the network so that configs load without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class SasrecConfig:
    dim: int = 64
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    max_len: int = 50  # latest items a session is read through; longer training sessions are cut into windows
    epochs: int = 20
    batch_size: int = 128  # windows (sessions) per step
    lr: float = 0.001
    weight_decay: float = 0.0
    full_softmax_max_items: int = 20_000  # up to this many trained items: cross-entropy over all of them
    negatives: int = 1024  # above it: sampled softmax over the positive and this many shared negatives
    sampling: Literal["uniform", "popularity"] = "popularity"  # how negatives are drawn (logQ-corrected)
    top: int = 100  # items kept per session (the candidate budget)
    include_unlabelled: bool = True  # also learn from the inputs of sessions whose next item is unknown
    seed: int = 0
    threads: int = 1  # torch threads; on a shared, loaded CPU more threads can be far slower
    max_minutes: float = 60.0  # stop training after this long (0: run every epoch)
    score_memory_mb: int = 256  # score matrix size per block when ranking a locale's items
