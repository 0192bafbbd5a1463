"""eval/gpu_check.py keeps working where there is no GPU: `--tiny` runs every part on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def test_gpu_check_runs_every_part_on_a_tiny_model(tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is missing: pip install bitsandbytes")
    spec = importlib.util.spec_from_file_location(
        "gpu_check", Path(__file__).resolve().parents[1] / "eval" / "gpu_check.py"
    )
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    results = gpu_check.main(
        ["--tiny", "--steps", "3", "--batch-size", "4", "--compare-steps", "2", "--out", str(tmp_path / "check.json")]
    )
    assert (
        results["lora"]["tokens_per_s"] > 0
        and results["qlora_nf4"]["tokens_per_s"] > 0
        and results["generate"]["tokens_per_s"] > 0
    )
    assert (
        len(results["lora"]["losses"]) == 3 and results["agreement"]["agrees"]
    )  # same device twice: must agree exactly
    assert (tmp_path / "check.json").exists()
