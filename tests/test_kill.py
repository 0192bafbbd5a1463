"""Kill -9 in the middle of `recommend`, `generate` and `finetune`, then run again: the
resumed output equals an uninterrupted run's, and no partial file is ever visible under an
output's final name. Each command runs as a user runs it, in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch

from tests.helpers import tiny_llm_folder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def llmrec(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmrec", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def finished(*args: str) -> str:
    process = llmrec(*args)
    output = process.communicate(timeout=600)[0].decode()
    assert process.returncode == 0, output
    return output


def uninterrupted(*args: str) -> None:
    """The reference run, in this process (no start-up cost)."""
    from llmrec.cli.main import main

    main(list(args))


def kill_when(process: subprocess.Popen, ready, final: Path, timeout: float = 600) -> None:
    """SIGKILL `process` as soon as `ready()` holds (work is half done), checking all along that
    `final` never appears before the process ends on its own."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before it could be killed: {process.stdout.read().decode()[-2000:]}"
        assert not final.exists(), f"{final} appeared while the run was still working"
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not final.exists(), f"{final} is visible after a kill"


@pytest.fixture(scope="module")
def tiny_llm(tiny_data, tmp_path_factory) -> Path:
    return tiny_llm_folder(tiny_data, tmp_path_factory.mktemp("kill-llm"))


def test_recommend_killed_midway_resumes_to_the_same_lists(tiny_data, tmp_path):
    settings = ["--task", "1", "--data", str(tiny_data), "text.enabled=false", "reranker.kind=fusion", "chunk_size=60"]
    uninterrupted("recommend", *settings, "--out", str(tmp_path / "straight.parquet"))
    out = tmp_path / "killed.parquet"
    chunks = tmp_path / "killed.parquet.work" / "test"
    kill_when(
        llmrec("recommend", *settings, "--out", str(out)), lambda: len(list(chunks.glob("chunk-*.parquet"))) >= 2, out
    )
    finished("recommend", *settings, "--out", str(out))
    assert pl.read_parquet(out).equals(pl.read_parquet(tmp_path / "straight.parquet"))


def test_generate_killed_midway_resumes_to_the_same_titles(tiny_data, tiny_llm, tmp_path):
    settings = [
        "--task",
        "3",
        "--backend",
        "hf",
        "--model",
        str(tiny_llm),
        "--data",
        str(tiny_data),
        "--limit",
        "24",
        "generate.chunk_size=4",
        "generate.batch_size=4",
        "generate.max_new_tokens=6",
        "generate.dtype=float32",
    ]
    uninterrupted("generate", *settings, "--out", str(tmp_path / "straight.parquet"))
    out = tmp_path / "killed.parquet"
    chunks = tmp_path / "killed.parquet.chunks"
    kill_when(
        llmrec("generate", *settings, "--out", str(out)), lambda: len(list(chunks.glob("chunk-*.parquet"))) >= 2, out
    )
    assert "resuming" in finished("generate", *settings, "--out", str(out))
    assert pl.read_parquet(out).equals(pl.read_parquet(tmp_path / "straight.parquet"))


def test_finetune_killed_midway_resumes_to_the_same_adapter(tiny_data, tiny_llm, tmp_path):
    from safetensors.torch import load_file

    settings = [
        f"model={tiny_llm}",
        f"data={tiny_data}",
        "lora.layers=[]",
        "lora.dropout=0.1",
        "train.max_steps=6",
        "train.save_every=1",
        "train.batch_size=4",
        "train.grad_accum=1",
        "train.eval_every=100",
        "train.eval_sessions=2",
        "train.train_sessions=64",
        "train.max_minutes=0",
        "generate.max_new_tokens=4",
    ]
    uninterrupted("finetune", "--task", "3", *settings, f"train.out={tmp_path / 'straight'}")
    run = tmp_path / "killed"
    adapter = run / "adapter" / "adapter_model.safetensors"
    kill_when(
        llmrec("finetune", "--task", "3", *settings, f"train.out={run}"),
        lambda: (run / "checkpoints" / "step-2").exists(),
        adapter,
    )
    assert "resumed from" in finished("finetune", "--task", "3", "--resume", *settings, f"train.out={run}")
    straight, resumed = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"), load_file(adapter)
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
