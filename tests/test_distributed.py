"""Training on several processes, as on several GPUs: `accelerate launch` with the shipped DDP
config runs two CPU processes (gloo) of `llmrec finetune`. Decisions that end or refuse a run
are taken together: a process that stopped alone would leave the other waiting forever."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.config import find_config
from tests.helpers import tiny_llm_folder

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file <ddp> --num_processes 2 -m llmrec finetune ...`, bounded in time
    (a hang fails)."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(find_config("accelerate/ddp")),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "llmrec",
        "finetune",
        "--task",
        "3",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_llm(tiny_data, tmp_path_factory) -> Path:
    return tiny_llm_folder(tiny_data, tmp_path_factory.mktemp("ddp-llm"))


def test_two_processes_train_and_stop_together(tiny_data, tiny_llm, tmp_path):
    run = tmp_path / "run"
    settings = [
        f"model={tiny_llm}",
        f"data={tiny_data}",
        f"train.out={run}",
        "lora.layers=[]",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.max_steps=100000",
        "train.max_minutes=0.1",
        "train.save_every=100000",
        "train.eval_every=100000",
        "train.eval_sessions=2",
        "train.train_sessions=200",
        "generate.max_new_tokens=4",
    ]
    done = launch(*settings)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert "stopping at step" in done.stdout and 0 < steps[-1] < 100000  # the time budget ended it, on both processes
    assert (run / "adapter" / "adapter_model.safetensors").exists() and (
        run / "checkpoints" / f"step-{steps[-1]}"
    ).exists()
    refused = launch(*settings)  # the folder holds checkpoints and no --resume: both processes refuse, neither waits
    assert refused.returncode != 0 and "already holds checkpoints" in refused.stdout + refused.stderr
