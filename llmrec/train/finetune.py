"""`llmrec finetune --task 3`: LoRA / QLoRA supervised finetuning on session -> next title.

Plain PyTorch under accelerate: the same code runs on one CPU, one GPU or several GPUs
(`accelerate launch -m llmrec.cli finetune ...`). The loss covers the completion tokens
only, and the LM head is applied only at those positions: with a 262k vocabulary, logits
for every prompt token would dominate time and memory.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmrec import io
from llmrec.config import save_config
from llmrec.errors import ConfigError
from llmrec.progress import progress_bar
from llmrec.train.config import Task3Config

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"


@dataclass
class Example:
    input_ids: list[int]
    completion_start: int  # index of the first completion token


def tokenize(prompts: list[str], completions: list[str], tokenizer, max_completion_tokens: int) -> list[Example]:
    """prompt tokens (with the model's BOS) + completion tokens + EOS; only the latter are learned."""
    prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [Example(p + c[:max_completion_tokens] + [eos], len(p)) for p, c in zip(prompt_ids, completion_ids)]


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch plus the (row, position) of every token that predicts a completion token."""
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    rows, positions, targets = [], [], []
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        attention[row, :n] = 1
        predicted = range(example.completion_start, n)  # position t - 1 predicts token t
        rows.extend([row] * len(predicted))
        positions.extend(t - 1 for t in predicted)
        targets.extend(example.input_ids[t] for t in predicted)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "rows": torch.tensor(rows),
        "positions": torch.tensor(positions),
        "targets": torch.tensor(targets),
    }


class CompletionLoss(nn.Module):
    """Mean cross-entropy of the completion tokens, logits computed only where needed.
    Wrapping the model in a module keeps the forward inside DDP when accelerate wraps it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, rows, positions, targets):
        causal = self.model.get_base_model()
        hidden = causal.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = causal.lm_head(hidden[rows, positions]).float()
        cap = getattr(causal.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return nn.functional.cross_entropy(logits, targets)


def load_for_training(model_path: str, config: Task3Config, device: torch.device, dtype: torch.dtype):
    """Base model (4-bit NF4 for QLoRA) with fresh LoRA adapters, and its tokenizer."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": dtype}
    if config.train.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if config.train.quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.train.gradient_checkpointing)
    elif config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if config.train.init_adapter:
        return continue_adapter(model, model_path, config.train.init_adapter), tokenizer
    check_layers(config, model.config.get_text_config().num_hidden_layers, model_path)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        layers_to_transform=config.lora.layers or None,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        raise ConfigError(
            f"lora.target_modules {config.lora.target_modules} do not fit {model_path}: {error}"
        ) from None
    return model, tokenizer


def check_layers(config: Task3Config, layers: int, model_path: str) -> None:
    """`lora.layers` names layers of one model: it applies only to a model of `lora.num_layers`
    decoder layers, as the config says, never silently to another."""
    chosen = config.lora.layers
    if not chosen:
        return
    if config.lora.num_layers != layers:
        stated = (
            f"a model of {config.lora.num_layers} layers"
            if config.lora.num_layers
            else "a model whose layer count it does not state"
        )
        raise ConfigError(
            f"lora.layers {chosen} were chosen for {stated} (lora.num_layers), but {model_path} has "
            f"{layers}: set lora.layers "
            f"and lora.num_layers={layers} for it, or lora.layers=[] for all layers"
        )
    if not all(0 <= layer < layers for layer in chosen):
        raise ConfigError(f"lora.layers {chosen}: {model_path} has layers 0 to {layers - 1}")


def continue_adapter(model, model_path: str, adapter: str):
    """`model` with a trained LoRA adapter loaded as trainable (task 2 transfer: an adapter
    learned on the large locales, trained further on the small ones). Its LoRA settings win
    over the config's."""
    from peft import PeftModel

    from llmrec.models.adapters import check_adapter

    check_adapter(model_path, adapter)
    return PeftModel.from_pretrained(model, adapter, is_trainable=True)


def precision(setting: str, device: torch.device) -> torch.dtype:
    if setting == "bf16" or (setting == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float32


class BatchPlan:
    """Which examples form micro-batch `step` (a global count): every epoch a fresh seeded
    shuffle, cut into windows of `LENGTH_WINDOW` batches that are sorted by length so a batch
    holds similar lengths (little padding), then the batches shuffled again. The plan is a pure
    function of the step, so a resumed run sees exactly the same batches."""

    LENGTH_WINDOW = 32

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed = np.asarray(lengths), batch_size, seed
        self.per_epoch = max(1, len(lengths) // batch_size)
        self._epoch, self._batches = -1, []

    def __call__(self, step: int) -> np.ndarray:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._plan(epoch)
        return self._batches[offset]

    def _plan(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))[: self.per_epoch * self.batch_size]
        window = self.LENGTH_WINDOW * self.batch_size
        for start in range(0, order.size, window):
            part = order[start : start + window]
            order[start : start + window] = part[np.argsort(self.lengths[part], kind="stable")]
        batches = order.reshape(self.per_epoch, self.batch_size)
        return list(batches[rng.permutation(self.per_epoch)])


RESUME_INDIFFERENT = (
    "train.eval_every",
    "train.eval_sessions",
    "train.save_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_minutes",
    "train.out",
    "generate",
)  # change what is logged or saved, or when it stops, not the weights


def check_run_folder(run: Path, config: Task3Config) -> None:
    """A run folder continues (or reuses) only the training it was started with: a config that
    differs in anything that decides the weights is refused, naming the first difference."""
    saved = run / "config.yaml"
    if not saved.exists():
        return
    from llmrec.config import load_config, to_dict

    def flat(tree: dict, prefix: str = "") -> dict:
        return {
            k: v
            for key, value in tree.items()
            for k, v in (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()
        }

    def decisive(values: dict) -> dict:
        return {k: v for k, v in values.items() if not any(k == i or k.startswith(i + ".") for i in RESUME_INDIFFERENT)}

    before, now = decisive(flat(to_dict(load_config(Task3Config, saved)))), decisive(flat(to_dict(config)))
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise ConfigError(
            f"{run} holds a training run with other settings ({changed[0]}: {before.get(changed[0])!r} there, "
            f"{now[changed[0]]!r} now): rerun with its settings, or choose another train.out"
        )


def latest_checkpoint(run: Path) -> Path | None:
    found = sorted((run / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def finetune(config: Task3Config, model_path: str, train, valid, resume: bool = False, log=print) -> dict:
    """Train LoRA adapters on `train` (a datasets.Dataset with prompt/completion) and validate
    on `valid` every `eval_every` steps (loss and BLEU); returns the final metrics.
    Writes into `config.train.out`: config.yaml, train_log.jsonl, checkpoints/, adapter/."""
    from accelerate import Accelerator
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import get_cosine_schedule_with_warmup

    settings = config.train
    run = Path(settings.out)
    accelerator = Accelerator(gradient_accumulation_steps=settings.grad_accum, cpu=not torch.cuda.is_available())
    dtype = precision(settings.precision, accelerator.device)
    torch.manual_seed(settings.seed)
    model, tokenizer = load_for_training(model_path, config, accelerator.device, dtype)
    examples = tokenize(list(train["prompt"]), list(train["completion"]), tokenizer, settings.max_completion_tokens)
    valid_examples = tokenize(
        list(valid["prompt"]), list(valid["completion"]), tokenizer, settings.max_completion_tokens
    )
    plan = BatchPlan([len(e.input_ids) for e in examples], settings.batch_size, settings.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)
    loss_module = CompletionLoss(model)
    if config.train.quantization == "none":
        loss_module = loss_module.to(accelerator.device)
    # The scheduler stays outside accelerate, which would step it once per process.
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)

    step = 0
    # Decided on the main process and shared, so that every process raises or goes on together.
    found = agreed(accelerator, latest_checkpoint(run) if accelerator.is_main_process else None)
    if resume and found is None:
        raise ConfigError(f"{run}: no checkpoint to resume from")
    if not resume and found is not None:
        raise ConfigError(f"{run} already holds checkpoints: pass --resume, or choose another train.out")
    if resume:
        if accelerator.distributed_type.value == "FSDP":
            raise ConfigError(
                "resuming an FSDP run is not supported (its optimizer state is sharded per process): "
                "train again, or use DDP"
            )
        check_run_folder(run, config)
        set_peft_model_state_dict(model, load_file(found / "adapter_model.safetensors"))
        state = torch.load(
            found / "trainer.pt", weights_only=True
        )  # tensors and numbers only: nothing a file could run
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])  # dropout continues as in an uninterrupted run
        step = state["step"]
        log(f"resumed from {found} at step {step}")
    elif accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.yaml")

    world, rank = accelerator.num_processes, accelerator.process_index
    started, trained_tokens, metrics = time.perf_counter(), 0, {}
    loss_module.train()
    with progress_bar(settings.max_steps, "finetuning (optimizer steps)", completed=step) as advance:
        while step < settings.max_steps:
            window_loss, window_count = 0.0, 0
            for micro in range(settings.grad_accum):
                global_micro = (step * settings.grad_accum + micro) * world + rank
                batch = [examples[i] for i in plan(global_micro)]
                tensors = {k: v.to(accelerator.device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
                with accelerator.accumulate(loss_module):
                    loss = loss_module(**tensors)
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                window_loss += loss.item()
                window_count += 1
                trained_tokens += int(tensors["attention_mask"].sum()) * world
            scheduler.step()
            step += 1
            advance()
            elapsed = time.perf_counter() - started
            out_of_time = agreed(
                accelerator, bool(settings.max_minutes and elapsed > settings.max_minutes * 60)
            )  # the main clock decides
            record = {
                "step": step,
                "loss": window_loss / window_count,
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": trained_tokens / elapsed,
            }
            last = step >= settings.max_steps or out_of_time
            if step % settings.eval_every == 0 or last:
                metrics = evaluate(model, tokenizer, valid, valid_examples, config, accelerator.device)
                record |= {f"valid_{k}": v for k, v in metrics.items()}
                loss_module.train()
            if accelerator.is_main_process and (step % settings.log_every == 0 or "valid_loss" in record or last):
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
                with (run / "train_log.jsonl").open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if step % settings.save_every == 0 or last:
                state = gathered_state(accelerator, loss_module)  # every process takes part: FSDP gathers the shards
                if accelerator.is_main_process:
                    save_checkpoint(run, step, model, state, optimizer, scheduler, settings.keep_checkpoints)
            if out_of_time:
                log(f"stopping at step {step}: max_minutes={settings.max_minutes} reached")
                break
    accelerator.wait_for_everyone()
    state = gathered_state(accelerator, loss_module)
    if accelerator.is_main_process:
        final, staging = run / ADAPTER, run / f".{ADAPTER}.tmp"  # never a partial adapter under its final name
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging, state_dict=state)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        io.write_json(
            {"step": step, "train_tokens_per_s": trained_tokens / (time.perf_counter() - started), **metrics},
            run / "metrics.json",
        )
    return {"step": step, **metrics}


def agreed(accelerator, value):
    """The main process's `value`, on every process: a decision all of them act on together
    (one process stopping or raising alone would leave the others waiting forever)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0] if accelerator.num_processes > 1 else value


def gathered_state(accelerator, loss_module) -> dict:
    """The PEFT model's whole state dict (its LoRA weights gathered from every process's shard
    under FSDP; each process must call this, the main one saves it)."""
    return {key.removeprefix("model."): value for key, value in accelerator.get_state_dict(loss_module).items()}


def save_checkpoint(run: Path, step: int, model, state: dict, optimizer, scheduler, keep: int) -> Path:
    """Adapter weights + optimizer/scheduler state; written to a temporary folder, then renamed."""
    target = run / CHECKPOINTS / f"step-{step}"
    staging = run / CHECKPOINTS / f".step-{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, state_dict=state)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": torch.get_rng_state(),
    }
    torch.save(state, staging / "trainer.pt")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    for old in sorted((run / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old)
    return target


@torch.no_grad()
def evaluate(model, tokenizer, valid, valid_examples: list[Example], config: Task3Config, device) -> dict:
    """Validation loss (completion tokens) and corpus BLEU of greedy titles."""
    from llmrec.generate.base import GenerateConfig
    from llmrec.generate.hf import HFGenerator
    from llmrec.metrics import corpus_bleu

    model.eval()
    scorer = CompletionLoss(model)
    losses, weights = [], []
    size = config.train.batch_size
    for start in range(0, len(valid_examples), size):
        batch = collate(valid_examples[start : start + size], tokenizer.pad_token_id)
        loss = scorer(**{k: v.to(device) for k, v in batch.items()})
        losses.append(loss.item() * len(batch["targets"]))
        weights.append(len(batch["targets"]))
    greedy = GenerateConfig(
        backend="hf",
        decoding="greedy",
        num_candidates=1,
        max_new_tokens=config.generate.max_new_tokens,
        batch_size=size,
    )
    generator = HFGenerator.from_model(model, tokenizer, greedy)
    titles = [candidates[0][0] for candidates in generator.generate(list(valid["prompt"]))]
    references = [c.strip() for c in valid["completion"]]
    return {
        "loss": sum(losses) / sum(weights),
        "perplexity": math.exp(min(20.0, sum(losses) / sum(weights))),
        "bleu": corpus_bleu(titles, references),
    }
