"""SASRec (Kang & McAuley, 2018) on integer item sequences: the network, its training and its
scoring, in plain PyTorch. Item codes are 0..num_items-1; the network shifts them by one so
that 0 pads. `llmrec.baselines.sasrec` connects it to sessions and locales.

Pre-LN causal self-attention blocks over item + learned position embeddings (the last item of
every sequence sits at the last position), next-item scores by dot product with the item
embeddings. Loss: cross-entropy over every item when the catalogue is small, otherwise over the
positive and a batch of shared sampled negatives with the logQ correction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from llmrec.baselines.sasrec_config import SasrecConfig
from llmrec.errors import ConfigError


@dataclass(frozen=True)
class Sequences:
    """Many item sequences, columnar: `items` concatenated (oldest first), `lengths` per sequence."""

    items: np.ndarray  # int64 codes
    lengths: np.ndarray  # int64

    def __post_init__(self):
        if self.lengths.sum() != self.items.size:
            raise ValueError(f"lengths sum to {self.lengths.sum()} but there are {self.items.size} items")

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> Sequences:
        items = np.fromiter((item for sequence in lists for item in sequence), np.int64)
        return cls(items, np.array([len(sequence) for sequence in lists], np.int64))

    @property
    def ends(self) -> np.ndarray:
        return np.cumsum(self.lengths)

    def __len__(self) -> int:
        return self.lengths.size


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SasrecConfig):
        super().__init__()
        if config.dim % config.heads:
            raise ConfigError(f"baseline.sasrec.dim {config.dim} is not a multiple of heads {config.heads}")
        self.heads, self.dropout = config.heads, config.dropout
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=2)
        q, k, v = (t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    def __init__(self, config: SasrecConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, 4 * config.dim), nn.GELU(), nn.Linear(4 * config.dim, config.dim)
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.mlp(self.ln2(x)))


class SasrecNet(nn.Module):
    def __init__(self, config: SasrecConfig, num_items: int, sparse: bool = False):
        super().__init__()
        self.config, self.num_items = config, num_items
        self.item_emb = nn.Embedding(num_items + 1, config.dim, padding_idx=0, sparse=sparse)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.blocks))
        self.ln_f = nn.LayerNorm(config.dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        # Training occurrences per item: items never seen keep random embeddings and are never recommended.
        self.register_buffer("item_counts", torch.zeros(num_items, dtype=torch.int64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, length, dim) of left-padded shifted codes (batch, length)."""
        length = inputs.shape[1]
        positions = torch.arange(self.config.max_len - length, self.config.max_len)
        x = self.drop(self.item_emb(inputs) + self.pos_emb(positions))
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        # Attend to earlier real items, and always to oneself so that padded rows stay finite.
        mask = (causal & (inputs != 0)[:, None, :]) | torch.eye(length, dtype=torch.bool)
        mask = mask[:, None]  # one mask for every head
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    @property
    def item_vectors(self) -> torch.Tensor:
        """(num_items, dim): the output embedding of each item code."""
        return self.item_emb.weight[1:]


def fit_sasrec(
    sequences: Sequences,
    num_items: int,
    config: SasrecConfig,
    log: Callable[[str], None] = lambda _: None,
    after_epoch: Callable[[int, SasrecNet], None] = lambda epoch, net: None,
) -> SasrecNet:
    """Train on every next-item position of every sequence (sequences longer than max_len + 1
    are cut into windows); deterministic for a given seed and thread count. `after_epoch` sees
    the model in eval mode after each epoch (e.g. to measure it on validation sequences)."""
    counts = np.bincount(sequences.items, minlength=num_items)
    full = int((counts > 0).sum()) <= config.full_softmax_max_items
    starts, ends = _windows(sequences, config.max_len)
    with _torch_state(config.seed, config.threads):
        net = SasrecNet(config, num_items, sparse=not full)
        net.item_counts.copy_(torch.from_numpy(counts))
        dense = [p for name, p in net.named_parameters() if name != "item_emb.weight"]
        optimizers = [torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)]
        if full:
            optimizers.append(torch.optim.Adam([net.item_emb.weight], lr=config.lr))
        else:
            optimizers.append(torch.optim.SparseAdam([net.item_emb.weight], lr=config.lr))
        sampler = None if full else _NegativeSampler(counts, config)
        rng = np.random.default_rng(config.seed)
        deadline = time.monotonic() + config.max_minutes * 60 if config.max_minutes else math.inf
        loss_name = "full softmax" if full else f"sampled softmax ({config.negatives} {config.sampling} negatives)"
        log(
            f"sasrec: {starts.size:,} windows, {int((ends - starts - 1).sum()):,} positions, "
            f"{num_items:,} items, {loss_name}"
        )
        net.train()
        for epoch in range(config.epochs):
            total, positions = 0.0, 0
            for batch in _batches(starts, ends, config.batch_size, rng):
                window = _left_padded(sequences.items, starts[batch], ends[batch])
                inputs, targets = window[:, :-1], window[:, 1:]
                mask = inputs != 0
                hidden = net(inputs)[mask]
                targets = targets[mask]
                if full:
                    loss = F.cross_entropy(hidden @ net.item_vectors.T, targets - 1)
                else:
                    loss = sampler.loss(net, hidden, targets, rng)
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                total, positions = total + loss.item() * targets.numel(), positions + targets.numel()
                if time.monotonic() > deadline:
                    break
            log(f"sasrec: epoch {epoch + 1}: loss {total / max(positions, 1):.4f}")
            net.eval()
            after_epoch(epoch + 1, net)
            net.train()
            if time.monotonic() > deadline:
                log(f"sasrec: stopped after {config.max_minutes} minutes (max_minutes)")
                break
        net.eval()
    return net


