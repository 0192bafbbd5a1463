"""The prompt playground without the `llmrec` command: same options as `llmrec playground`.

    python scripts/playground.py --data data/synth-small --adapter runs/demo-small/task3/adapter --port 7860
"""

from __future__ import annotations

import argparse

from llmrec.playground.app import serve
from llmrec.playground.service import playground_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder (default: the config's, data/synth-small)")
    parser.add_argument("--model", help="a default model, a local folder or a hub id (default: gemma-3-270m)")
    parser.add_argument("--adapter", help="a PEFT LoRA adapter folder; the model and prompt settings it was trained with become the defaults")
    parser.add_argument("--backend", choices=["hf", "vllm"], help="generation backend (default: hf)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--config", help="a playground config YAML (PlaygroundConfig)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. retrieve.index.kind=Flat")
    args = parser.parse_args()
    config = playground_config(args.config, args.overrides, data=args.data, model=args.model, adapter=args.adapter, backend=args.backend)
    serve(config, args.host, args.port, args.open)


if __name__ == "__main__":  # vLLM starts its engine in a spawned process, which imports this file again
    main()
