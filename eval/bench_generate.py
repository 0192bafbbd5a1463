"""Benchmark: vLLM against transformers `generate`, same model, prompts and greedy settings.

Prompts are task 3 prompts of the synthetic validation split (`data/synth-small`, generated if
missing); they end with a new list item, so even an untuned base model writes a title. Each
backend loads, warms up on two prompts, then generates once for all prompts; only that call is
timed. Prints output tokens/s of each, their ratio, and whether the titles are the same.

    python eval/bench_generate.py [--model PATH] [--adapter DIR] [--prompts 32] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def default_model() -> str | None:
    from llmrec.models.prepare import resolve_model

    try:
        return resolve_model("gemma-3-270m")
    except FileNotFoundError:
        return None


def task3_prompts(data: Path, model: str, count: int) -> list[str]:
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.data.synth import SynthConfig, generate
    from llmrec.models.prepare import load_tokenizer
    from llmrec.prompts import PromptConfig, prompt_dataset

    generate(data, SynthConfig(scale="small", seed=0))
    split = load_task_split(AmazonM2(data), 3, SplitConfig(name="valid"))
    rows = prompt_dataset(split.sessions.head(count), split.catalog, PromptConfig(), tokenizer=load_tokenizer(model))
    return list(rows["prompt"])


def run(backend: str, args, prompts: list[str]) -> dict:
    from llmrec.generate import GenerateConfig, make_generator

    config = GenerateConfig(
        backend=backend,
        max_new_tokens=args.new_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
        vllm_eager=args.eager,
    )
    started = time.perf_counter()
    generator = make_generator(config, args.model, args.adapter)
    load = time.perf_counter() - started
    generator.generate(prompts[:2])
    before = generator.generated_tokens
    started = time.perf_counter()
    titles = [c[0][0] for c in generator.generate(prompts)]
    seconds = time.perf_counter() - started
    tokens = generator.generated_tokens - before
    if backend == "vllm":
        generator.close()
    rate = tokens / seconds
    print(
        f"{backend:>5}: load {load:.1f} s, {len(prompts)} prompts, {tokens} tokens in {seconds:.2f} "
        f"s: {rate:.1f} output tokens/s",
        flush=True,
    )
    return {"titles": titles, "tokens_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder or hub id (default: the prepared gemma-3-270m).")
    parser.add_argument("--adapter", default=None, help="A LoRA adapter folder to apply in both backends.")
    parser.add_argument("--data", type=Path, default=Path("data/synth-small"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="HF generate batch size.")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile.")
    args = parser.parse_args()
    args.model = args.model or default_model()
    if args.model is None:
        parser.error("gemma-3-270m is not prepared (`llmrec models prepare gemma-3-270m`): give --model PATH")
    prompts = task3_prompts(args.data, args.model, args.prompts)
    adapter = f" + adapter {args.adapter}" if args.adapter else ""
    print(
        f"model {args.model}{adapter}, greedy, {len(prompts)} prompts x up to {args.new_tokens} new "
        f"tokens, dtype {args.dtype}"
    )
    vllm, hf = run("vllm", args, prompts), run("hf", args, prompts)
    same = sum(a == b for a, b in zip(vllm["titles"], hf["titles"]))
    print(
        f"vLLM / HF output tokens/s: {vllm['tokens_per_s'] / hf['tokens_per_s']:.2f}x; same greedy "
        f"title for {same} of {len(prompts)} prompts"
    )


if __name__ == "__main__":
    main()