class _NegativeSampler:
    """Negatives shared by the whole batch, drawn uniformly or by popularity among the items seen
    in training; logits are corrected by log Q so the loss estimates the full softmax."""

    def __init__(self, counts: np.ndarray, config: SasrecConfig):
        weights = (counts > 0).astype(np.float64) if config.sampling == "uniform" else counts.astype(np.float64)
        self.probabilities = weights / weights.sum()
        self.cdf = np.cumsum(self.probabilities)
        self.log_q = torch.from_numpy(np.log(np.maximum(self.probabilities, 1e-30))).float()
        self.count = config.negatives

    def loss(
        self, net: SasrecNet, hidden: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        negatives = (
            torch.from_numpy(np.minimum(np.searchsorted(self.cdf, rng.random(self.count)), self.cdf.size - 1)) + 1
        )
        positive = (hidden * net.item_emb(targets)).sum(-1) - self.log_q[targets - 1]
        negative = hidden @ net.item_emb(negatives).T - self.log_q[negatives - 1]
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))  # accidental hits
        logits = torch.cat([positive[:, None], negative], dim=1)
        return F.cross_entropy(logits, torch.zeros(targets.numel(), dtype=torch.int64))


def _windows(sequences: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) into `items` of training windows: up to max_len + 1 items each, the last one
    ending at the sequence's end, earlier ones every max_len items before it."""
    ends = sequences.ends
    starts = ends - sequences.lengths
    per_sequence = np.maximum(0, -(-(sequences.lengths - 1) // max_len))  # ceil((length - 1) / max_len)
    sequence = np.repeat(np.arange(len(sequences)), per_sequence)
    step = np.arange(sequence.size) - np.repeat(np.cumsum(per_sequence) - per_sequence, per_sequence)
    window_ends = ends[sequence] - step * max_len
    return np.maximum(starts[sequence], window_ends - max_len - 1), window_ends


def _batches(starts: np.ndarray, ends: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Window indices per batch: shuffled, then sorted by length within pools of 50 batches so
    that batches of short sessions are not padded to the longest ones."""
    order = rng.permutation(starts.size)
    pool = batch_size * 50
    lengths = ends - starts
    for first in range(0, order.size, pool):
        part = order[first : first + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        chunks = [part[i : i + batch_size] for i in range(0, part.size, batch_size)]
        for chunk in rng.permutation(len(chunks)):
            yield chunks[chunk]


def _left_padded(items: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
    """items[start:end] per row as shifted codes, right-aligned, 0-padded to the longest row."""
    width = max(1, int((ends - starts).max()))
    source = ends[:, None] - width + np.arange(width)
    return torch.from_numpy(np.where(source >= starts[:, None], items[np.maximum(source, 0)] + 1, 0))


@torch.no_grad()
def session_states(net: SasrecNet, sequences: Sequences, batch_size: int = 1024) -> torch.Tensor:
    """(len(sequences), dim): the state after each sequence's last item, whose dot product with
    an item vector is that item's score. An empty sequence gets a zero state."""
    states = torch.zeros(len(sequences), net.config.dim)
    with _torch_state(net.config.seed, net.config.threads):
        order = np.argsort(sequences.lengths, kind="stable")  # similar lengths together: little padding
        all_ends = sequences.ends
        for first in range(0, order.size, batch_size):
            rows = order[first : first + batch_size]
            rows = rows[sequences.lengths[rows] > 0]
            if rows.size:
                ends = all_ends[rows]
                starts = np.maximum(ends - sequences.lengths[rows], ends - net.config.max_len)
                states[torch.from_numpy(rows)] = net(_left_padded(sequences.items, starts, ends))[:, -1]
    return states


@dataclass(frozen=True)
class Ranking:
    """Top-k per sequence: `items` (n, k) codes best first, -1 where fewer than k items qualify;
    `scores` (n, k), -inf there."""

    items: np.ndarray
    scores: np.ndarray


@torch.no_grad()
def top_items(
    net: SasrecNet,
    sequences: Sequences,
    k: int,
    exclude_history: bool = True,
    query_groups: np.ndarray | None = None,
    item_groups: np.ndarray | None = None,
    memory_mb: int = 256,
) -> Ranking:
    """The k best items per sequence among the items seen in training; with groups (e.g. locales)
    only items of the sequence's own group, and with `exclude_history` none of its own items.
    Scores are computed `memory_mb` at a time."""
    n = len(sequences)
    items, scores = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    for rows, codes, block in _score_blocks(net, sequences, exclude_history, query_groups, item_groups, memory_mb):
        best = torch.topk(block, min(k, codes.size), dim=1)
        found = best.indices.numpy()
        items[rows, : found.shape[1]] = np.where(np.isfinite(best.values.numpy()), codes[found], -1)
        scores[rows, : found.shape[1]] = best.values.numpy()
    return Ranking(items, scores)


@torch.no_grad()
def score_pairs(net: SasrecNet, sequences: Sequences, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores of given (sequence row, item code) pairs, e.g. the candidates of other sources:
    the same scores `top_items` ranks by, for any item."""
    states, vectors = session_states(net, sequences), net.item_vectors
    scores = np.empty(rows.size, np.float32)
    for first in range(0, rows.size, 2**20):  # bounded memory: a million pairs at a time
        part = slice(first, first + 2**20)
        pair_states, pair_vectors = states[torch.from_numpy(rows[part])], vectors[torch.from_numpy(items[part])]
        scores[part] = (pair_states * pair_vectors).sum(-1).numpy()
    return scores


def _score_blocks(
    net: SasrecNet,
    sequences: Sequences,
    exclude_history: bool,
    query_groups: np.ndarray | None,
    item_groups: np.ndarray | None,
    memory_mb: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    """(rows, codes, scores): score matrices over the allowed item codes of one group for a
    block of sequence rows, disallowed entries (the sequence's own items) set to -inf."""
    if (query_groups is None) != (item_groups is None):
        raise ValueError("query_groups and item_groups go together")
    states = session_states(net, sequences)
    trained = net.item_counts.numpy() > 0
    query_groups = np.zeros(len(sequences), np.int64) if query_groups is None else query_groups
    item_groups = np.zeros(net.num_items, np.int64) if item_groups is None else item_groups
    owner = np.repeat(np.arange(len(sequences)), sequences.lengths)
    vectors = net.item_vectors
    with _torch_state(net.config.seed, net.config.threads):
        for group in np.unique(query_groups):
            codes = np.flatnonzero(trained & (item_groups == group))
            queries = np.flatnonzero((query_groups == group) & (sequences.lengths > 0))
            if codes.size == 0 or queries.size == 0:
                continue
            column = np.full(net.num_items, -1, np.int64)
            column[codes] = np.arange(codes.size)
            group_vectors = vectors[torch.from_numpy(codes)]
            block_size = max(1, memory_mb * 2**20 // (4 * codes.size))
            for first in range(0, queries.size, block_size):
                rows = queries[first : first + block_size]
                block = states[torch.from_numpy(rows)] @ group_vectors.T
                if exclude_history:
                    local = np.full(len(sequences), -1, np.int64)
                    local[rows] = np.arange(rows.size)
                    mine = local[owner] >= 0
                    hit_rows, hit_cols = local[owner[mine]], column[sequences.items[mine]]
                    keep = hit_cols >= 0
                    block[torch.from_numpy(hit_rows[keep]), torch.from_numpy(hit_cols[keep])] = float("-inf")
                yield rows, codes, block


@contextmanager
def _torch_state(seed: int, threads: int):
    """Seeded random state and thread count for one call, the caller's restored afterwards."""
    previous = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
