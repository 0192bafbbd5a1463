"""GPU check, ready to run: one command on one GPU (under 8 minutes) that prints, from one run,
what the training and generation recipes do there.

- LoRA (bf16) and QLoRA (4-bit NF4, bitsandbytes) training: tokens/s and peak GPU memory;
- HF `generate` at batch 64 (greedy): output tokens/s;
- the same LoRA steps on a fixed batch on the GPU and on the CPU, in float32: the losses agree
  within tolerance, so the GPU trains what the CPU tests check.

The prompts are task 3 prompts of the built-in synthetic data (written in a temporary folder).
On a GPU machine with the default models prepared:

    python eval/gpu_check.py                     # Gemma-3-270M
    python eval/gpu_check.py --model /path/to/model

`--tiny` runs everything on a random 2-layer Llama on the CPU (the test suite does; QLoRA then
runs bitsandbytes' CPU kernels), to keep the script itself working where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch


def fixed_batches(tokenizer, count: int, size: int, max_completion_tokens: int = 48) -> list:
    """`count` batches of `size` task 3 examples (prompt + next title) of the synthetic data."""
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split, titles_of
    from llmrec.data.synth import SynthConfig, generate
    from llmrec.prompts import PromptConfig, prompt_dataset
    from llmrec.train.finetune import tokenize

    folder = generate(Path(tempfile.mkdtemp(prefix="llmrec-gpu-check-")) / "data", SynthConfig(scale="tiny", seed=0))
    split = load_task_split(AmazonM2(folder), 3, SplitConfig())
    history = (
        split.history.with_columns(titles_of(split.history, split.catalog).alias("title"))
        .drop_nulls("title")
        .head(count * size)
    )
    rows = prompt_dataset(history, split.catalog, PromptConfig(), history["title"], tokenizer)
    examples = tokenize(list(rows["prompt"]), list(rows["completion"]), tokenizer, max_completion_tokens)
    return [examples[i * size : (i + 1) * size] for i in range(count)], list(rows["prompt"])


def training_run(
    model_path: str,
    quantization: str,
    device: torch.device,
    dtype: torch.dtype,
    batches: list,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict:
    """LoRA steps over `batches`: per-step losses, tokens/s and peak memory of the device."""
    from llmrec.config import load_config
    from llmrec.train.config import Task3Config
    from llmrec.train.finetune import CompletionLoss, collate, load_for_training

    config = load_config(
        Task3Config, None, [f"model={model_path}", f"train.quantization={quantization}", "lora.dropout=0.0"]
    )
    torch.manual_seed(seed)
    model, tokenizer = load_for_training(model_path, config, device, dtype)
    loss_module = CompletionLoss(model)
    if quantization == "none":
        loss_module = loss_module.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, tokens, started = [], 0, time.perf_counter()
    for batch in batches:
        tensors = {k: v.to(device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
        loss = loss_module(**tensors)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        tokens += int(tensors["attention_mask"].sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"losses": losses, "tokens_per_s": tokens / seconds, "peak_gib": peak, "steps": len(batches)}


def generation_run(
    model_path: str, device: torch.device, dtype: torch.dtype, prompts: list[str], batch: int, new_tokens: int
) -> dict:
    """Greedy HF generate of `batch` prompts at once: output tokens/s."""
    from llmrec.generate.base import GenerateConfig
    from llmrec.generate.hf import HFGenerator

    config = GenerateConfig(
        backend="hf", dtype=str(dtype).removeprefix("torch."), max_new_tokens=new_tokens, batch_size=batch
    )
    generator = HFGenerator(config, model_path)
    generator.generate(prompts[:2])  # warm-up: kernels, caches
    started, before = time.perf_counter(), generator.generated_tokens
    generator.generate(prompts[:batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"tokens_per_s": (generator.generated_tokens - before) / (time.perf_counter() - started), "batch": batch}


def tiny_model(folder: Path) -> str:
    """A random 2-layer Llama (head_dim 64) with a byte-level tokenizer, for --tiny."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(
        ["a b c"],
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<pad>", "<bos>", "<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="a default model, a local folder or a hub id")
    parser.add_argument("--tiny", action="store_true", help="a random tiny model, on the CPU: the script's own test")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=16, help="training examples per step")
    parser.add_argument("--compare-steps", type=int, default=5, help="LoRA steps compared between GPU and CPU")
    parser.add_argument("--tolerance", type=float, default=2e-3, help="largest relative loss difference GPU vs CPU")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    from llmrec.models.prepare import load_tokenizer, resolve_model

    started = time.perf_counter()
    if args.tiny:
        model = tiny_model(Path(tempfile.mkdtemp(prefix="llmrec-tiny-")))
        device = torch.device("cpu")
    else:
        model = resolve_model(args.model)
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or with --tiny")
        device = torch.device("cuda")
    fast = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = load_tokenizer(model)
    batches, prompts = fixed_batches(tokenizer, max(args.steps, args.compare_steps), args.batch_size)
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "model": model,
        "dtype": str(fast),
    }
    results["lora"] = training_run(model, "none", device, fast, batches[: args.steps])
    results["qlora_nf4"] = training_run(model, "nf4", device, fast, batches[: args.steps])
    results["generate"] = generation_run(
        model, device, fast, prompts * (64 // max(1, len(prompts)) + 1), batch=64, new_tokens=32
    )
    on_device = training_run(model, "none", device, torch.float32, batches[: args.compare_steps])["losses"]
    on_cpu = training_run(model, "none", torch.device("cpu"), torch.float32, batches[: args.compare_steps])["losses"]
    worst = max(abs(a - b) / max(abs(b), 1e-9) for a, b in zip(on_device, on_cpu))
    results["agreement"] = {
        "device_losses": on_device,
        "cpu_losses": on_cpu,
        "max_relative_difference": worst,
        "tolerance": args.tolerance,
        "agrees": worst <= args.tolerance,
    }
    results["seconds"] = time.perf_counter() - started
    print(f"gpu check on {results['device']} ({model}, {fast}), {results['seconds']:.0f} s")
    for name in ("lora", "qlora_nf4"):
        run = results[name]
        peak = "n/a (CPU)" if math.isnan(run["peak_gib"]) else f"{run['peak_gib']:.2f} GiB"
        print(
            f"  {name:<10} {run['steps']} steps of {args.batch_size}: {run['tokens_per_s']:,.0f} "
            f"training tokens/s, peak memory {peak}, "
            f"loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}"
        )
    print(
        f"  generate   HF greedy, batch 64, 32 new tokens: {results['generate']['tokens_per_s']:,.0f} output tokens/s"
    )
    print(
        f"  agreement  {args.compare_steps} LoRA steps in float32, device vs CPU: largest relative "
        f"loss difference {worst:.2e} "
        f"({'within' if results['agreement']['agrees'] else 'OUTSIDE'} {args.tolerance:g})"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
