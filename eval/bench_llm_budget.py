"""Which default LLM trains and generates better per CPU minute: SmolLM2-135M (English) against
Gemma-3-270M (multilingual, twice the size) on one data folder, the same recipe and the same
wall-clock training budget, one model after the other on an otherwise idle machine.

Per model: `llmrec finetune --task 3` with LoRA on the top half of its decoder layers (the CPU
recipe's choice: the backward pass stops there) for `--minutes` of training, which ends with
the recipe's validation (loss and greedy-title BLEU on its held-out sessions); then `llmrec
generate --task 3 --backend hf` of the first `--users` validation sessions (prompts/s, BLEU).
Printed: steps, training tokens/s, CPU minutes of each verb, and both BLEUs. The validation
losses are per token of each model's own tokenizer, so they are shown but not compared.

    python eval/bench_llm_budget.py --data runs/real-lcrec/data --minutes 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from real_lcrec import llmrec, print_markdown  # eval/ is on the path when this script runs

MODELS = {"smollm2-135m": 30, "gemma-3-270m": 18}  # default model -> decoder layers


def bench(model: str, layers: int, args: argparse.Namespace, log: Path) -> dict:
    run = args.out / model
    top_half = ",".join(str(layer) for layer in range(layers // 2, layers))
    finetune_cpu = llmrec(
        *("finetune", "--task", "3", "--config", "task3", f"data={args.data}", f"model={model}"),
        *(f"train.out={run}", f"train.max_minutes={args.minutes}", "train.max_steps=100000"),
        *(f"lora.layers=[{top_half}]", f"lora.num_layers={layers}", f"train.eval_sessions={args.users}"),
        log=log,
    )
    last = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])
    titles = run / "titles-valid.parquet"
    generate_cpu = llmrec(
        *("generate", "--task", "3", "--backend", "hf", "--adapter", str(run / "adapter"), "--data", str(args.data)),
        *("--split", "valid", "--limit", str(args.users), "--out", str(titles)),
        log=log,
    )
    report = json.loads(titles.with_name(titles.stem + ".report.json").read_text())
    return {
        "steps": last["step"],
        "train_tokens_per_s": round(last["tokens_per_s"], 1),
        "valid_loss": round(last["valid_loss"], 3),
        "valid_bleu": round(last["valid_bleu"], 4),
        "finetune_cpu_min": round(finetune_cpu / 60, 1),
        "generate_prompts_per_s": report["throughput"]["prompts_per_s"],
        "generate_bleu": round(report["metrics"]["overall"]["bleu"], 4),
        "generate_cpu_min": round(generate_cpu / 60, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an llmrec data folder (e.g. an imported one)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-llm-budget"))
    parser.add_argument("--minutes", type=float, default=8.0, help="training wall budget per model")
    parser.add_argument("--users", type=int, default=96, help="validation sessions for BLEU and generation")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "llmrec.log"
    results = {model: bench(model, MODELS[model], args, log) for model in args.models}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{args.data}: {args.minutes:g} training minutes per model, {args.users} validation sessions")
    print_markdown("model", results)


if __name__ == "__main__":
    main()
