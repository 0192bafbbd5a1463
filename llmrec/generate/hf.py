"""Title generation with transformers `generate`: the reference backend, and the one finetuning
uses on its in-memory model for validation BLEU."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from llmrec.errors import ConfigError, first_line
from llmrec.generate.base import (
    Candidate,
    GenerateConfig,
    check_free_decoding,
    eos_ids,
    left_padded,
    resolve_dtype,
    stop_token_ids,
    title_text,
    title_tokens,
)

TITLE_ROWS = 64  # titles scored in one pass (each holds a copy of its prompt's key/value cache)
HEAD_CHUNK = 256  # title positions per LM-head call


class HFGenerator:
    def __init__(self, config: GenerateConfig, model: str, adapter: str | None = None):
        """Loads `model` (and merges the LoRA `adapter` into it: generation runs at base speed)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model)
            network = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, resolve_dtype(config.dtype)))
        except (OSError, ValueError) as error:
            raise ConfigError(f"model {model} not found or not loadable: {first_line(error)}") from None
        if adapter is not None:
            from peft import PeftModel

            try:
                network = PeftModel.from_pretrained(network, adapter).merge_and_unload()
            except (RuntimeError, ValueError, KeyError) as error:
                lines = [
                    line.strip() for line in str(error).splitlines()
                ]  # torch's state-dict errors: the first mismatch
                detail = next((line for line in lines if line.startswith("size mismatch")), first_line(error))
                raise ConfigError(f"adapter {adapter} does not match base model {model}: {detail[:200]}") from None
        self._bind(network.to("cuda" if torch.cuda.is_available() else "cpu").eval(), tokenizer, config)

    @classmethod
    def from_model(cls, model, tokenizer, config: GenerateConfig) -> HFGenerator:
        """Wraps an in-memory (possibly PEFT) model as it is: not merged, moved or switched to eval
        mode (call `model.eval()` first), and the tokenizer is not changed."""
        generator = cls.__new__(cls)
        generator._bind(model, tokenizer, config)
        return generator

    def _bind(self, model, tokenizer, config: GenerateConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.device = next(model.parameters()).device
        eos = eos_ids(tokenizer, getattr(model, "generation_config", None))
        self.stops = stop_token_ids(tokenizer, eos)
        self.stop_set = set(self.stops)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        self.generated_tokens = 0
        self.fingerprint = f"in-memory {type(model).__name__}"  # make_generator sets the weights' digest

    @torch.no_grad()
    def generate(self, prompts: list[str]) -> list[list[Candidate]]:
        check_free_decoding(self.config)
        ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # similar lengths share a batch: less padding
        if self.config.decoding == "sample":
            torch.manual_seed(self.config.seed)
        results: list[list[Candidate]] = [[] for _ in ids]
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            for index, candidates in zip(batch, self._batch([ids[i] for i in batch])):
                results[index] = candidates
        return results

    def _batch(self, ids: list[list[int]]) -> list[list[Candidate]]:
        config, n = self.config, self.config.num_candidates
        input_ids, attention = left_padded(ids, self.pad_id)  # every prompt ends where generation starts
        width = input_ids.shape[1]
        settings = dict(
            max_new_tokens=config.max_new_tokens,
            eos_token_id=self.stops,
            pad_token_id=self.pad_id,
            num_return_sequences=n,
            return_dict_in_generate=True,
        )
        recorder = None  # beam search reports its own scores
        if config.decoding == "beam":
            # length_penalty 0: the score is the total log-probability. transformers returns it only with
            # output_scores, which also keeps every step's log-probabilities (rows x vocabulary floats).
            settings |= dict(do_sample=False, num_beams=config.num_beams, length_penalty=0.0, output_scores=True)
        else:
            recorder = TokenLogprobs()
            warpers = (
                [TemperatureLogitsWarper(config.temperature), TopPLogitsWarper(config.top_p)]
                if config.decoding == "sample"
                else []
            )
            settings |= dict(
                do_sample=config.decoding == "sample",
                num_beams=1,
                logits_processor=LogitsProcessorList([recorder, *warpers]),
            )
            settings |= dict(top_k=0) if warpers else {}  # no top-k (generate's default is 50; vLLM has none)
        output = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **settings
        )
        generated = output.sequences[:, width:]
        kept = [title_tokens(tokens, self.stop_set) for tokens in generated.tolist()]
        if recorder is None:
            scores = output.sequences_scores.tolist()
        else:
            logprobs = recorder.finish(generated[:, -1])
            scores = [float(logprobs[row, : len(tokens)].sum()) for row, tokens in enumerate(kept)]
        self.generated_tokens += sum(map(len, kept))
        candidates = [(title_text(self.tokenizer, tokens), score) for tokens, score in zip(kept, scores)]
        return [sorted(candidates[i * n : (i + 1) * n], key=lambda c: -c[1]) for i in range(len(ids))]

    def constrained_beams(self, prompt_ids: list[list[int]], trie, num_beams: int, banned: list[dict[int, int]]):
        """Constrained decoding in batches of `batch_size` prompts, each over one trie-shaped cache."""
        from llmrec.generate.constrained import constrained_beam_search
        from llmrec.generate.hf_tree import TreeCacheStep

        size, beams = self.config.batch_size, []
        for start in range(0, len(prompt_ids), size):
            step = TreeCacheStep(self.model, trie, prompt_ids[start : start + size], self.pad_id)
            beams += constrained_beam_search(step, len(step.slot), trie, num_beams, banned[start : start + size])
        return beams

    @torch.no_grad()
    def title_logprobs(self, prompt_ids: list[list[int]], title_ids: list[list[list[int]]]) -> list[list[float]]:
        """Each prompt runs once; its key/value cache is repeated for its titles, which run
        together (at most TITLE_ROWS titles per pass); the LM head is applied only where a title
        token is predicted, in chunks (a 262k vocabulary's logits at every position would not fit)."""
        results: list[list[float]] = [[] for _ in prompt_ids]
        start = 0
        while start < len(prompt_ids):
            end, rows = start, 0
            while end < len(prompt_ids) and (end == start or rows + len(title_ids[end]) <= TITLE_ROWS):
                rows, end = rows + len(title_ids[end]), end + 1
            batch = [i for i in range(start, end) if title_ids[i]]
            if batch:
                scores = self._title_batch([prompt_ids[i] for i in batch], [title_ids[i] for i in batch])
                for i, found in zip(batch, scores):
                    results[i] = found
            start = end
        return results

    def _title_batch(self, prompts: list[list[int]], titles: list[list[list[int]]]) -> list[list[float]]:
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        prompt_ids, prompt_mask = left_padded(prompts, self.pad_id)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = decoder(
            input_ids=prompt_ids.to(self.device),
            attention_mask=prompt_mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
        )
        owner = torch.tensor([row for row, group in enumerate(titles) for _ in group])
        flat = [ids for group in titles for ids in group]
        cache = out.past_key_values
        cache.reorder_cache(owner.to(self.device))  # one copy of its prompt's cache per title
        length = max(map(len, flat))
        title_ids = torch.full((len(flat), length), self.pad_id, dtype=torch.long)
        title_mask = torch.zeros((len(flat), length), dtype=torch.long)
        for row, ids in enumerate(flat):
            title_ids[row, : len(ids)] = torch.tensor(ids)
            title_mask[row, : len(ids)] = 1
        starts = torch.tensor([len(p) for p in prompts])[owner]
        hidden = decoder(
            input_ids=title_ids.to(self.device),
            attention_mask=torch.cat([prompt_mask[owner], title_mask], dim=1).to(self.device),
            position_ids=(starts[:, None] + torch.arange(length)[None, :]).to(self.device),
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
        # the prompt's last position predicts a title's first token, title position t its token t + 1
        predictors = torch.cat([out.last_hidden_state[owner.to(self.device), -1][:, None], hidden[:, :-1]], dim=1)
        rows, columns = title_mask.nonzero(as_tuple=True)
        logprobs = torch.empty(len(rows))
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        for chunk in range(0, len(rows), HEAD_CHUNK):
            r, c = rows[chunk : chunk + HEAD_CHUNK], columns[chunk : chunk + HEAD_CHUNK]
            logits = head(predictors[r.to(self.device), c.to(self.device)]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            targets = title_ids[r, c].to(self.device)
            picked = logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
            logprobs[chunk : chunk + HEAD_CHUNK] = picked.cpu()
        totals = torch.zeros(len(flat), dtype=torch.float64).index_add_(0, rows, logprobs.double()).tolist()
        scores, position = [], 0
        for group in titles:
            scores.append(totals[position : position + len(group)])
            position += len(group)
        return scores


class TokenLogprobs(LogitsProcessor):
    """Log-probability of every generated token under the model's own distribution (before
    temperature and top-p, as vLLM reports it). Processors run before the token is picked, so
    each step's pick is read from `input_ids` at the next call, the last one in `finish`."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []
        self.previous: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        self.steps.append(self.previous.gather(1, last_tokens[:, None]))
        return torch.cat(self.steps, dim=1).cpu()
