"""Benchmark: constrained decoding (beam search over the catalogue's titles) on HF's trie-shaped
cache against vLLM's engine loop, same model, prompts, catalogue and beams, and free greedy
titles with vLLM for scale.

Prompts are the first N task 1 sessions of a data folder's split (default: an imported Amazon
folder, whose titles are real); the catalogue is its titles, the session's own banned. Each
backend loads, warms up on two prompts, then decodes all prompts once; only that call is timed.
Prints prompts/s of each, the ratios, and whether the two backends return the same beams.

    python eval/bench_constrained.py --data runs/real-lcrec/data [--adapter DIR] [--prompts 32] [--beams 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


def main() -> None:
    import polars as pl

    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.generate import GenerateConfig, make_generator
    from llmrec.generate.constrained import CatalogConstraint
    from llmrec.models.prepare import load_tokenizer, resolve_model
    from llmrec.prompts import PromptConfig, task_prompts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/real-lcrec/data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="HF: prompts per trie-shaped cache")
    args = parser.parse_args()

    model, data = resolve_model(args.model), AmazonM2(args.data)
    split = SplitConfig(name=args.split, limit=args.prompts + 2)
    tokenizer = load_tokenizer(model)
    task = load_task_split(data, 1, split)
    rows = task_prompts(task, data.root, PromptConfig(), tokenizer).to_polars()
    rules = CatalogConstraint.for_split(task.sessions, task.catalog, tokenizer, exclude_history=True)
    warm, timed = rows.head(2), rows.slice(2)
    constrained = GenerateConfig(
        decoding="constrained", num_beams=args.beams, num_candidates=args.beams, batch_size=args.batch_size
    )
    results, beams = {}, {}
    for name, config in (
        ("HF, trie-shaped cache", dataclasses.replace(constrained, backend="hf")),
        ("vLLM, engine loop", dataclasses.replace(constrained, backend="vllm")),
        ("vLLM, free greedy titles", GenerateConfig(backend="vllm")),
    ):
        generator = make_generator(config, model, args.adapter)
        decode = (
            (lambda frame: rules.generate(generator, frame, args.beams, args.beams))  # noqa: B023
            if config.decoding == "constrained"
            else (lambda frame: generator.generate(frame["prompt"].to_list()))  # noqa: B023
        )
        decode(warm)
        started = time.perf_counter()
        beams[name] = decode(timed)
        results[name] = timed.height / (time.perf_counter() - started)
        if hasattr(generator, "close"):
            generator.close()
        print(f"{name}: {results[name]:.2f} prompts/s", flush=True)
    hf, engine = beams["HF, trie-shaped cache"], beams["vLLM, engine loop"]
    same = sum([t for t, _ in a] == [t for t, _ in b] for a, b in zip(hf, engine))
    first = sum(a[:1] and b[:1] and a[0][0] == b[0][0] for a, b in zip(hf, engine))
    shared = [len({t for t, _ in a} & {t for t, _ in b}) for a, b in zip(hf, engine)]
    gaps = [abs(dict(a)[t] - s) for a, b in zip(hf, engine) for t, s in b if t in dict(a)]
    print(
        pl.DataFrame({"decoding": list(results), "prompts/s": list(results.values())}).with_columns(
            (pl.col("prompts/s") / results["HF, trie-shaped cache"]).alias("x HF constrained")
        )
    )
    print(
        f"HF against vLLM: {same} of {timed.height} prompts with the same {args.beams} titles in the same order, "
        f"{first} with the same best title, {sum(shared) / len(shared):.2f} titles shared on average; score "
        f"difference of a shared title: {max(gaps):.4f} at most, {sum(gaps) / len(gaps):.4f} on average"
    )


if __name__ == "__main__":
    main()
