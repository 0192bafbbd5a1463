"""What every generation backend shares: settings, the candidate type and where a title ends
(the backends are chosen in `llmrec.generate.backends`; this module imports none of them).

A title ends at the end of the completion: at EOS or at the first token whose text holds a
newline (the prompt lists one product per line). Both backends stop on the same token ids,
decode the same way and score a candidate by the total log-probability of its tokens, the
stopping token included, so their outputs can be compared one for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from llmrec.errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class GenerateConfig:
    backend: Literal["vllm", "hf"] = "vllm"
    # constrained: beams over catalogue titles; score: the titles of a given list's top products, scored (--lists)
    decoding: Literal["greedy", "beam", "sample", "constrained", "score"] = "greedy"
    num_candidates: int = 1  # titles returned per prompt, best first; beam, constrained: at most num_beams; score:
    # the list's top products scored
    num_beams: int = 4
    temperature: float = 0.8  # sample only
    top_p: float = 0.95  # sample only
    exclude_history: bool = True  # constrained only: never end in the title of one of the session's own products
    max_new_tokens: int = 48
    batch_size: int = 16  # prompts per batch (hf; vLLM schedules its own batches)
    chunk_size: int = 2000  # sessions per chunk file: an interrupted run resumes after the last finished chunk
    seed: int = 0
    dtype: str = "auto"  # auto: bfloat16 on CUDA GPUs that support it, else float32
    vllm_kv_cache_gb: float = 1.0  # KV cache of the vLLM CPU engine
    vllm_eager: bool = (
        False  # skip vLLM's torch.compile (faster start, maybe slower steps; always eager on CPU with LoRA)
    )
    max_lora_rank: int = 16  # vLLM: largest adapter rank it can serve
    vllm_lora: Literal["auto", "merge", "request"] = (
        "auto"  # adapter as a LoRARequest or merged into the model; auto: merge on CPU
    )
    tensor_parallel_size: int = 1  # vLLM: GPUs one model is split across (a multi-GPU node)
    data_parallel_size: int = 1  # vLLM: model replicas, each on its own GPUs, sharing the prompts

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"generate.dtype: '{self.dtype}' is not one of {', '.join(DTYPES)}")
        for name in (
            "num_candidates",
            "num_beams",
            "max_new_tokens",
            "batch_size",
            "chunk_size",
            "tensor_parallel_size",
            "data_parallel_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"generate.{name} must be at least 1")
        if self.decoding == "greedy" and self.num_candidates != 1:
            raise ConfigError(
                "generate.decoding=greedy gives one candidate: set num_candidates=1, or decoding=beam or sample"
            )
        if self.decoding == "sample" and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ConfigError("generate.decoding=sample needs temperature > 0 and 0 < top_p <= 1")
        if self.decoding in ("beam", "constrained") and self.num_candidates > self.num_beams:
            raise ConfigError(
                f"generate.num_candidates ({self.num_candidates}) exceeds generate.num_beams ({self.num_beams})"
            )


Candidate = tuple[str, float]  # (title, total log-probability of its tokens; beam: the same, length_penalty 0)


class Generator(Protocol):
    generated_tokens: int  # tokens of all returned candidates so far, for throughput
    fingerprint: str  # the weights' content digest (model and adapter): resumable outputs are keyed on it

    def generate(self, prompts: list[str]) -> list[list[Candidate]]:
        """`num_candidates` candidates per prompt, best first."""
        ...

    def constrained_beams(self, prompt_ids: list[list[int]], trie, num_beams: int, banned: list[dict[int, int]]):
        """`constrained_beam_search` over `trie` for every prompt, with this backend's step."""
        ...

    def title_logprobs(self, prompt_ids: list[list[int]], title_ids: list[list[list[int]]]) -> list[list[float]]:
        """The total log-probability of each given title (token ids, ending token included) of
        each prompt, in input order, under the model's full vocabulary."""
        ...


def check_free_decoding(config: GenerateConfig) -> None:
    """`generate(prompts)` writes free text; constrained decoding needs the catalogue, scoring a list."""
    if config.decoding == "constrained":
        raise ConfigError(
            "generate.decoding=constrained searches the catalogue's titles: run it through generate_titles "
            "with a CatalogConstraint (llmrec generate does)"
        )
    if config.decoding == "score":
        raise ConfigError(
            "generate.decoding=score scores the titles of ranked lists: run it through generate_titles with "
            "ListTitles (llmrec generate --lists does)"
        )


def prune_beams(found: list[tuple], done: list[tuple], num_beams: int, ends) -> tuple[list[tuple], list[tuple]]:
    """One step of beam search as transformers runs it (length_penalty 0), for one prompt: of the
    continuations `found` (tuples with the tokens first and the score last) the 2 x beams best
    are kept; those among the best `num_beams` whose last token `ends` a title join the finished
    `done`, the best `num_beams` others stay live. Nothing stays live once `done` is full and no
    live beam can beat its worst (log-probabilities only fall). Returns (live, done)."""
    best = sorted(found, key=lambda c: -c[-1])[: 2 * num_beams]
    done = sorted(done + [c for c in best[:num_beams] if ends(c[0][-1])], key=lambda c: -c[-1])[:num_beams]
    live = [c for c in best if not ends(c[0][-1])][:num_beams]
    if len(done) == num_beams and (not live or live[0][-1] <= done[-1][-1]):
        live = []
    return live, done


def left_padded(ids: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) with every sequence ending in the last column."""
    import torch

    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for row, sequence in enumerate(ids):
        input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
        attention[row, width - len(sequence) :] = 1
    return input_ids, attention


def resolve_dtype(name: str) -> str:
    import torch

    if name != "auto":
        return name
    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def stop_token_ids(tokenizer, eos_ids: list[int]) -> list[int]:
    """EOS ids plus every token whose text holds a newline: where a title ends."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return sorted(set(eos_ids) | {i for i, text in enumerate(texts) if "\n" in text})


def title_tokens(tokens: list[int], stops: set[int]) -> list[int]:
    """The generated tokens up to and including the first stop token."""
    for position, token in enumerate(tokens):
        if token in stops:
            return tokens[: position + 1]
    return tokens


def title_text(tokenizer, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True).split("\n", 1)[0].strip()


def eos_ids(tokenizer, generation_config) -> list[int]:
    """The tokenizer's EOS and the model's generation-config EOS ids (vLLM stops on both)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured] if configured is not None else []
    return ids
