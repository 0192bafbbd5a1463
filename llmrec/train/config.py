"""The task 3 settings (the shipped recipe: llmrec/configs/task3.yaml): model, data, prompts, LoRA, training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmrec.data.split import SplitConfig
from llmrec.generate.base import GenerateConfig
from llmrec.prompts.render import PromptConfig


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    layers: list[int] = field(default_factory=list)  # adapt only these decoder layers (empty: all); the top
    # layers alone make the backward pass stop there: much faster training on CPU
    num_layers: int = 0  # the model's decoder layer count `layers` was chosen for: another model is an error


@dataclass
class TrainSettings:
    out: str = "runs/task3"  # run folder: adapter, tokenizer, config, logs, checkpoints
    quantization: Literal["none", "nf4"] = "none"  # nf4 = QLoRA with bitsandbytes
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPUs that support it, else fp32
    max_steps: int = 300  # optimizer steps
    max_minutes: float = 0.0  # stop (and save) after this much training time; 0 = no limit
    batch_size: int = 8  # sessions per micro-batch and process
    grad_accum: int = 2
    lr: float = 2e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_completion_tokens: int = 48  # the target title, cut beyond this
    train_sessions: int = 0  # 0: every labelled history session with a target title
    locales: list[str] = field(default_factory=list)  # train and validate on these locales only (empty: all six)
    init_adapter: str = ""  # continue training this adapter folder instead of a fresh LoRA (task 2 transfer)
    eval_every: int = 100  # optimizer steps between validations (and at the end)
    eval_sessions: int = 200  # held-out sessions for validation loss and BLEU
    save_every: int = 100  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10
    gradient_checkpointing: bool = False
    seed: int = 0


@dataclass
class Task3Config:
    model: str = "gemma-3-270m"  # a default model (`llmrec models list`), a local folder or a hub id
    data: str = "data/synth-small"
    split: SplitConfig = field(default_factory=SplitConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
