"""The HF backend's step for constrained decoding: a key/value cache shaped like the title trie.

Re-running prompt + prefix for every beam at every step would encode each prompt once per
branching step and beam. Here each prompt is encoded once, and each trie node a beam passes is
encoded once, into one cache per batch of prompts: a node's token attends to its prompt and its
own ancestors only (a 4-D attention mask), at the position that continues its prompt. Nodes are
computed when a beam first needs the logits below them, so the tokens of a title after its last
branching are never computed, and the LM head runs only over each beam's allowed tokens.
"""

from __future__ import annotations

import torch

from llmrec.generate.base import left_padded
from llmrec.generate.constrained import TitleTrie


class TreeCacheStep:
    """A `StepFn` over `prompt_ids` (a batch: every prompt takes part in each forward pass, so
    keep batches to a few dozen prompts)."""

    def __init__(self, model, trie: TitleTrie, prompt_ids: list[list[int]], pad_id: int):
        self.causal = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.trie = trie
        parameters = next(self.causal.parameters())
        self.device, self.dtype = parameters.device, parameters.dtype
        ids, mask = left_padded(prompt_ids, pad_id)
        self.prompt_mask = mask.bool()
        self.prompt_length = mask.sum(1)
        out = self.causal.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(self.device),
            use_cache=True,
        )
        self.cache, self.slots = out.past_key_values, ids.shape[1]
        self.slot: list[dict[int, int]] = [{} for _ in prompt_ids]  # node -> cache slot, per prompt
        self.hidden: list[dict[int, torch.Tensor]] = [{0: h} for h in out.last_hidden_state[:, -1]]  # node -> output
        self.window = getattr(self.causal.config, "sliding_window", None) or 1 << 30

    @torch.no_grad()
    def __call__(self, indices: list[int], prefixes: list[tuple[int, ...]], allowed: list[list[int]]):
        ends = [self.trie.walk(prefix) for prefix in prefixes]
        new: list[list[int]] = [[] for _ in self.slot]
        for i, node in zip(indices, ends):
            path = []
            while node != 0 and node not in self.slot[i] and node not in new[i]:
                path.append(node)
                node = self.trie.parent[node]
            new[i].extend(reversed(path))
        if any(new):
            self._forward(new)
        head = self.causal.lm_head.weight
        cap = getattr(self.causal.config, "final_logit_softcapping", None)
        found = []
        for i, node, tokens in zip(indices, ends, allowed):
            logits = (self.hidden[i][node] @ head[torch.tensor(tokens, device=head.device)].T).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            found.append(dict(zip(tokens, torch.log_softmax(logits, dim=-1).tolist())))
        return found

    def _forward(self, new: list[list[int]]) -> None:
        """Appends every prompt's new nodes (ancestors first) to the cache."""
        rows, width, start = len(new), max(map(len, new)), self.slots
        if start + width >= self.window:
            raise ValueError(
                f"constrained decoding needs {start + width} cache slots, beyond the model's sliding window "
                f"{self.window}: use fewer prompts per batch (generate.batch_size) or beams"
            )
        ids = torch.zeros((rows, width), dtype=torch.long)
        positions = self.prompt_length[:, None].repeat(1, width)  # padding: attends to the prompt, unused
        keep = torch.zeros((rows, width, start + width), dtype=torch.bool)
        for row, nodes in enumerate(new):
            keep[row, :, : self.prompt_mask.shape[1]] = self.prompt_mask[row]
            placed = {node: start + j for j, node in enumerate(nodes)}
            for j, node in enumerate(nodes):
                ids[row, j] = self.trie.token[node]
                positions[row, j] = self.prompt_length[row] + self.trie.depth[node] - 1
                ancestor = node
                while ancestor != 0:
                    keep[row, j, self.slot[row].get(ancestor, placed.get(ancestor, 0))] = True
                    ancestor = self.trie.parent[ancestor]
            self.slot[row].update(placed)
        mask = torch.zeros(keep.shape, dtype=self.dtype).masked_fill_(~keep, torch.finfo(self.dtype).min)[:, None]
        out = self.causal.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache, self.slots = out.past_key_values, start + width
        for row, nodes in enumerate(new):
            for j, node in enumerate(nodes):
                self.hidden[row][node] = out.last_hidden_state[row, j]
